"""The synthetic music-caption corpus: General MIDI renders of real compositions, captioned from the
attributes that made them. Build it with `python -m train.corpus --out DIR [--size tiny|small|full]`."""

from train.corpus.build import SIZES, SPLITS, BuildReport, build_corpus

__all__ = ["SIZES", "SPLITS", "BuildReport", "build_corpus"]
