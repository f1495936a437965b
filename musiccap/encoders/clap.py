"""LAION CLAP (HTSAT audio tower + RoBERTa text tower) through ``transformers`` for the full profile.

Audio handling is deterministic, unlike the feature extractor's defaults: the clip is resampled to
48 kHz and cut into fixed 10 s windows from 0 s (the last one repeat-padded by the extractor), never
``rand_trunc``'s random crop or fusion's random chunks; ``is_longer`` is forced to False because the
extractor marks a random clip as "longer" when none is. The clip embedding is the mean of the
windows' projected embeddings, re-normalised; frame tokens (HTSAT's last layer averaged over its
frequency rows) are concatenated over windows with their centre times in seconds.

Weights come from ``from_pretrained``: a Hub id on a Space (``CLAP_HUB_IDS``), or a local directory.
"""

from __future__ import annotations

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
        self.sample_rate = int(self.feature_extractor.sampling_rate)
        self.window_samples = int(WINDOW_SECONDS * self.sample_rate)
        self.projection_dim = self.model.config.projection_dim

    def windows(self, samples: np.ndarray, sample_rate: int) -> list[np.ndarray]:
        """Mono at the model's rate, cut into consecutive 10 s windows from the start."""
        from .musicnn import resample

        audio = resample(samples, sample_rate, self.sample_rate)
        if len(audio) == 0:
            raise ValueError("empty audio")
        return [audio[i : i + self.window_samples] for i in range(0, len(audio), self.window_samples)]

    @torch.inference_mode()
    def encode_audio(self, samples: np.ndarray, sample_rate: int, batch_size: int = 4) -> ClapAudioOutput:
        windows = self.windows(samples, sample_rate)
        embeddings, frames, frame_times = [], [], []
        for b in range(0, len(windows), batch_size):
            batch = windows[b : b + batch_size]
            # truncation is kept as configured (it selects the mel filter bank the checkpoint was trained
            # with); windows are never longer than max_length, so no random crop or fusion chunk is taken
            inputs = self.feature_extractor(
                batch, sampling_rate=self.sample_rate, padding="repeatpad", return_tensors="pt"
            )
            is_longer = torch.zeros_like(inputs["is_longer"], dtype=torch.bool)
            out = self.model.get_audio_features(
                input_features=inputs["input_features"].to(self.device), is_longer=is_longer.to(self.device)
            )
            embeddings.append(out.pooler_output.float().cpu())
            tokens = out.last_hidden_state.mean(dim=2).transpose(1, 2).float().cpu()  # [B, time, hidden]
            for i, window in enumerate(batch):
                # tokens span the (repeat-padded) 10 s; keep those inside the real audio
                n_tokens = tokens.shape[1]
                seconds = (np.arange(n_tokens) + 0.5) * WINDOW_SECONDS / n_tokens
                keep = seconds < max(len(window) / self.sample_rate, seconds[0] + 1e-6)
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
