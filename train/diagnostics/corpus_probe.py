"""``python -m train.diagnostics.corpus_probe --corpus v1=DIR --corpus v2=DIR [--train N]`` — do the
embedded features still carry each attribute when the renderers vary?

For each corpus: a linear probe (``train.listening.fit_probe``: standardised mean/std/max over time,
logistic regression with C chosen on validation) on the embedded frames (musicnn + chroma/key +
tempogram, what ALCAP's encoder and the embedded CLAP read), fitted on the first ``--train`` training
clips and scored on the first ``--eval`` clips of test and, where the corpus has it, unseen. Each
corpus's probe is also scored on every other corpus's evaluation splits (e.g. a probe fitted on v1's one
soundfont, scored on v2's held-out soundfont). The features are computed into the feature cache on first
use. Written as JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from train.data import load_items, read_manifest
from train.listening import attribute_scores, cached_sequence_input, fit_probe

FRAMES = cached_sequence_input("frames", "embedded frames")


def evaluation_splits(corpus: str) -> list[str]:
    return ["test"] + (["unseen"] if (Path(corpus) / "unseen.jsonl").is_file() else [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.diagnostics.corpus_probe", description=__doc__)
    parser.add_argument("--corpus", action="append", required=True, help="NAME=DIR; give it once per corpus")
    parser.add_argument("--train", type=int, default=800, help="training clips per corpus")
    parser.add_argument("--validation", type=int, default=200, help="validation clips (choose C)")
    parser.add_argument("--eval", type=int, default=300, help="clips per evaluation split")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    corpora = dict(entry.split("=", 1) for entry in args.corpus)
    started = time.time()
    probes, evaluation = {}, {}
    for name, corpus in corpora.items():
        train = load_items(corpus, "train", limit=args.train)
        validation = load_items(corpus, "validation", limit=args.validation)
        probes[name] = fit_probe(
            FRAMES.features(train),
            [item.attributes for item in train],
            FRAMES.features(validation),
            [item.attributes for item in validation],
        )
        for split in evaluation_splits(corpus):
            items = load_items(corpus, split, limit=args.eval)
            evaluation[f"{name}/{split}"] = (FRAMES.features(items), [item.attributes for item in items])
    scores = {
        probe_name: {
            target: attribute_scores(probe.reads(x), truths) for target, (x, truths) in evaluation.items()
        }
        for probe_name, probe in probes.items()
    }
    report = {
        "input": FRAMES.description,
        "corpora": corpora,
        "renderers": {
            name: sorted({row["attributes"].get("renderer", "") for row in read_manifest(corpus, "train")})
            for name, corpus in corpora.items()
        },
        "clips": {"train": args.train, "validation": args.validation, "eval": args.eval},
        "probe_c": {name: probe.strengths for name, probe in probes.items()},
        "scores": scores,  # probe fitted on <corpus> -> <corpus>/<split> -> attribute -> score
        "seconds": round(time.time() - started, 1),
    }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    for probe_name, targets in scores.items():
        for target, values in targets.items():
            print(f"{probe_name:>4} → {target:12s}", " ".join(f"{k} {v:.3f}" for k, v in values.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
