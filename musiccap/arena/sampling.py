"""Which two captioners a listener compares next, and on which side each caption goes.

Pairs are drawn with weight 1 / (1 + votes the pair already has), so the board's uncertain comparisons
fill in first while every pair keeps a chance (a pure "least voted first" rule would serve the same pair
to every concurrent listener). Left/right is a fair coin so position bias cancels out.
"""

import itertools
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class PairChoice:
    model_a: str  # shown left, as caption A
    model_b: str
    swapped: bool  # True when model_a is the alphabetically later of the two


class PairSampler:
    def __init__(self, models: list[str], rng: random.Random):
        if len(set(models)) < 2:
            raise ValueError("the arena needs at least two different captioners")
        self.pairs = list(itertools.combinations(sorted(set(models)), 2))
        self.rng = rng

    def weights(self, pair_counts: dict[tuple[str, str], int]) -> list[float]:
        return [1.0 / (1.0 + pair_counts.get(pair, 0)) for pair in self.pairs]

    def choose(self, pair_counts: dict[tuple[str, str], int]) -> PairChoice:
        first, second = self.rng.choices(self.pairs, weights=self.weights(pair_counts))[0]
        swapped = self.rng.random() < 0.5
        return PairChoice(second, first, True) if swapped else PairChoice(first, second, False)
