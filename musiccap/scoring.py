"""CLAP similarity: audio vs caption (A-T) and caption vs caption (T-T), for either profile.

A :class:`ClapScorer` wraps any model that answers the small :class:`ClapModel` protocol: the
embedded profile's own :class:`~musiccap.encoders.embedded_clap.EmbeddedClap` and the full profile's
LAION CLAP (:class:`~musiccap.encoders.htsat_clap.HtsatClap`) answer it directly; ``load_clap`` picks one.
Scores are cosines of unit vectors, computed in float64 from embeddings made one input per
forward pass (a batch's padding and GEMM shape change the last bits), so the same clip and caption
give the same number every time.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from musiccap.clip import CLAP_AUDIO, Clip
from musiccap.encoders.clap_loader import clap_folder, load_clap

# Captions whose text embedding a scorer keeps (~2 KB each). The app embeds the same captions again and
# again: the nearest training caption twice in every window (the nearest captioner's caption and the
# neighbour's card), captions drawn from the training corpus (the floors, the neighbours), and every
# caption of a clip each time a listener captions it again (the example clips above all).
TEXT_CACHE_SIZE = 4096


class ClapModel(Protocol):
    def audio_inputs(self, clip: Clip) -> Any:
        """What ``embed_audio`` takes for one clip (features or a waveform)."""

    def embed_audio(self, inputs: Sequence[Any]) -> np.ndarray:
        """[N, E] unit vectors."""

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """[N, E] unit vectors."""


def _unit(matrix: np.ndarray) -> np.ndarray:
    matrix = np.atleast_2d(np.asarray(matrix, dtype=np.float64))
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)


def _row_cosines(a: np.ndarray, b: np.ndarray) -> list[float]:
    """Cosine of row i of ``a`` with row i of ``b`` (unit rows). An elementwise product summed per
    row, never a matrix product: BLAS sums in an order that depends on the other rows, and a score
    must not change with the captions it is computed alongside."""
    return np.sum(a * b, axis=1).tolist()


class ClapScorer:
    """CLAP scores from a trained (frozen) CLAP. Each caption's text embedding is kept (the last
    :data:`TEXT_CACHE_SIZE` used): a caption is embedded alone, so its kept embedding is bit for bit the
    one embedding it again would give. Thread-safe: concurrent requests share a scorer."""

    def __init__(self, model: ClapModel, name: str = "clap"):
        self.model = model
        self.name = name  # keeps memoised clip embeddings of different CLAPs apart
        self._text_embeddings: OrderedDict[str, np.ndarray] = OrderedDict()  # least recently used first
        self._text_lock = threading.Lock()

    @classmethod
    def embedded(cls, path: str | Path) -> ClapScorer:
        from musiccap.encoders.embedded_clap import EmbeddedClap

        path = clap_folder(path)  # a registry name ("clap") or a folder
        return cls(EmbeddedClap.from_pretrained(path), name=f"embedded:{path.resolve()}")

    @classmethod
    def from_pretrained(cls, path: str | Path) -> ClapScorer:
        return cls(load_clap(path), name=str(path))

    def embed_audio(self, inputs: Sequence[Any]) -> np.ndarray:
        """[N, E] unit vectors for model inputs (``AudioFeatures`` for the embedded CLAP)."""
        return self.model.embed_audio(list(inputs))

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """[N, E] for captions: those kept (class docstring) are not embedded again."""
        texts = list(texts)
        if not texts:
            return self.model.embed_text([])  # [0, E]
        with self._text_lock:
            known = {text: self._text_embeddings[text] for text in texts if text in self._text_embeddings}
            for text in known:
                self._text_embeddings.move_to_end(text)
        missing = list(dict.fromkeys(text for text in texts if text not in known))
        if missing:
            embedded = self.model.embed_text(missing)
            with self._text_lock:
                for text, embedding in zip(missing, embedded, strict=True):
                    known[text] = self._text_embeddings[text] = embedding.copy()
                while len(self._text_embeddings) > TEXT_CACHE_SIZE:
                    self._text_embeddings.popitem(last=False)
        return np.stack([known[text] for text in texts])

    def embed_clip(self, clip: Clip) -> np.ndarray:
        """The clip's CLAP audio embedding [E], computed once per clip and model."""
        return self.embed_clips([clip])[0]

    def embed_clips(self, clips: Sequence[Clip]) -> np.ndarray:
        key = f"{CLAP_AUDIO}:{self.name}"
        todo = [clip for clip in clips if key not in clip.features]
        if todo:
            embeddings = self.embed_audio([self.model.audio_inputs(clip) for clip in todo])
            for clip, embedding in zip(todo, embeddings):
                clip.put(key, embedding)
        return np.stack([clip.features[key] for clip in clips])

    def audio_text(self, audio_embedding: np.ndarray, captions: Sequence[str]) -> list[float]:
        """CLAP A-T. ``audio_embedding`` [E]: one clip against every caption; [N, E] with N captions:
        row i against caption i."""
        audio = _unit(audio_embedding)
        text = _unit(self.embed_text(captions))
        if audio.shape[0] == 1:
            audio = np.broadcast_to(audio, text.shape)
        if audio.shape[0] != text.shape[0]:
            raise ValueError(f"{audio.shape[0]} audio embeddings for {text.shape[0]} captions")
        return _row_cosines(audio, text)

    def text_text(self, captions: Sequence[str], references: Sequence[str | Sequence[str]]) -> list[float]:
        """CLAP T-T: caption i against reference i (with several references, the mean cosine)."""
        if len(captions) != len(references):
            raise ValueError(f"{len(captions)} captions for {len(references)} references")
        groups = [[r] if isinstance(r, str) else list(r) for r in references]
        flat = [r for group in groups for r in group]
        embeddings = _unit(self.embed_text(list(captions) + flat))
        candidates = np.repeat(embeddings[: len(captions)], [len(group) for group in groups], axis=0)
        cosines = np.array(_row_cosines(candidates, embeddings[len(captions) :]))
        ends = np.cumsum([len(group) for group in groups])
        return [float(np.mean(cosines[end - len(group) : end])) for group, end in zip(groups, ends)]
