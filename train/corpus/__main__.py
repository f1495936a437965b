"""`python -m train.corpus --out DIR [--size tiny|small|full] [--recipe v1|v2] [--seed N] [--workers N]`.

`--recaption --out DIR` rewrites the captions of a finished v2 corpus with the current caption rules
(the same captions a fresh build writes) and leaves its audio alone."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from train.corpus.build import ALL_SOURCES, RECIPES, SIZES, build_corpus, recaption


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m train.corpus", description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument(
        "--recipe",
        choices=RECIPES,
        default="v2",
        help="v2: several soundfonts, productions and captions per clip, an unseen split; "
        "v1: the shipped checkpoints' corpus (one soundfont, one caption)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="render processes (one FluidSynth each)")
    parser.add_argument(
        "--symbolic",
        type=Path,
        default=None,
        help="folder with pop909/, nottingham/, openmsx/ (default: ../shared/data/symbolic)",
    )
    parser.add_argument(
        "--soundfont", default=None, help="v1 only: override the size's soundfont (path or file name)"
    )
    parser.add_argument(
        "--sources", default=",".join(ALL_SOURCES), help="comma-separated subset of " + ",".join(ALL_SOURCES)
    )
    parser.add_argument(
        "--recaption", action="store_true", help="rewrite a v2 corpus's captions, nothing else"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if args.recaption:
        logging.info("recaptioned %s", recaption(args.out))
        return
    build_corpus(
        args.out,
        size=args.size,
        seed=args.seed,
        workers=args.workers,
        symbolic_dir=args.symbolic,
        soundfont=args.soundfont,
        sources=tuple(args.sources.split(",")),
        recipe=args.recipe,
    )


if __name__ == "__main__":
    main()
