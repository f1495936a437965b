"""Training items with their audio features, and the feature cache that makes epochs cheap.

Encoder features (musicnn frames and chunks, chroma/key, tempogram) are computed once per clip
and stored per split in one safetensors file, keyed by the encoder's ``version`` and the
manifest's content: a new encoder or a rebuilt corpus gets a new cache, never a stale one.
Encoders that train (the CLAP towers) run on top of these features and are not cached.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
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
    features: object  # musiccap.encoders.embedded.AudioFeatures


def read_manifest(corpus_dir: str | Path, split: str) -> list[dict]:
    path = Path(corpus_dir) / f"{split}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(
            f"no manifest {path}; build the corpus with `python -m train.corpus --out DIR`"
        )
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def default_cache_dir() -> Path:
    return Path(os.environ.get("MUSICCAP_CACHE", Path.home() / ".cache" / "musiccap")) / "features"


def _cache_path(corpus_dir: Path, split: str, encoder_version: str, cache_dir: Path) -> Path:
    manifest = (corpus_dir / f"{split}.jsonl").read_bytes()
    key = hashlib.sha256(manifest + encoder_version.encode()).hexdigest()[:16]
    return cache_dir / f"{corpus_dir.resolve().name}-{split}-{key}.safetensors"


def cache_features(
    corpus_dir: str | Path, split: str, encoder=None, cache_dir: str | Path | None = None
) -> Path:
    """Compute (once) and store the audio features of every clip in a split; return the cache file."""
    from musiccap.features import embedded_encoder

    encoder = encoder or embedded_encoder()
    corpus_dir = Path(corpus_dir)
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    path = _cache_path(corpus_dir, split, encoder.version, cache_dir)
    if path.is_file():
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, np.ndarray] = {}
    for row in tqdm(read_manifest(corpus_dir, split), desc=f"features {split}", unit="clip"):
        audio = load_audio(corpus_dir / row["audio"])
        window = windows(audio, "first")[0]
        for name, value in encoder(window.samples, window.sample_rate).to_tensors().items():
            tensors[f"{row['id']}/{name}"] = np.ascontiguousarray(value)
    partial = path.with_suffix(".partial")
    save_file(tensors, str(partial), metadata={"encoder": encoder.version, "split": split})
    partial.rename(path)  # a crash mid-way never leaves a cache that looks complete
    return path


def load_items(
    corpus_dir: str | Path,
    split: str,
    *,
    encoder=None,
    cache_dir: str | Path | None = None,
    limit: int | None = None,
) -> list[FeatureItem]:
    """The split's clips with cached features (computing the cache on first use)."""
    from musiccap.encoders.embedded import AudioFeatures

    rows = read_manifest(corpus_dir, split)
    cached = load_file(str(cache_features(corpus_dir, split, encoder, cache_dir)))
    grouped: dict[str, dict[str, np.ndarray]] = {}
    for key, value in cached.items():
        clip_id, name = key.split("/", 1)
        grouped.setdefault(clip_id, {})[name] = value
    items = []
    for row in rows[:limit] if limit else rows:
        items.append(
            FeatureItem(
                id=row["id"],
                caption=row["caption"],
                lyrics=row.get("lyrics"),
                attributes=row.get("attributes"),
                piece=row.get("piece", row["id"]),
                features=AudioFeatures.from_tensors(grouped[row["id"]]),
            )
        )
    return items
