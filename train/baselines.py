"""``python -m train.baselines --corpus DIR`` — the Random-caption baseline's checkpoint.

Its "weights" are the training split's captions; ``python -m train.evaluate checkpoints/random``
then scores it like any captioner, so every results table has its floor. (The Nearest-neighbour
baseline is built by ``python -m train.nearest``: it needs the trained CLAP.)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from musiccap.models.baselines import RandomCaptioner
from musiccap.registry import REPO
from train.data import read_manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.baselines", description=__doc__)
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--out", default=str(REPO / "checkpoints" / "random"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    captions = [row["caption"] for row in read_manifest(args.corpus, "train")]
    RandomCaptioner(captions, seed=args.seed).save_pretrained(args.out)
    training = {"model": "random", "corpus": str(args.corpus), "n_train": len(captions), "seed": args.seed}
    (Path(args.out) / "training.json").write_text(json.dumps(training, indent=2) + "\n")
    print(f"random baseline over {len(captions)} training captions -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
