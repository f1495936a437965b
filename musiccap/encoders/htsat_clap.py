"""LAION CLAP (HTSAT audio tower + RoBERTa text tower) behind the embedded CLAP's contract: the full profile.

Kim & Park and BLAP read a CLAP through a handful of members (``EmbeddedClap``'s: ``audio_dim``,
``embed_dim``, ``tokenizer``, ``text_input_embeddings``, ``audio_batch``, ``audio_tokens``,
``audio_inputs``, ``token_times``, ``embed_audio``, ``embed_text``,
``text_embedding_from_inputs_embeds``, ``feature_name`` and the trainable tower ``audio``).
:class:`HtsatClap` answers them for a ``transformers.ClapModel`` folder (e.g. a snapshot of
``laion/larger_clap_music``), reusing :class:`~musiccap.encoders.clap.ClapEncoder` for loading,
windowing and text embedding.

What the "features" are. The embedded CLAP's audio tower reads cached musicnn/chroma/tempogram
frames; HTSAT's input is the ``ClapFeatureExtractor`` log-mel of one 10 s window
(:class:`~musiccap.encoders.clap.ClapMelFeatures`, made by :class:`~musiccap.encoders.clap.ClapMel`).
That is what the training feature cache stores (keyed by the extractor's settings) and what the
app memoises per clip (``feature_name``): the cheap deterministic part is computed once, and every
pass runs the HTSAT blocks, so Kim & Park's M1 can train them.

Frame tokens: HTSAT's last layer averaged over its frequency rows, ``n_tokens`` per window
(32 for HTSAT-base, 0.3125 s each). ``musiccap.audio.windows`` zero-pads every window to 10 s (as
Kim & Park pad), so clips from the app and the training cache have no padding tokens; audio shorter
than 10 s given to ``ClapMel`` directly is repeat-padded by the extractor, and the tokens past its
end are masked. The pooled embedding is the audio projection of HTSAT's pooled output, L2-normalised.
``is_longer`` is always False (no random fusion chunks), so a clip always gets the same vectors.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from musiccap.clip import CLAP_MEL
from musiccap.encoders.clap import ClapEncoder, ClapMelFeatures, tokens_inside


def htsat_time_tokens(audio_config) -> int:
    """Time tokens per window of ``ClapAudioEncoder``'s last layer, from its config.

    The mel image is ``spec_size`` square (``freq_ratio`` = spec_size / mel bins time segments
    stacked along frequency); after the patch stride and one halving per stage but the last,
    ``ClapAudioEncoder.forward`` regroups the rows into those segments laid end to end in time.
    """
    stride = audio_config.patch_stride
    stride_freq, stride_time = (stride, stride) if isinstance(stride, int) else stride
    downsampled = audio_config.spec_size // 2 ** (len(audio_config.depths) - 1)
    n_freq, n_time = downsampled // stride_freq, downsampled // stride_time
    freq_ratio = audio_config.spec_size // audio_config.num_mel_bins
    return (n_freq // (n_freq // freq_ratio)) * n_time


class HtsatAudioTower(nn.Module):
    """HTSAT and its projection: log-mel windows -> frame tokens and the clip embedding."""

    def __init__(self, audio_model: nn.Module, audio_projection: nn.Module):
        super().__init__()
        self.audio_model = audio_model
        self.audio_projection = audio_projection

    def forward(self, input_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, channels, mel frames, mel bins] -> tokens [B, n_tokens, hidden], embedding [B, E] unit."""
        is_longer = torch.zeros(input_features.shape[0], 1, dtype=torch.bool, device=input_features.device)
        out = self.audio_model(input_features=input_features, is_longer=is_longer)
        tokens = out.last_hidden_state.mean(dim=2).transpose(1, 2)
        return tokens, F.normalize(self.audio_projection(out.pooler_output), dim=-1)


class HtsatClap(nn.Module):
    """A ``ClapModel`` folder as a CLAP backend for the captioners (see the module doc)."""

    def __init__(self, encoder: ClapEncoder):
        super().__init__()
        self.encoder = encoder  # loading, windowing, log-mel, text embedding
        model = encoder.model
        self.audio = HtsatAudioTower(model.audio_model, model.audio_projection)
        self.text_model = model.text_model
        self.text_projection = model.text_projection
        self.n_tokens = htsat_time_tokens(model.config.audio_config)
        self.eval()

    @classmethod
    def from_pretrained(cls, path) -> HtsatClap:
        """A local folder holding a ``ClapModel``, its feature extractor and tokenizer (never the Hub:
        ``musiccap.encoders.clap_loader.clap_folder`` fetches Hub ids first)."""
        return cls(ClapEncoder(str(path), local_files_only=True))

    # -- sizes other models read ------------------------------------------------------------------

    @property
    def audio_dim(self) -> int:
        """Width of the frame tokens decoders cross-attend to (HTSAT's last layer)."""
        return int(self.encoder.model.config.audio_config.hidden_size)

    @property
    def embed_dim(self) -> int:
        return int(self.encoder.projection_dim)

    @property
    def tokenizer(self):
        """The text tower's tokenizer (RoBERTa's byte-level BPE for LAION CLAP)."""
        return self.encoder.tokenizer

    @property
    def text_input_embeddings(self) -> nn.Embedding:
        return self.text_model.get_input_embeddings()

    @property
    def feature_name(self) -> str:
        """The Clip feature this backend reads: log-mels of this feature extractor's settings."""
        return f"{CLAP_MEL}:{self.encoder.mel.version}"

    # -- audio ------------------------------------------------------------------------------------

    def audio_batch(self, features_list: Sequence[ClapMelFeatures]) -> dict[str, torch.Tensor]:
        """{"frames": log-mels [B, C, T, F], "mask": [B, n_tokens] (True = token in real audio),
        "pooled": [B, 0] (HTSAT has no side vector; kept so every backend's batch has the same keys)}."""
        frames = torch.from_numpy(
            np.stack([np.asarray(f.input_features, dtype=np.float32) for f in features_list])
        )
        mask = torch.from_numpy(
            np.stack([tokens_inside(self.n_tokens, f.duration_s)[1] for f in features_list])
        )
        return {"frames": frames, "mask": mask, "pooled": torch.zeros(len(features_list), 0)}

    def audio_tokens(
        self, frames: torch.Tensor, mask: torch.Tensor, pooled: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-mels [B, C, T, F] -> (tokens [B, n_tokens, audio_dim], embedding [B, E] unit). HTSAT
        attends over the whole repeat-padded window, so ``mask`` only matters to the reader of the
        tokens; ``pooled`` is unused. Differentiable."""
        return self.audio(frames)

    def audio_inputs(self, clip) -> ClapMelFeatures:
        """The clip's log-mel, computed once per clip and extractor (the scorer protocol)."""

        def compute(c) -> ClapMelFeatures:
            if c.window is None:
                raise ValueError(f"clip {c.id!r} has neither audio nor cached {self.feature_name}")
            return self.encoder.mel(c.window.samples, c.window.sample_rate)

        return clip.get(self.feature_name, compute)

    def token_times(self, features: ClapMelFeatures) -> np.ndarray:
        """Centres (seconds from the window start) of the tokens inside the real audio."""
        seconds, keep = tokens_inside(self.n_tokens, features.duration_s)
        return seconds[keep].astype(np.float32)

    def embed_audio(self, features_list: Sequence[ClapMelFeatures], batch_size: int = 1) -> np.ndarray:
        """[N, E] float32 unit vectors; one window per forward by default (bit-identical whatever
        else is embedded alongside, as the embedded CLAP promises)."""
        out = np.zeros((len(features_list), self.embed_dim), dtype=np.float32)
        was_training = self.training
        self.eval()
        with torch.inference_mode():
            for start in range(0, len(features_list), batch_size):
                batch = self.audio_batch(features_list[start : start + batch_size])
                out[start : start + batch_size] = self.audio(batch["frames"])[1].numpy()
        self.train(was_training)
        return out

    # -- text -------------------------------------------------------------------------------------

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """[N, E] float32 unit vectors, one caption per forward (frozen tower, eval mode)."""
        rows = [self.encoder.encode_text([text])[0] for text in texts]
        return np.stack(rows).astype(np.float32) if rows else np.zeros((0, self.embed_dim), np.float32)

    def text_embedding_from_inputs_embeds(
        self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """[B, L, text width] word-embedding-space inputs -> [B, E] unit vectors, differentiable w.r.t. the
        inputs (Kim & Park's L_S). RoBERTa numbers positions from ``inputs_embeds`` consecutively, as it
        does for unpadded ids; padding positions differ but are masked."""
        out = self.text_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask)
        return F.normalize(self.text_projection(out.pooler_output), dim=-1)
