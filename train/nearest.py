"""``python -m train.nearest --clap checkpoints/clap --corpus DIR --out checkpoints/nearest``

Builds the Nearest-neighbour baseline (musiccap/models/nearest.py): the training split's CLAP audio
embeddings, indexed with the trained CLAP.
"""

from __future__ import annotations

import argparse
import sys
import time

from musiccap.models.nearest import NearestCaptioner
from train.data import load_items


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.nearest", description=__doc__)
    parser.add_argument("--clap", required=True, help="embedded CLAP checkpoint folder")
    parser.add_argument("--corpus", required=True, help="corpus folder with train.jsonl")
    parser.add_argument("--split", default="train")
    parser.add_argument("--out", required=True, help="checkpoint folder to write")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    captioner = NearestCaptioner.from_items(args.clap, load_items(args.corpus, args.split), split=args.split)
    captioner.save_pretrained(args.out)
    print(
        f"indexed {len(captioner.index)} {args.split} clips in {time.perf_counter() - started:.1f} s -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
