"""The synthetic music-caption corpus: General MIDI renders of real compositions, captioned from the
attributes that made them. Build it with `python -m train.corpus --out DIR [--size tiny|small|full]
[--recipe v1|v2]` (v2, the default: several soundfonts, productions and captions per clip, an unseen split)."""

from train.corpus.build import SIZES, SIZES_V2, SPLITS, SPLITS_V2, BuildReport, build_corpus

__all__ = ["SIZES", "SIZES_V2", "SPLITS", "SPLITS_V2", "BuildReport", "build_corpus"]
