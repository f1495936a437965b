"""The embedded profile's audio representation, computed once per 10 s window and shared by every captioner.

Three blocks on one frame grid of ~4 frames per second (16 musicnn frames = 0.256 s):

* musicnn MTT mid-end frames (192 = cnn1, cnn2, cnn3), averaged over each group of 16 frames;
* chroma (12) and its correlations with the 24 Krumhansl major/minor key profiles (mode, key);
* a local tempogram on 24 log-spaced tempo bins (tempo class; double/half tempo kept visible).

Each block is divided by the square root of its width, so every block has a comparable norm in
the concatenation whatever its width (docs/ARCHITECTURE.md: plain concatenation cost .08 on tempo
and .10 on mode). MusCaps' input, musicnn's 200-d penultimate embedding per 3 s patch, comes alongside.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields

import numpy as np

from . import musicnn
from .musical import musical_features, pool_frames


@dataclass
class AudioFeatures:
    frames: np.ndarray  # [T, frame_dim] float32, scaled blocks: musicnn mid-end | chroma | key | tempogram
    frame_times: np.ndarray  # [T] centre of each frame, seconds from the window start
    chunks: np.ndarray  # [n_chunks, 200] musicnn MTT penultimate per 3 s patch (MusCaps' input)
    chunk_times: np.ndarray  # [n_chunks, 2] start/end seconds
    pooled: np.ndarray  # [pooled_dim] mean+max of frames, window chroma/key/tempogram, tempo summary
    tags: dict[str, float]  # MTT tag -> mean probability over the patches

    def to_tensors(self) -> dict[str, np.ndarray]:
        """Flat dict of arrays (safetensors-compatible); tags become a probability vector in MTT order."""
        out = {f.name: np.ascontiguousarray(getattr(self, f.name)) for f in fields(self) if f.name != "tags"}
        out["tags"] = np.array([self.tags[label] for label in musicnn.MTT_LABELS], dtype=np.float64)
        return out

    @classmethod
    def from_tensors(cls, tensors: dict[str, np.ndarray]) -> AudioFeatures:
        arrays = {f.name: np.asarray(tensors[f.name]) for f in fields(cls) if f.name != "tags"}
        tags = dict(zip(musicnn.MTT_LABELS, np.asarray(tensors["tags"]).tolist()))
        return cls(**arrays, tags=tags)


@dataclass(frozen=True)
class EmbeddedConfig:
    musicnn_model: str = "MTT_musicnn"
    pool: int = 16  # musicnn frames per output frame (16 x 16 ms = 0.256 s)
    chroma_dim: int = 12
    key_dim: int = 24
    tempo_dim: int = 24


class EmbeddedAudioEncoder:
    """Callable on one window at any sample rate; weights load on first use."""

    FORMAT = 1  # bump when the feature computation changes without a config change
    features_class = AudioFeatures  # what train/data.py rebuilds from the cached tensors

    def __init__(self, config: EmbeddedConfig | None = None, device: str = "cpu"):
        self.config = config or EmbeddedConfig()
        self.tagger = musicnn.MusicnnTagger(self.config.musicnn_model, device=device)
        self.midend_dim = 192
        self.block_dims = (
            self.midend_dim,
            self.config.chroma_dim,
            self.config.key_dim,
            self.config.tempo_dim,
        )
        self.frame_dim = sum(self.block_dims)
        self.chunk_dim = 200
        # mean + max of frames, then window chroma, key, tempogram, log2(bpm / 120), 3 octave strengths
        self.pooled_dim = (
            2 * self.frame_dim + self.config.chroma_dim + self.config.key_dim + self.config.tempo_dim + 4
        )
        digest = hashlib.sha1(
            json.dumps({**asdict(self.config), "format": self.FORMAT}, sort_keys=True).encode()
        )
        self.version = f"embedded-{self.config.musicnn_model}-{digest.hexdigest()[:10]}"

    def __call__(self, samples: np.ndarray, sample_rate: int) -> AudioFeatures:
        samples_16k = musicnn.resample(samples, sample_rate)
        mel = musicnn.mel_power(samples_16k)
        log_mel = musicnn.log_compress(mel)
        return self._features(samples_16k, mel, log_mel)

    def batch(self, windows: list[np.ndarray], sample_rate: int) -> list[AudioFeatures]:
        return [self(w, sample_rate) for w in windows]

    def _features(self, samples_16k: np.ndarray, mel: np.ndarray, log_mel: np.ndarray) -> AudioFeatures:
        n_frames = len(log_mel)
        regular = musicnn.patch_starts(n_frames)
        starts = musicnn.patch_starts(n_frames, cover_end=True)
        out = self.tagger.run_patches(musicnn.make_patches(log_mel, starts))
        # every frame gets mid-end features (the extra end patch fills the frames musicnn drops)
        midend = musicnn.stitch_patches(out.midend.numpy(), starts, max(n_frames, musicnn.PATCH_FRAMES))[
            :n_frames
        ]
        penultimate = out.penultimate.numpy()[: len(regular)]
        tags = 1.0 / (1.0 + np.exp(-out.logits.numpy()[: len(regular)].astype(np.float64)))

        musical = musical_features(samples_16k, mel, pool=self.config.pool)
        pooled_midend = pool_frames(midend, self.config.pool)
        blocks = (pooled_midend, musical.chroma, musical.key, musical.tempogram)
        frames = np.concatenate([b / np.sqrt(b.shape[1]) for b in blocks], axis=1).astype(np.float32)

        window = (musical.window_chroma, musical.window_key, musical.window_tempogram)
        tempo = np.concatenate([[np.log2(max(musical.tempo_bpm, 1.0) / 120.0)], musical.tempo_octaves])
        pooled = np.concatenate(
            [frames.mean(0), frames.max(0)] + [w / np.sqrt(len(w)) for w in window] + [tempo / 2.0]
        ).astype(np.float32)
        chunk_times = np.array([[s, s + musicnn.PATCH_FRAMES] for s in regular], dtype=np.float32)
        return AudioFeatures(
            frames=frames,
            frame_times=musical.frame_times,
            chunks=penultimate.astype(np.float32),
            chunk_times=chunk_times * np.float32(musicnn.FRAME_SECONDS),
            pooled=pooled,
            tags=dict(zip(musicnn.MTT_LABELS, tags.mean(0).tolist())),
        )
