"""The caption index over a split, neighbour search, and audio–text retrieval metrics.

:class:`CaptionIndex` holds the CLAP audio embeddings of a split's clips with their ids and
captions, searched by inner product with FAISS (``IndexFlatIP``: exact; on unit vectors it is the
cosine), as RGMC retrieves its neighbour captions. A search never returns the query's own clip or
a caption identical to one the caller excludes (the query's own caption), so a model cannot copy
its reference through retrieval. On disk an index is a safetensors matrix plus a JSON file of ids
and captions (no pickle); the FAISS index is rebuilt at load, which is instant for flat indices.

:func:`retrieval_metrics` gives text->audio and audio->text recall at 1/5/10 and the median rank
when clip *i* and caption *i* are the matching pair, next to the analytic random-ranking baseline.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

EMBEDDINGS_NAME = "index_embeddings.safetensors"
CAPTIONS_NAME = "index_captions.json"
RECALL_AT = (1, 5, 10)


@dataclass
class SearchHit:
    id: str
    caption: str
    score: float  # inner product of unit vectors = cosine similarity
    row: int  # position in the index


def normalize_caption(text: str) -> str:
    """What "identical caption" compares: case and whitespace do not make a caption new."""
    return " ".join(text.lower().split())


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    matrix = np.atleast_2d(np.asarray(matrix, dtype=np.float32))
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.ascontiguousarray(matrix / np.maximum(norms, 1e-12))


class CaptionIndex:
    def __init__(self, ids: Sequence[str], captions: Sequence[str], embeddings: np.ndarray, split: str = ""):
        embeddings = _unit_rows(embeddings)
        if not len(ids) == len(captions) == embeddings.shape[0]:
            raise ValueError(f"{len(ids)} ids, {len(captions)} captions and {embeddings.shape[0]} embeddings")
        if len(set(ids)) != len(ids):
            raise ValueError("clip ids in an index must be unique")
        self.ids = list(ids)
        self.captions = list(captions)
        self.embeddings = embeddings
        self.split = split
        self._normalized = [normalize_caption(c) for c in self.captions]
        # imported where an index is built: importing the captioners (which registers every one) should not
        # load FAISS (0.4 s here) for the architectures that never retrieve
        import faiss

        self.faiss = faiss.IndexFlatIP(embeddings.shape[1])
        self.faiss.add(embeddings)

    @classmethod
    def from_items(cls, clap, items: Sequence, split: str = "") -> CaptionIndex:
        """Index items that have ``id``, ``caption`` and ``features`` (what ``clap.embed_audio`` takes)."""
        embeddings = clap.embed_audio([item.features for item in items])
        return cls([item.id for item in items], [item.caption for item in items], embeddings, split=split)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return self.embeddings.shape[1]

    def search(
        self,
        embedding: np.ndarray,
        k: int = 1,
        *,
        exclude_ids: Iterable[str] = (),
        exclude_captions: Iterable[str] = (),
    ) -> list[SearchHit]:
        """The ``k`` nearest clips of one query [E], best first, skipping excluded ids and captions."""
        return self.search_batch(
            np.atleast_2d(embedding), k, exclude_ids=[exclude_ids], exclude_captions=[exclude_captions]
        )[0]

    def search_batch(
        self,
        embeddings: np.ndarray,
        k: int = 1,
        *,
        exclude_ids: Sequence[Iterable[str]] | None = None,
        exclude_captions: Sequence[Iterable[str]] | None = None,
    ) -> list[list[SearchHit]]:
        """Per query row of ``embeddings`` [Q,E]: its ``k`` nearest hits. ``exclude_ids[q]`` and
        ``exclude_captions[q]`` are what query ``q`` must not get back (its own clip id, its caption)."""
        queries = _unit_rows(embeddings)
        n_queries = queries.shape[0]
        banned_ids = [set(ids) for ids in exclude_ids] if exclude_ids is not None else [set()] * n_queries
        banned_captions = (
            [{normalize_caption(c) for c in captions} for captions in exclude_captions]
            if exclude_captions is not None
            else [set()] * n_queries
        )
        if len(banned_ids) != n_queries or len(banned_captions) != n_queries:
            raise ValueError("exclude_ids and exclude_captions need one entry per query")
        # Ask FAISS for enough candidates to survive the exclusions; widen for the queries that did not.
        results: list[list[SearchHit]] = [[] for _ in range(n_queries)]
        pending = list(range(n_queries)) if len(self) else []
        width = min(len(self), k + 1 + max(len(b) for b in banned_ids) + max(len(b) for b in banned_captions))
        while pending:
            scores, rows = self.faiss.search(queries[pending], width)
            still = []
            for q, row_scores, row_ids in zip(pending, scores, rows):
                hits = [
                    SearchHit(self.ids[r], self.captions[r], float(s), int(r))
                    for s, r in zip(row_scores, row_ids)
                    if r >= 0
                    and self.ids[r] not in banned_ids[q]
                    and self._normalized[r] not in banned_captions[q]
                ]
                if len(hits) >= k or width == len(self):
                    results[q] = hits[:k]
                else:
                    still.append(q)
            pending, width = still, min(len(self), width * 4)
        return results

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file({"embeddings": self.embeddings}, str(directory / EMBEDDINGS_NAME))
        document = {"split": self.split, "ids": self.ids, "captions": self.captions}
        (directory / CAPTIONS_NAME).write_text(json.dumps(document, ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> CaptionIndex:
        directory = Path(directory)
        document = json.loads((directory / CAPTIONS_NAME).read_text())
        embeddings = load_file(str(directory / EMBEDDINGS_NAME))["embeddings"]
        return cls(document["ids"], document["captions"], embeddings, split=document.get("split", ""))


def matching_ranks(similarity: np.ndarray) -> np.ndarray:
    """1-based rank of the matching column ``i`` in each row ``i`` of a square similarity matrix.

    Ties count in the query's favour (rank = 1 + number of strictly better candidates)."""
    similarity = np.asarray(similarity, dtype=np.float64)
    correct = np.diag(similarity)[:, None]
    return 1 + (similarity > correct).sum(axis=1)


def _summary(ranks: np.ndarray, prefix: str) -> dict[str, float]:
    metrics = {f"{prefix}_r{k}": float(np.mean(ranks <= k)) for k in RECALL_AT}
    metrics[f"{prefix}_medr"] = float(np.median(ranks))
    return metrics


def random_retrieval_metrics(n: int) -> dict[str, float]:
    """Expected recall of a uniformly random ranking of ``n`` candidates (R@k = k/n), and the
    median of its ranks, (n + 1) / 2."""
    metrics = {}
    for prefix in ("t2a", "a2t"):
        metrics.update({f"{prefix}_r{k}": min(k, n) / n for k in RECALL_AT})
        metrics[f"{prefix}_medr"] = (n + 1) / 2
    return metrics


def retrieval_metrics(
    audio_embeddings: np.ndarray, text_embeddings: np.ndarray
) -> dict[str, dict[str, float]]:
    """Row ``i`` of each matrix is one clip and its caption. Returns ``{"metrics": {t2a_r1, t2a_r5,
    t2a_r10, t2a_medr, a2t_...}, "baseline_random": {same keys}}`` over a pool of all N pairs."""
    audio = _unit_rows(audio_embeddings)
    text = _unit_rows(text_embeddings)
    if audio.shape != text.shape:
        raise ValueError(f"audio {audio.shape} and text {text.shape} embeddings must pair up row by row")
    similarity = audio.astype(np.float64) @ text.T.astype(np.float64)  # [audio, text]
    metrics = {**_summary(matching_ranks(similarity.T), "t2a"), **_summary(matching_ranks(similarity), "a2t")}
    return {"metrics": metrics, "baseline_random": random_retrieval_metrics(len(audio))}
