"""Toy data shared by the architecture tests: four caption templates, each tied to a feature direction.

An item of template k has frames centred on axis k (plus noise, uneven lengths to exercise the
padding), so a model that learns anything maps the audio to the right caption.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from musiccap.encoders.embedded import AudioFeatures
from musiccap.encoders.embedded_clap import EmbeddedClap, EmbeddedClapConfig
from musiccap.features import AUDIO_FEATURES
from musiccap.models.base import Clip
from train.data import FeatureItem

TEMPLATES = [
    "a slow piano ballad in a minor key",
    "an upbeat rock song with drums and electric guitar",
    "a calm string quartet playing a major melody",
    "a fast techno track with a heavy bass",
]


def toy_item(
    index: int,
    rng: np.random.Generator,
    *,
    frame_dim: int,
    pooled_dim: int,
    lyrics: list[str | None] | None = None,
    random_pooled: bool = True,
) -> FeatureItem:
    kind = index % len(TEMPLATES)
    n_frames = 6 + index % 3  # uneven lengths exercise the padding
    centre = np.zeros(frame_dim, dtype=np.float32)
    centre[kind] = 3.0
    frames = (centre + 0.3 * rng.standard_normal((n_frames, frame_dim))).astype(np.float32)
    pooled = rng.standard_normal(pooled_dim) if random_pooled else np.zeros(pooled_dim)
    features = AudioFeatures(
        frames=frames,
        frame_times=np.arange(n_frames, dtype=np.float32) * 0.25 + 0.125,
        chunks=np.zeros((1, 200), dtype=np.float32),
        chunk_times=np.array([[0.0, 3.0]], dtype=np.float32),
        pooled=pooled.astype(np.float32),
        tags={},
    )
    return FeatureItem(
        id=f"clip{index:02d}",
        caption=TEMPLATES[kind],
        lyrics=lyrics[kind] if lyrics else None,
        attributes=None,
        piece=f"p{index}",
        features=features,
    )


def save_tiny_clap(path: Path, frame_dim: int, pooled_dim: int) -> Path:
    """A tiny random embedded CLAP (real frozen MiniLM text tower) saved as a checkpoint folder."""
    torch.manual_seed(0)
    config = EmbeddedClapConfig(
        frame_dim=frame_dim, pooled_dim=pooled_dim, d_audio=16, n_layers=1, n_heads=2, ff_dim=32, embed_dim=16
    )
    EmbeddedClap(config).save_pretrained(path)
    return path


def clip_of(item: FeatureItem, **extra) -> Clip:
    return Clip(None, clip_id=item.id, features={AUDIO_FEATURES: item.features, **extra})
