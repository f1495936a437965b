"""Training items with their audio features, and the feature cache that makes epochs cheap.

Encoder features (musicnn frames and chunks, chroma/key, tempogram) are computed once per clip
and stored in one small safetensors file per clip, keyed by the audio's bytes and the encoder's
``version``: a new encoder or a re-rendered clip gets a new entry, never a stale one, and every
model (and every corpus that shares a clip) reuses the same entry.
Encoders that train (the CLAP towers) run on top of these features and are not cached. A model
reading the full profile's HTSAT CLAP caches that CLAP's log-mel per clip instead
(``musiccap.encoders.clap.ClapMel``; ``musiccap.encoders.clap_loader.feature_encoder`` picks the
encoder): an encoder names its features type (``features_class``), which rebuilds them from the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file
from tqdm import tqdm

from musiccap.audio import load_audio, windows


@dataclass
class FeatureItem:
    id: str
    caption: str
    lyrics: str | None
    attributes: dict | None
    piece: str
    features: object  # the encoder's features_class: AudioFeatures (embedded) or ClapMelFeatures (HTSAT)
    audio_path: str = ""  # the clip's audio file, for inputs computed from the waveform (mel patches)
    mel_patches: np.ndarray | None = None  # [n_chunks, 187, 96]: only MusCaps' scratch CNN reads these
    captions: tuple[str, ...] = ()  # corpus v2: every phrasing of the clip (`caption` is the first)
    # musiccap.analysis.Analysis of the clip, when the corpus has them (``python -m train.analysis_vectors``):
    # what analysis-conditioned captioners read (musiccap/conditioning.py)
    analysis: object | None = None

    @classmethod
    def from_row(cls, row: dict, features, **fields) -> FeatureItem:
        """A manifest row's clip with its features (and any other field: audio path, mel patches, analysis)."""
        return cls(
            id=row["id"],
            caption=row["caption"],
            lyrics=row.get("lyrics"),
            attributes=row.get("attributes"),
            piece=row.get("piece", row["id"]),
            features=features,
            captions=tuple(row.get("captions") or ()),
            **fields,
        )


class CaptionSampler:
    """A collate function that first gives each item one of its `captions`, drawn anew at every step.

    Corpus v2 has several independent phrasings per clip; training on a different one each time it
    meets a clip teaches what the captions agree on (the music), not one wording. Items with a single
    caption (v1 corpora) pass unchanged and draw nothing, so v1 training is exactly as before.
    """

    def __init__(self, collate, seed: int):
        self.collate = collate
        self.rng = random.Random(seed)

    def __call__(self, items):
        return self.collate(
            [
                replace(item, caption=self.rng.choice(item.captions))
                if len(getattr(item, "captions", ())) > 1  # a model's own item type may have none
                else item
                for item in items
            ]
        )


def reference_captions(items) -> list[list[str]]:
    """Each item's reference captions for scoring: all its phrasings (corpus v2), else its one caption."""
    return [list(getattr(item, "captions", ())) or [item.caption] for item in items]


def read_manifest(corpus_dir: str | Path, split: str) -> list[dict]:
    path = Path(corpus_dir) / f"{split}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(
            f"no manifest {path}; build the corpus with `python -m train.corpus --out DIR`"
        )
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def analysis_path(corpus_dir: str | Path, split: str) -> Path:
    """A split's analyses, one JSON line per clip (written by ``python -m train.analysis_vectors``)."""
    return Path(corpus_dir) / "analysis" / f"{split}.jsonl"


def read_analyses(corpus_dir: str | Path, split: str) -> dict:
    """clip id -> musiccap.analysis.Analysis; empty when the corpus has none for the split."""
    from musiccap.analysis import Analysis

    path = analysis_path(corpus_dir, split)
    if not path.is_file():
        return {}
    rows = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return {row["id"]: Analysis.from_json(row["analysis"]) for row in rows}


def default_cache_dir() -> Path:
    return Path(os.environ.get("MUSICCAP_CACHE", Path.home() / ".cache" / "musiccap")) / "features"


def clip_cache_path(
    audio_path: str | Path, encoder_version: str, cache_dir: str | Path | None = None
) -> Path:
    """Where one clip's features live: keyed by the audio's bytes and the encoder's version."""
    digest = hashlib.sha256(Path(audio_path).read_bytes()).hexdigest()[:24]
    return Path(cache_dir or default_cache_dir()) / encoder_version / f"{digest}.safetensors"


def clip_features(
    audio_path: str | Path, encoder, cache_dir: str | Path | None = None
) -> dict[str, np.ndarray]:
    """One clip's feature tensors, computed on first use (first 10 s window) and cached."""
    path = clip_cache_path(audio_path, encoder.version, cache_dir)
    if path.is_file():
        return load_file(str(path))
    window = windows(load_audio(audio_path), "first")[0]
    tensors = {
        k: np.ascontiguousarray(v)
        for k, v in encoder(window.samples, window.sample_rate).to_tensors().items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.partial")
    save_file(tensors, str(partial), metadata={"encoder": encoder.version})
    partial.rename(path)  # atomic: a crash mid-write never leaves a cache entry that looks complete
    return tensors


def cache_features(
    corpus_dir: str | Path, split: str, encoder=None, cache_dir: str | Path | None = None
) -> None:
    """Compute (once) the audio features of every clip in a split."""
    from musiccap.features import embedded_encoder

    encoder = encoder or embedded_encoder()
    for row in tqdm(read_manifest(corpus_dir, split), desc=f"features {split}", unit="clip"):
        clip_features(Path(corpus_dir) / row["audio"], encoder, cache_dir)


def load_items(
    corpus_dir: str | Path,
    split: str,
    *,
    encoder=None,
    cache_dir: str | Path | None = None,
    limit: int | None = None,
) -> list[FeatureItem]:
    """The split's clips with cached features (computing the cache on first use)."""
    from musiccap.features import embedded_encoder

    encoder = encoder or embedded_encoder()
    rows = read_manifest(corpus_dir, split)
    analyses = read_analyses(corpus_dir, split)
    items = []
    for row in tqdm(rows[:limit] if limit else rows, desc=f"load {split}", unit="clip", leave=False):
        tensors = clip_features(Path(corpus_dir) / row["audio"], encoder, cache_dir)
        items.append(
            FeatureItem.from_row(
                row,
                encoder.features_class.from_tensors(tensors),
                audio_path=str(Path(corpus_dir) / row["audio"]),
                analysis=analyses.get(row["id"]),
            )
        )
    return items
