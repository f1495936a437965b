"""``python -m train.diagnostics.rgmc_candidate_use CKPT --corpus DIR [--split validation] [--limit 500]``

Why RGMC's retrieved caption helps or does not (issue 30: "make the neighbour caption help or say why it
cannot"). RGMC's decoder reads a training caption retrieved for the clip beside its audio (paper §3). Per
attribute this reads three statements about each clip, with the attribute reader the listening table uses
(``musiccap.metrics.attributes``): the truth, the candidate's and the caption's, and reports

- ``candidate_right``: how often the candidate is right (what copying it would score),
- ``caption_right``: how often the caption is, overall, where the candidate is right and where it is wrong,
- ``follows_candidate``: how often the caption says what the candidate says, where it is right and wrong.

A captioner that uses the candidate well copies it where it is right and departs from it where it is wrong;
one that follows a wrong candidate as often as a right one is led by retrieval, not by the audio. Instrument
families are sets: right is a per-clip F1 of at least 0.5, following is the same set. A statement the
reader does not find counts as not right and, for following, as a statement of its own (None).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from musiccap.metrics.attributes import CaptionAttributes, read_caption

ATTRIBUTES = ("families", "tempo_class", "mode", "drums", "mood")


def _families_f1(stated: set[str], expected: set[str]) -> float:
    stated, expected = stated - {"drums"}, expected - {"drums"}
    if not stated and not expected:
        return 1.0
    overlap = len(stated & expected)
    return 2 * overlap / (len(stated) + len(expected))


def is_right(read: CaptionAttributes, truth: dict, attribute: str) -> bool:
    if attribute == "families":
        return _families_f1(read.families, set(truth["families"])) >= 0.5
    return getattr(read, attribute) is not None and getattr(read, attribute) == truth[attribute]


def says_the_same(caption: CaptionAttributes, candidate: CaptionAttributes, attribute: str) -> bool:
    if attribute == "families":
        return caption.families - {"drums"} == candidate.families - {"drums"}
    return getattr(caption, attribute) == getattr(candidate, attribute)


def _share(flags: list[bool]) -> float | None:
    return round(sum(flags) / len(flags), 4) if flags else None


def candidate_use(captions: list[str], candidates: list[str], truths: list[dict]) -> dict:
    """Per attribute, the shares in the module's docstring, over clips with (caption, candidate, truth)."""
    if not len(captions) == len(candidates) == len(truths) or not captions:
        raise ValueError(f"{len(captions)} captions, {len(candidates)} candidates, {len(truths)} truths")
    caption_reads = [read_caption(text) for text in captions]
    candidate_reads = [read_caption(text) for text in candidates]
    report = {}
    for attribute in ATTRIBUTES:
        candidate_right = [is_right(c, t, attribute) for c, t in zip(candidate_reads, truths)]
        caption_right = [is_right(c, t, attribute) for c, t in zip(caption_reads, truths)]
        follows = [says_the_same(a, b, attribute) for a, b in zip(caption_reads, candidate_reads)]

        def where(values: list[bool], wanted: bool, flags: list[bool] = candidate_right) -> list[bool]:
            return [value for value, flag in zip(values, flags) if flag == wanted]

        report[attribute] = {
            "candidate_right": _share(candidate_right),
            "caption_right": _share(caption_right),
            "caption_right_where_candidate_right": _share(where(caption_right, True)),
            "caption_right_where_candidate_wrong": _share(where(caption_right, False)),
            "follows_candidate": _share(follows),
            "follows_candidate_where_right": _share(where(follows, True)),
            "follows_candidate_where_wrong": _share(where(follows, False)),
        }
    return {"clips": len(captions), "attributes": report}


def captioned_with_candidates(captioner, items, candidate: str = "nearest") -> dict:
    """Caption ``items`` (with attributes) with ``captioner``'s candidate mode set to ``candidate``, and
    report how the captions use their candidates (``candidate_use``)."""
    from train.evaluate import caption_items

    if not getattr(captioner.config, "use_text", False):
        raise SystemExit("this captioner reads no candidate caption (an audio-only RGMC, or not RGMC)")
    captioner.config.candidate = candidate
    results = caption_items(captioner, items, with_reference=candidate == "gold")
    captions = [result.text for result in results]
    candidates = [result.neighbour.text for result in results]
    return {
        "candidate": candidate,
        **candidate_use(captions, candidates, [item.attributes for item in items]),
    }


def run(checkpoint: Path, corpus: str, split: str, limit: int, candidate: str) -> dict:
    from musiccap.models.base import load_captioner
    from train.data import load_items
    from train.evaluate import captioner_features

    captioner = load_captioner(checkpoint)
    items = load_items(corpus, split, encoder=captioner_features(captioner)[0], limit=limit)
    report = captioned_with_candidates(captioner, items, candidate)
    return {"checkpoint": str(checkpoint), "corpus": str(corpus), "split": split, **report}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m train.diagnostics.rgmc_candidate_use", description=__doc__
    )
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--split", default="validation")
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--candidate", default="nearest", choices=["nearest", "random", "gold"])
    parser.add_argument("--out", type=Path, help="also write the report here (JSON)")
    args = parser.parse_args(argv)
    report = run(args.checkpoint, args.corpus, args.split, args.limit, args.candidate)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
