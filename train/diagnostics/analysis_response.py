"""``python -m train.diagnostics.analysis_response CHECKPOINT --corpus DIR`` — does an analysis-conditioned
captioner follow the analysis it is given?

The first ``--limit`` validation clips are captioned with their own analysis, then with one field of it
forced to each value in turn: the tempo (60, 100 and 170 BPM, a slow, a medium and a fast one, at full
confidence), the mode (major, minor) and the drums (absent, present). For each forced value: the share of
the captions stating that attribute that state the forced value, and the share of captions whose statement
differs from the one made with the clip's own analysis. A captioner that reads a field states what it is
told; one that ignores it states the same whatever the field says. Written to
``<checkpoint>/analysis_response.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from musiccap.analysis import Analysis
from musiccap.attributes import tempo_class
from musiccap.metrics.attributes import read_caption
from musiccap.models.base import load_captioner
from train.data import load_items
from train.evaluate import caption_items, captioner_features

FORCED_BPM = (60.0, 100.0, 170.0)


def forced_analyses(analysis: Analysis) -> dict[str, tuple[str, object, Analysis]]:
    """{setting: (the attribute forced, the value a caption should then state, the analysis so changed)}."""
    settings = {}
    for bpm in FORCED_BPM:
        confidence = {**analysis.confidence, "tempo": 1.0}
        told = tempo_class(bpm)
        changed = dataclasses.replace(analysis, tempo_bpm=bpm, tempo_class=told, confidence=confidence)
        settings[f"tempo={bpm:g}"] = ("tempo_class", told, changed)
    for mode in ("major", "minor"):
        changed = dataclasses.replace(analysis, mode=mode, confidence={**analysis.confidence, "mode": 1.0})
        settings[f"mode={mode}"] = ("mode", mode, changed)
    for present in (False, True):
        changed = dataclasses.replace(analysis, drums=float(present))
        settings[f"drums={'present' if present else 'absent'}"] = ("drums", present, changed)
    return settings


def response(captioner, items: list) -> dict[str, dict[str, float]]:
    """Per forced setting: ``follows`` (share of the captions stating the attribute that state the forced
    value), ``changed`` (share of captions whose statement differs from the unforced caption's) and
    ``stated`` (how many stated the attribute)."""
    own = [read_caption(result.text) for result in caption_items(captioner, items)]
    settings = [forced_analyses(item.analysis) for item in items]
    out = {}
    for name, (attribute, value, _) in settings[0].items():
        forced = [
            dataclasses.replace(item, analysis=changes[name][2]) for item, changes in zip(items, settings)
        ]
        said = [getattr(read_caption(result.text), attribute) for result in caption_items(captioner, forced)]
        stated = [statement for statement in said if statement is not None]
        changed = sum(
            statement != getattr(before, attribute) for statement, before in zip(said, own, strict=True)
        )
        out[name] = {
            "follows": round(sum(statement == value for statement in stated) / len(stated), 3)
            if stated
            else None,
            "changed": round(changed / len(items), 3),
            "stated": len(stated),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m train.diagnostics.analysis_response", description=__doc__
    )
    parser.add_argument("checkpoint")
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--limit", type=int, default=64)
    args = parser.parse_args(argv)
    captioner = load_captioner(args.checkpoint)
    if not getattr(captioner, "reads_analysis", False):
        parser.error(f"{args.checkpoint} is not conditioned on the analysis (model.analysis_conditioning)")
    items = load_items(args.corpus, "validation", encoder=captioner_features(captioner)[0], limit=args.limit)
    if any(getattr(item, "analysis", None) is None for item in items):
        parser.error(
            f"{args.corpus} has no analyses: python -m train.analysis_vectors --corpus {args.corpus}"
        )
    result = {"split": "validation", "n": len(items), "forced": response(captioner, items)}
    (Path(args.checkpoint) / "analysis_response.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
