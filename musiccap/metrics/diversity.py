"""How varied and how novel generated captions are (Kim & Park Table II; RGMC Table 4).

Words are lower-cased runs of letters and digits (an apostrophe suffix such as "'s" stays on its
word): "The drummer's beat, fast!" -> ["the", "drummer's", "beat", "fast"]. A caption's identity
for novelty and copying is its word sequence, so case, punctuation and spacing do not matter.

- `vocab`: distinct words over all generated captions.
- `novel_v`: share of that vocabulary absent from the training captions' words.
- `novel_c`: share of generated captions whose word sequence is not a training caption's.
- `len_mean`, `len_std`: words per generated caption (population standard deviation).
- `unk`: "<unk>" tokens over all generated captions; `repeats`: immediate n-gram repetitions (n = 1..3:
  "rock rock", "and strings and strings") over all generated captions — the two statistics MusCaps
  (Manco et al., §V-C) compares between greedy and beam decoding.
- copying against a given candidate per caption (the retrieved caption RGMC conditions on):
  `copy_rate` = share of captions identical to their candidate, `copy_bleu4` = corpus BLEU-4
  (tensorflow-nmt, 13a tokens, the candidate as the only reference) and `copy_rouge_l` = mean
  ROUGE-L F of caption vs candidate. High values mean the generator mostly copies.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def caption_key(text: str) -> tuple[str, ...]:
    return tuple(words(text))


@dataclass
class Diversity:
    vocab: int
    len_mean: float
    len_std: float
    unk: int
    repeats: int
    novel_v: float | None = None
    novel_c: float | None = None


@dataclass
class Copying:
    copy_rate: float
    copy_bleu4: float
    copy_rouge_l: float


def immediate_repeats(tokens: Sequence[str], max_n: int = 3) -> int:
    """Positions where an n-gram (n <= max_n) is followed by itself: "bass bass and bass" -> 1."""
    return sum(
        tokens[i : i + n] == tokens[i + n : i + 2 * n]
        for n in range(1, max_n + 1)
        for i in range(len(tokens) - 2 * n + 1)
    )


def diversity(predictions: Sequence[str], train_captions: Iterable[str] | None = None) -> Diversity:
    tokenized = [words(p) for p in predictions]
    vocabulary = {w for caption in tokenized for w in caption}
    lengths = [len(caption) for caption in tokenized]
    result = Diversity(
        vocab=len(vocabulary),
        len_mean=statistics.fmean(lengths) if lengths else 0.0,
        len_std=statistics.pstdev(lengths) if lengths else 0.0,
        unk=sum(p.count("<unk>") for p in predictions),
        repeats=sum(immediate_repeats(caption) for caption in tokenized),
    )
    if train_captions is not None:
        train_keys = {caption_key(c) for c in train_captions}
        train_vocabulary = {w for key in train_keys for w in key}
        result.novel_v = len(vocabulary - train_vocabulary) / len(vocabulary) if vocabulary else 0.0
        novel = sum(tuple(caption) not in train_keys for caption in tokenized)
        result.novel_c = novel / len(tokenized) if tokenized else 0.0
    return result


def copying(predictions: Sequence[str], candidates: Sequence[str]) -> Copying:
    from rouge_score.rouge_scorer import RougeScorer

    from musiccap.metrics.lpmc import corpus_bleu, tokenize_13a

    if len(predictions) != len(candidates) or not predictions:
        raise ValueError(f"{len(predictions)} predictions for {len(candidates)} candidates")
    identical = sum(caption_key(p) == caption_key(c) for p, c in zip(predictions, candidates))
    bleu4 = corpus_bleu([tokenize_13a(p) for p in predictions], [[tokenize_13a(c)] for c in candidates])[3]
    scorer = RougeScorer(["rougeL"], use_stemmer=False)
    rouge = [scorer.score(c, p)["rougeL"].fmeasure for p, c in zip(predictions, candidates)]
    return Copying(
        copy_rate=identical / len(predictions), copy_bleu4=bleu4, copy_rouge_l=statistics.fmean(rouge)
    )
