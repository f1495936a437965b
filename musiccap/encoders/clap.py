"""LAION CLAP (HTSAT audio tower + RoBERTa text tower) through ``transformers`` for the full profile.

Audio handling is deterministic, unlike the feature extractor's defaults: the clip is resampled to
48 kHz and cut into fixed 10 s windows from 0 s (the last one repeat-padded by the extractor), never
``rand_trunc``'s random crop or fusion's random chunks; ``is_longer`` is forced to False because the
extractor marks a random clip as "longer" when none is. The clip embedding is the mean of the
windows' projected embeddings, re-normalised; frame tokens (HTSAT's last layer averaged over its
frequency rows) are concatenated over windows with their centre times in seconds.

Weights come from ``from_pretrained``: a Hub id on a Space (``CLAP_HUB_IDS``), or a local directory.
:class:`ClapMel` is the deterministic input side alone (one window's log-mel), which the training
feature cache stores and ``musiccap.encoders.htsat_clap`` feeds to HTSAT.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

# The only place Hub ids for CLAP live; the full profile picks one by key.
CLAP_HUB_IDS = {
    "music": "laion/larger_clap_music",
    "music_and_speech": "laion/larger_clap_music_and_speech",
    "general": "laion/larger_clap_general",
}
DEFAULT_CLAP = CLAP_HUB_IDS["music"]
WINDOW_SECONDS = 10.0


@dataclass
class ClapAudioOutput:
    embedding: np.ndarray  # [projection_dim] unit vector: mean over windows of the projected embeddings
    window_embeddings: np.ndarray  # [n_windows, projection_dim] unit vectors
    frames: np.ndarray  # [n_windows * tokens_per_window, hidden] HTSAT last-layer time tokens
    frame_times: np.ndarray  # [n_frames] centre of each token, seconds from the clip start
    window_times: np.ndarray  # [n_windows, 2] start/end seconds


@dataclass
class ClapMelFeatures:
    """One window's HTSAT input: what the training cache stores and the app memoises per clip."""

    input_features: np.ndarray  # [channels, mel frames, mel bins]: 1 channel, or 4 for fusion checkpoints
    duration_s: float  # seconds of real audio in the window (the rest of the 10 s is repeat padding)

    def to_tensors(self) -> dict[str, np.ndarray]:
        return {
            "input_features": np.ascontiguousarray(self.input_features, dtype=np.float32),
            "duration_s": np.array([self.duration_s], dtype=np.float64),
        }

    @classmethod
    def from_tensors(cls, tensors: dict[str, np.ndarray]) -> ClapMelFeatures:
        return cls(np.asarray(tensors["input_features"]), float(np.asarray(tensors["duration_s"])[0]))


class ClapMel:
    """A ``ClapFeatureExtractor`` made deterministic: resample, fixed 10 s windows, repeat padding.

    Callable on one window (``train/data.py``'s encoder protocol: ``version``, ``features_class``,
    ``__call__(samples, sample_rate)``); a longer input keeps its first 10 s.
    """

    FORMAT = 1  # bump when the computation below changes without a feature-extractor change
    features_class = ClapMelFeatures

    def __init__(self, feature_extractor):
        self.feature_extractor = feature_extractor
        self.sample_rate = int(feature_extractor.sampling_rate)
        self.window_samples = int(WINDOW_SECONDS * self.sample_rate)
        settings = json.dumps({**feature_extractor.to_dict(), "format": self.FORMAT}, sort_keys=True)
        self.version = f"clap-mel-{hashlib.sha1(settings.encode()).hexdigest()[:10]}"

    @classmethod
    def from_pretrained(cls, name_or_path: str, local_files_only: bool = False) -> ClapMel:
        from transformers import AutoFeatureExtractor

        return cls(AutoFeatureExtractor.from_pretrained(name_or_path, local_files_only=local_files_only))

    def windows(self, samples: np.ndarray, sample_rate: int) -> list[np.ndarray]:
        """Mono at the model's rate, cut into consecutive 10 s windows from the start."""
        from .musicnn import resample

        audio = resample(samples, sample_rate, self.sample_rate)
        if len(audio) == 0:
            raise ValueError("empty audio")
        return [audio[i : i + self.window_samples] for i in range(0, len(audio), self.window_samples)]

    def input_features(self, windows: Sequence[np.ndarray]) -> torch.Tensor:
        """[B, channels, mel frames, mel bins] for windows at the model's rate, none longer than 10 s.

        ``truncation`` is kept as configured (it selects the mel filter bank the checkpoint was trained
        with); windows are never longer than max_length, so no random crop or fusion chunk is taken.
        """
        inputs = self.feature_extractor(
            list(windows), sampling_rate=self.sample_rate, padding="repeatpad", return_tensors="pt"
        )
        return inputs["input_features"]

    def __call__(self, samples: np.ndarray, sample_rate: int) -> ClapMelFeatures:
        window = self.windows(samples, sample_rate)[0]
        return ClapMelFeatures(
            input_features=self.input_features([window])[0].numpy().astype(np.float32),
            duration_s=len(window) / self.sample_rate,
        )


def tokens_inside(n_tokens: int, duration_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Centres (seconds) of a window's ``n_tokens`` HTSAT time tokens, and which lie in the real audio.

    The tokens span the (repeat-padded) 10 s; the first one is always kept, however short the clip.
    """
    seconds = (np.arange(n_tokens) + 0.5) * WINDOW_SECONDS / n_tokens
    return seconds, seconds < max(duration_s, seconds[0] + 1e-6)


class ClapEncoder:
    """Audio and text embeddings from a ``ClapModel`` checkpoint (Hub id or local directory)."""

    def __init__(self, name_or_path: str = DEFAULT_CLAP, device: str = "cpu", local_files_only: bool = False):
        from transformers import AutoFeatureExtractor, AutoTokenizer, ClapModel

        self.name_or_path = name_or_path
        self.device = torch.device(device)
        self.model = (
            ClapModel.from_pretrained(name_or_path, local_files_only=local_files_only).to(self.device).eval()
        )
        self.feature_extractor = AutoFeatureExtractor.from_pretrained(
            name_or_path, local_files_only=local_files_only
        )
        self.tokenizer = AutoTokenizer.from_pretrained(name_or_path, local_files_only=local_files_only)
        self.mel = ClapMel(self.feature_extractor)
        self.sample_rate = self.mel.sample_rate
        self.window_samples = self.mel.window_samples
        self.projection_dim = self.model.config.projection_dim

    def windows(self, samples: np.ndarray, sample_rate: int) -> list[np.ndarray]:
        """Mono at the model's rate, cut into consecutive 10 s windows from the start."""
        return self.mel.windows(samples, sample_rate)

    @torch.inference_mode()
    def encode_audio(self, samples: np.ndarray, sample_rate: int, batch_size: int = 4) -> ClapAudioOutput:
        windows = self.windows(samples, sample_rate)
        embeddings, frames, frame_times = [], [], []
        for b in range(0, len(windows), batch_size):
            batch = windows[b : b + batch_size]
            is_longer = torch.zeros(len(batch), 1, dtype=torch.bool)
            out = self.model.get_audio_features(
                input_features=self.mel.input_features(batch).to(self.device),
                is_longer=is_longer.to(self.device),
            )
            embeddings.append(out.pooler_output.float().cpu())
            tokens = out.last_hidden_state.mean(dim=2).transpose(1, 2).float().cpu()  # [B, time, hidden]
            for i, window in enumerate(batch):
                seconds, keep = tokens_inside(tokens.shape[1], len(window) / self.sample_rate)
                frames.append(tokens[i][torch.from_numpy(keep)].numpy())
                frame_times.append(seconds[keep] + (b + i) * WINDOW_SECONDS)
        window_embeddings = torch.cat(embeddings)
        starts = np.arange(len(windows)) * WINDOW_SECONDS
        ends = starts + np.array([len(w) / self.sample_rate for w in windows])
        return ClapAudioOutput(
            embedding=F.normalize(window_embeddings.mean(0), dim=-1).numpy(),
            window_embeddings=window_embeddings.numpy(),
            frames=np.concatenate(frames).astype(np.float32),
            frame_times=np.concatenate(frame_times).astype(np.float32),
            window_times=np.stack([starts, ends], 1).astype(np.float32),
        )

    @torch.inference_mode()
    def encode_text(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """[len(texts), projection_dim] unit vectors."""
        out = []
        for i in range(0, len(texts), batch_size):
            tokens = self.tokenizer(
                list(texts[i : i + batch_size]), padding=True, truncation=True, return_tensors="pt"
            ).to(self.device)
            features = self.model.get_text_features(
                input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
            )
            out.append(F.normalize(features.pooler_output.float(), dim=-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.projection_dim), dtype=np.float32)
