"""Caption and size statistics of a built corpus, side by side with MusicCaps.

`python -m train.corpus.stats DIR [--musiccaps CSV] [--json]` prints a Markdown table (or JSON):
clips, pieces, clips with lyrics, captions per clip, mean caption length in words, vocabulary size,
share of distinct captions, per split and for MusicCaps, plus disk size and build time from
`build_report.json`; then the balance of what the generator drew (tempo classes, modes, keys, drums,
textures, renderers, production effects) per split. Run on a corpus still being built, it reports the
clips finished so far.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from train.corpus.build import SPLITS_V2

_WORD = re.compile(r"[a-z0-9]+(?:['/-][a-z0-9]+)*")


def words(caption: str) -> list[str]:
    """Lower-cased word tokens (BPM numbers and "6/8" count as words, punctuation does not)."""
    return _WORD.findall(caption.lower())


@dataclass
class CaptionStats:
    name: str
    clips: int
    pieces: int | None
    with_lyrics: int | None
    mean_words: float
    vocabulary: int
    distinct_share: float
    captions_per_clip: float = 1.0


def caption_stats(
    name: str,
    captions: list[str],
    pieces: int | None = None,
    with_lyrics: int | None = None,
    all_captions: list[str] | None = None,
) -> CaptionStats:
    """Length, vocabulary and distinctness of the clips' first captions; `all_captions` (every phrasing
    of every clip, corpus v2) gives the captions per clip."""
    tokens = [words(c) for c in captions]
    return CaptionStats(
        name=name,
        clips=len(captions),
        pieces=pieces,
        with_lyrics=with_lyrics,
        mean_words=round(sum(map(len, tokens)) / max(len(tokens), 1), 1),
        vocabulary=len({w for t in tokens for w in t}),
        distinct_share=round(len(set(captions)) / max(len(captions), 1), 3),
        captions_per_clip=round(len(all_captions or captions) / max(len(captions), 1), 2),
    )


def _split_records(corpus_dir: Path, split: str) -> list[dict]:
    """The split's manifest; while a build is still running, the per-clip records written so far."""
    manifest = corpus_dir / f"{split}.jsonl"
    if manifest.is_file():
        return [json.loads(line) for line in manifest.read_text().splitlines() if line]
    return [json.loads(p.read_text()) for p in sorted((corpus_dir / "records" / split).glob("*.json"))]


def corpus_records(corpus_dir: Path) -> dict[str, list[dict]]:
    """split -> records, for the splits this corpus has (v1: three, v2: four)."""
    splits = {split: _split_records(corpus_dir, split) for split in SPLITS_V2}
    return {split: records for split, records in splits.items() if records or split != "unseen"}


def _caption_row(name: str, records: list[dict]) -> CaptionStats:
    return caption_stats(
        name,
        [r["caption"] for r in records],
        len({r["piece"] for r in records}),
        sum(r["lyrics"] is not None for r in records),
        [c for r in records for c in r.get("captions") or [r["caption"]]],
    )


def corpus_stats(corpus_dir: Path) -> list[CaptionStats]:
    by_split = corpus_records(corpus_dir)
    rows = [_caption_row(split, records) for split, records in by_split.items()]
    rows.append(_caption_row("all", [r for records in by_split.values() for r in records]))
    return rows


def _draws(record: dict) -> dict[str, list[str]]:
    """What one clip drew, by dimension (a clip counts once per value; renderers once per part)."""
    a = record["attributes"]
    draws = {
        "tempo class": [a["tempo_class"]],
        "mode": [a["mode"]],
        "key": [a["key"]],
        "drums": ["drums" if a["drums"] else "no drums"],
        "reverb": [a["reverb"]],
        "quality": [a["quality"]],
        "degradations": a["degradations"] or ["none"],
    }
    if "texture" in a:  # corpus v2
        production = a["production"]
        draws |= {
            "texture": [a["texture"]],
            "drum fill": ["fill" if a["drum_fill"] else "no fill"] if a["drums"] else [],
            "renderer (melody)": [a["renderer"]],
            "renderers (parts)": a["renderers"] + ([a["drum_renderer"]] if a["drum_renderer"] else []),
            "codec": [production["codec"]["format"] if production["codec"] else "none"],
            "compression": ["yes" if production["compression"] else "no"],
            "saturation": ["yes" if production["saturation"] else "no"],
            "fold": [production["fold"]],
        }
    return draws


def balance(corpus_dir: Path) -> dict[str, dict[str, dict[str, int]]]:
    """dimension -> value -> split -> clips (renderers: parts)."""
    table: dict[str, dict[str, Counter]] = {}
    for split, records in corpus_records(corpus_dir).items():
        for record in records:
            for dimension, values in _draws(record).items():
                for value in values:
                    table.setdefault(dimension, {}).setdefault(value, Counter())[split] += 1
    return {d: {v: dict(c) for v, c in sorted(values.items())} for d, values in table.items()}


def balance_table(corpus_dir: Path) -> str:
    """Markdown: per dimension and value, clips per split (the 24 keys summarised on one line)."""
    splits = list(corpus_records(corpus_dir))
    lines = ["| drawn | value | " + " | ".join(splits) + " |", "|---|---|" + "---:|" * len(splits)]
    for dimension, values in balance(corpus_dir).items():
        if dimension == "key":
            cells = []
            for split in splits:
                counts = [c.get(split, 0) for c in values.values()]
                counts += [0] * (24 - len(counts))  # keys no split has
                cells.append(f"{sum(n > 0 for n in counts)} keys, {min(counts)}–{max(counts)} clips each")
            lines.append("| key | (of 24) | " + " | ".join(cells) + " |")
            continue
        for value, counts in values.items():
            lines.append(
                f"| {dimension} | {value} | " + " | ".join(str(counts.get(s, 0)) for s in splits) + " |"
            )
    return "\n".join(lines)


def musiccaps_stats(csv_path: Path) -> CaptionStats:
    with open(csv_path, newline="", encoding="utf-8") as f:
        captions = [row["caption"] for row in csv.DictReader(f)]
    return caption_stats("MusicCaps", captions)


def default_musiccaps_csv() -> Path | None:
    path = Path(__file__).resolve().parents[3] / "shared" / "data" / "musiccaps" / "musiccaps-public.csv"
    return path if path.is_file() else None


def markdown_table(rows: list[CaptionStats]) -> str:
    def cell(value) -> str:
        return "–" if value is None else str(value)

    lines = [
        "| set | clips | pieces | with lyrics | captions per clip | mean words | vocabulary | distinct captions |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.name} | {r.clips} | {cell(r.pieces)} | {cell(r.with_lyrics)} | {r.captions_per_clip} | "
            f"{r.mean_words} | {r.vocabulary} | {r.distinct_share:.1%} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m train.corpus.stats", description=__doc__)
    parser.add_argument("corpus_dir", type=Path)
    parser.add_argument(
        "--musiccaps", type=Path, default=None, help="musiccaps-public.csv (default: ../shared)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = corpus_stats(args.corpus_dir)
    musiccaps = args.musiccaps or default_musiccaps_csv()
    if musiccaps is not None:
        rows.append(musiccaps_stats(musiccaps))
    report_path = args.corpus_dir / "build_report.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    if args.json:
        print(
            json.dumps(
                {"captions": [asdict(r) for r in rows], "balance": balance(args.corpus_dir), "build": report},
                indent=2,
            )
        )
        return
    print(markdown_table(rows))
    print()
    print(balance_table(args.corpus_dir))
    if report:
        print(
            f"\nBuild: {report['seconds']} s ({report['clips_per_second']} clips/s), soundfont {report['soundfont']}, "
            f"seed {report['seed']}, {report['disk_bytes'] / 1e6:.1f} MB on disk, clips by source {report['sources']}."
        )


if __name__ == "__main__":
    main()
