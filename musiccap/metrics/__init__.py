"""Captioning metrics: one call gives every metric the results.json contract names
(docs/ARCHITECTURE.md, Contracts).

    metrics = compute_metrics(predictions, references, train_captions=train, attributes=attrs)

- `bleu1..4 meteor rouge_l cider_d`: coco-caption (`coco.py`, PTB tokens, METEOR 1.5, CIDEr-D);
  with `compat="lpmc"` BLEU/METEOR/ROUGE-L are instead the LP-MusicCaps-compatible ones (`lpmc.py`),
  and CIDEr-D still comes from coco-caption.
- `bertscore_minilm sbert_sim`: MiniLM embeddings (`semantic.py`); not roberta-large BERTScore.
- `clap_at clap_tt`: computed by the project's CLAP elsewhere and passed in as per-caption scores.
- `vocab novel_v novel_c len_mean len_std unk repeats`, and `copy_*` given RGMC's candidates (`diversity.py`).
- `attr_*`: attribute accuracy given the corpus attributes (`attributes.py`).

A key is absent when it cannot be computed (no Java, no training captions, ...), never filled with a
stand-in. SPICE and SPIDEr are never computed (Stanford CoreNLP is not available): `UNAVAILABLE`.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence

# Metrics captioning papers report that cannot be computed here; tables print them as unavailable.
UNAVAILABLE: dict[str, str] = {
    "spice": "needs Stanford CoreNLP models, which no package registry carries",
    "spider": "mean of SPICE and CIDEr-D; SPICE is unavailable",
}

COMPAT_MODES = ("lpmc",)


def compute_metrics(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    *,
    train_captions: Sequence[str] | None = None,
    attributes: Sequence[Mapping] | None = None,
    clap_at: Sequence[float] | None = None,
    clap_tt: Sequence[float] | None = None,
    candidates: Sequence[str] | None = None,
    compat: str | None = None,
    semantic: bool = True,
    workers: int = 2,
) -> dict[str, float]:
    """Every computable metric for `predictions[i]` against `references[i]` (one or more captions each).

    `semantic=False` skips the MiniLM metrics (the slowest part on CPU); `workers` processes score
    the nltk METEOR of `compat="lpmc"`.
    """
    from musiccap.metrics import coco, diversity, lpmc

    lpmc.check_inputs(predictions, references)
    if compat is not None and compat not in COMPAT_MODES:
        raise ValueError(f"unknown compat mode {compat!r}; known: {', '.join(COMPAT_MODES)}")
    metrics: dict[str, float] = {}
    if coco.java_available():
        metrics.update(coco.coco_scores(predictions, references, with_meteor=compat is None).to_dict())
    if compat == "lpmc":
        metrics.update(lpmc.lpmc_scores(predictions, references, workers=workers).to_dict())
    if semantic:
        from musiccap.metrics.semantic import semantic_scores

        scores = semantic_scores(predictions, references)
        metrics.update(bertscore_minilm=scores.bertscore_minilm, sbert_sim=scores.sbert_sim)
    for name, values in (("clap_at", clap_at), ("clap_tt", clap_tt)):
        if values is not None:
            if len(values) != len(predictions):
                raise ValueError(f"{name}: {len(values)} scores for {len(predictions)} predictions")
            metrics[name] = statistics.fmean(values)
    spread = diversity.diversity(predictions, train_captions)
    metrics.update(
        vocab=spread.vocab,
        len_mean=spread.len_mean,
        len_std=spread.len_std,
        unk=spread.unk,
        repeats=spread.repeats,
    )
    if spread.novel_v is not None:
        metrics.update(novel_v=spread.novel_v, novel_c=spread.novel_c)
    if candidates is not None:
        metrics.update(diversity.copying(predictions, candidates).__dict__)
    if attributes is not None:
        from musiccap.metrics.attributes import attribute_accuracy

        metrics.update(attribute_accuracy(predictions, attributes).to_metrics())
    return metrics


__all__ = ["UNAVAILABLE", "COMPAT_MODES", "compute_metrics"]
