"""``python -m train.diagnostics.choose_shipped docs/decoding_sweeps.json --paper NAME --variant NAME ...``.

Which of an architecture's candidates ships, by the rule the README fixed before the retrain's rows
landed ("Choosing what ships"): each candidate (the paper row and its variants) is captioned on the same
validation clips with its own decoding (``train.diagnostics.decoding_sweep --record ... --as NAME``, one
setting per record). The candidate with the highest mean margin over the fixed-caption floor on
instrument-family F1, tempo, mode and drums ships, unless its validation CIDEr-D is more than 10 % below
the paper row's; a tie (equal margins to three decimals) goes to the paper row. Test, unseen and the
reserved soundfonts play no part: the records must be of the validation split, and of the same clips.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

GOAL_ATTRIBUTES = ("instrument_f1", "tempo", "mode", "drums")
CIDER_TOLERANCE = 0.10  # a variant may cost at most this share of the paper row's validation CIDEr-D
TIE_DECIMALS = 3


@dataclass
class Candidate:
    name: str
    margins: dict[str, float]  # caption score minus the fixed-caption floor, per goal attribute
    cider_d: float

    @property
    def mean_margin(self) -> float:
        return sum(self.margins.values()) / len(self.margins)


def candidate(records: dict, name: str) -> tuple[Candidate, tuple[str, int]]:
    """One sweep record as a candidate, with its (split, clip count) so that candidates can be compared."""
    if name not in records:
        raise SystemExit(f"no record {name!r} in the sweeps file")
    record = records[name]
    if record["split"] != "validation":
        raise SystemExit(
            f"{name} was swept on {record['split']!r}: selection reads the validation split only"
        )
    if len(record["settings"]) != 1:
        raise SystemExit(f"{name} holds {len(record['settings'])} settings: a candidate is its own decoding")
    setting = record["settings"][0]
    margins = {key: setting["listening"][key] - record["floor"][key] for key in GOAL_ATTRIBUTES}
    return Candidate(name, margins, setting["cider_d"]), (record["split"], record["n"])


def choose(paper: Candidate, variants: list[Candidate]) -> tuple[Candidate, str]:
    """The candidate that ships and why, by the README's rule."""
    allowed = [paper] + [v for v in variants if v.cider_d >= (1 - CIDER_TOLERANCE) * paper.cider_d]
    best = max(allowed, key=lambda c: round(c.mean_margin, TIE_DECIMALS))  # max keeps the first: the paper
    if best is paper:
        return paper, "the paper row: no allowed variant has a higher mean margin over the floor"
    return best, (
        f"mean margin {best.mean_margin:+.3f} against the paper row's {paper.mean_margin:+.3f}, "
        f"CIDEr-D {best.cider_d:.3f} against {paper.cider_d:.3f} (at most {CIDER_TOLERANCE:.0%} lower allowed)"
    )


def table(candidates: list[Candidate], paper: Candidate, shipped: Candidate) -> str:
    lines = [
        "| candidate | " + " | ".join(f"{key} margin" for key in GOAL_ATTRIBUTES) + " | mean | CIDEr-D | |",
        "|---" * (len(GOAL_ATTRIBUTES) + 4) + "|",
    ]
    for c in candidates:
        cider_ok = c is paper or c.cider_d >= (1 - CIDER_TOLERANCE) * paper.cider_d
        mark = "ships" if c is shipped else ("" if cider_ok else "CIDEr-D too low")
        margins = " | ".join(f"{c.margins[key]:+.3f}" for key in GOAL_ATTRIBUTES)
        lines.append(f"| {c.name} | {margins} | {c.mean_margin:+.3f} | {c.cider_d:.3f} | {mark} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sweeps", type=Path, help="the decoding sweeps file, e.g. docs/decoding_sweeps.json")
    parser.add_argument("--paper", required=True, help="the paper row's record")
    parser.add_argument("--variant", nargs="+", default=[], help="the variants' records")
    parser.add_argument("--json", action="store_true", help="print the decision as JSON")
    args = parser.parse_args(argv)
    records = json.loads(args.sweeps.read_text())
    paper, clips = candidate(records, args.paper)
    variants = []
    for name in args.variant:
        variant, variant_clips = candidate(records, name)
        if variant_clips != clips:
            raise SystemExit(f"{name} was swept on {variant_clips}, the paper row on {clips}: not comparable")
        variants.append(variant)
    shipped, reason = choose(paper, variants)
    if args.json:
        rows = {
            c.name: {"margins": c.margins, "mean_margin": c.mean_margin, "cider_d": c.cider_d}
            for c in [paper, *variants]
        }
        print(json.dumps({"ships": shipped.name, "why": reason, "candidates": rows}, indent=2))
    else:
        print(table([paper, *variants], paper, shipped))
        print(f"\nships: {shipped.name} ({reason})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
