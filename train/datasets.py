"""Caption datasets behind one item type: the synthetic corpus, MusicCaps, Song Describer, any table.

Every loader returns a `CaptionSet` of `CaptionItem`s (audio path, caption, optional lyrics, optional
attributes, id, piece). A row whose audio file is absent is not an error: it is left out, counted in
`CaptionSet.missing` and reported once, because a user rarely manages to fetch every MusicCaps video.

- `load_synthetic(corpus_dir, split)`            the corpus built by `python -m train.corpus`
- `load_musiccaps(csv_path, audio_dir, split)`   musiccaps-public.csv + `<audio_dir>/<ytid>.<ext>`; the
                                                 official split: `is_audioset_eval` True = test
- `load_song_describer(csv_path, audio_dir)`     song_describer.csv + its audio folder (`path` column)
- `load_caption_table(path, audio_root)`         any CSV/JSONL with `audio,caption[,lyrics][,id][,piece]`
- `load_caption_set(path, ...)`                  picks one of the above from what `path` is
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".webm", ".aac")
MUSICCAPS_SPLITS = ("train", "test", "all")


@dataclass(frozen=True)
class CaptionItem:
    id: str
    audio: Path
    caption: str
    lyrics: str | None = None
    attributes: dict | None = None  # the synthetic corpus' attributes; None for human-captioned sets
    piece: str | None = None  # composition / track id: items of one piece belong together
    captions: tuple[str, ...] = ()  # corpus v2: every phrasing of the clip (`caption` is the first)


@dataclass
class CaptionSet:
    name: str
    items: list[CaptionItem]
    missing: list[str] = field(default_factory=list)  # ids whose audio file was not found

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[CaptionItem]:
        return iter(self.items)

    def __getitem__(self, index: int) -> CaptionItem:
        return self.items[index]

    def summary(self) -> str:
        text = f"{self.name}: {len(self.items)} items"
        if self.missing:
            text += f", {len(self.missing)} skipped without audio (e.g. {', '.join(self.missing[:3])})"
        return text


def _finish(name: str, items: list[CaptionItem], missing: list[str]) -> CaptionSet:
    dataset = CaptionSet(name, items, missing)
    if missing:
        log.warning(dataset.summary())
    return dataset


def _index_audio(audio_dir: Path) -> dict[str, Path]:
    """File stem -> path for every audio file under `audio_dir` (first found wins, by sorted path)."""
    index: dict[str, Path] = {}
    for path in sorted(audio_dir.rglob("*")):
        if path.suffix.lower() in AUDIO_EXTENSIONS and path.is_file():
            index.setdefault(path.stem, path)
    return index


def load_synthetic(corpus_dir: Path | str, split: str) -> CaptionSet:
    corpus_dir = Path(corpus_dir)
    items, missing = [], []
    for line in (corpus_dir / f"{split}.jsonl").read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        audio = corpus_dir / record["audio"]
        if not audio.is_file():
            missing.append(record["id"])
            continue
        items.append(
            CaptionItem(
                record["id"],
                audio,
                record["caption"],
                record.get("lyrics"),
                record.get("attributes"),
                record.get("piece"),
                tuple(record.get("captions") or ()),
            )
        )
    return _finish(f"synthetic {split}", items, missing)


def load_musiccaps(csv_path: Path | str, audio_dir: Path | str, split: str = "train") -> CaptionSet:
    """MusicCaps rows whose `<ytid>.<ext>` is in `audio_dir` (any audio extension, any sub-folder).

    The files are expected to be the 10 s clips (`start_s`..`end_s`), as MusicCaps download scripts cut them.
    """
    if split not in MUSICCAPS_SPLITS:
        raise ValueError(f"MusicCaps split is one of {MUSICCAPS_SPLITS}, got {split!r}")
    audio = _index_audio(Path(audio_dir))
    items, missing = [], []
    with open(csv_path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            is_test = row["is_audioset_eval"].strip().lower() == "true"
            if split != "all" and is_test != (split == "test"):
                continue
            ytid = row["ytid"]
            if ytid not in audio:
                missing.append(ytid)
                continue
            items.append(CaptionItem(ytid, audio[ytid], row["caption"], piece=ytid))
    return _finish(f"MusicCaps {split}", items, missing)


def _song_describer_file(audio_dir: Path, relative: str) -> Path | None:
    """The CSV names `00/1234.mp3`; the released audio is `00/1234.2min.mp3`. Accept either."""
    path = audio_dir / relative
    if path.is_file():
        return path
    alternative = path.with_name(path.stem + ".2min" + path.suffix)
    if alternative.is_file():
        return alternative
    if path.stem.endswith(".2min"):
        shorter = path.with_name(path.stem[: -len(".2min")] + path.suffix)
        if shorter.is_file():
            return shorter
    return None


def load_song_describer(csv_path: Path | str, audio_dir: Path | str, valid_only: bool = False) -> CaptionSet:
    """Song Describer captions; `valid_only` keeps the `is_valid_subset` captions. Piece = the track."""
    audio_dir = Path(audio_dir)
    items, missing = [], []
    with open(csv_path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if valid_only and row.get("is_valid_subset", "").strip().lower() != "true":
                continue
            caption_id = row["caption_id"]
            path = _song_describer_file(audio_dir, row["path"])
            if path is None:
                missing.append(caption_id)
                continue
            items.append(CaptionItem(caption_id, path, row["caption"], piece=row["track_id"]))
    return _finish("Song Describer" + (" (valid subset)" if valid_only else ""), items, missing)


def _table_rows(path: Path) -> Iterator[dict]:
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                yield json.loads(line)
    else:
        with open(path, newline="", encoding="utf-8") as f:
            yield from csv.DictReader(f)


def load_caption_table(path: Path | str, audio_root: Path | str | None = None) -> CaptionSet:
    """Rows with `audio` and `caption` (and optionally `lyrics`, `id`, `piece`); relative audio paths are
    resolved against `audio_root`, by default the table's folder."""
    path = Path(path)
    root = Path(audio_root) if audio_root is not None else path.parent
    items, missing = [], []
    for number, row in enumerate(_table_rows(path)):
        if "audio" not in row or "caption" not in row:
            raise ValueError(f"{path}: row {number} needs 'audio' and 'caption' fields, has {sorted(row)}")
        item_id = str(row.get("id") or Path(row["audio"]).stem)
        audio = Path(row["audio"])
        audio = audio if audio.is_absolute() else root / audio
        if not audio.is_file():
            missing.append(item_id)
            continue
        lyrics = row.get("lyrics") or None  # an empty CSV cell means no lyrics
        items.append(CaptionItem(item_id, audio, row["caption"], lyrics, piece=row.get("piece") or None))
    return _finish(path.name, items, missing)


def load_caption_set(
    path: Path | str, split: str = "train", audio_dir: Path | str | None = None
) -> CaptionSet:
    """A corpus folder (has `<split>.jsonl`), a MusicCaps or Song Describer CSV (needs `audio_dir`), or any
    audio/caption table."""
    path = Path(path)
    if path.is_dir():
        return load_synthetic(path, split)
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            columns = set(next(csv.reader(f), []))
        if {"ytid", "caption", "is_audioset_eval"} <= columns:
            if audio_dir is None:
                raise ValueError("MusicCaps needs the folder holding the <ytid>.<ext> audio files")
            return load_musiccaps(path, audio_dir, split)
        if {"caption_id", "track_id", "path", "caption"} <= columns:
            if audio_dir is None:
                raise ValueError("Song Describer needs its audio folder")
            return load_song_describer(path, audio_dir)
    return load_caption_table(path, audio_dir)
