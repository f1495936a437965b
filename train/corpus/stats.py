"""Caption and size statistics of a built corpus, side by side with MusicCaps.

`python -m train.corpus.stats DIR [--musiccaps CSV] [--json]` prints a Markdown table (or JSON):
clips, pieces, clips with lyrics, mean caption length in words, vocabulary size, share of distinct
captions, per split and for MusicCaps, plus disk size and build time from `build_report.json`.
Run on a corpus still being built, it reports the clips finished so far.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from train.corpus.build import SPLITS

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


def caption_stats(
    name: str, captions: list[str], pieces: int | None = None, with_lyrics: int | None = None
) -> CaptionStats:
    tokens = [words(c) for c in captions]
    return CaptionStats(
        name=name,
        clips=len(captions),
        pieces=pieces,
        with_lyrics=with_lyrics,
        mean_words=round(sum(map(len, tokens)) / max(len(tokens), 1), 1),
        vocabulary=len({w for t in tokens for w in t}),
        distinct_share=round(len(set(captions)) / max(len(captions), 1), 3),
    )


def _split_records(corpus_dir: Path, split: str) -> list[dict]:
    """The split's manifest; while a build is still running, the per-clip records written so far."""
    manifest = corpus_dir / f"{split}.jsonl"
    if manifest.is_file():
        return [json.loads(line) for line in manifest.read_text().splitlines() if line]
    return [json.loads(p.read_text()) for p in sorted((corpus_dir / "records" / split).glob("*.json"))]


def corpus_stats(corpus_dir: Path) -> list[CaptionStats]:
    rows, everything = [], []
    for split in SPLITS:
        records = _split_records(corpus_dir, split)
        everything += records
        rows.append(
            caption_stats(
                split,
                [r["caption"] for r in records],
                len({r["piece"] for r in records}),
                sum(r["lyrics"] is not None for r in records),
            )
        )
    rows.append(
        caption_stats(
            "all",
            [r["caption"] for r in everything],
            len({r["piece"] for r in everything}),
            sum(r["lyrics"] is not None for r in everything),
        )
    )
    return rows


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
        "| set | clips | pieces | with lyrics | mean words | vocabulary | distinct captions |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.name} | {r.clips} | {cell(r.pieces)} | {cell(r.with_lyrics)} | {r.mean_words} | "
            f"{r.vocabulary} | {r.distinct_share:.1%} |"
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
        print(json.dumps({"captions": [asdict(r) for r in rows], "build": report}, indent=2))
        return
    print(markdown_table(rows))
    if report:
        print(
            f"\nBuild: {report['seconds']} s ({report['clips_per_second']} clips/s), soundfont {report['soundfont']}, "
            f"seed {report['seed']}, {report['disk_bytes'] / 1e6:.1f} MB on disk, clips by source {report['sources']}."
        )


if __name__ == "__main__":
    main()
