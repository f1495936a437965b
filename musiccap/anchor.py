"""The speed anchor: one LP-MusicCaps-shaped caption, the cost of the tool a user would pick instead.

LP-MusicCaps (Doh et al. 2023) captions a 10 s clip with BART-base fed by a convolutional front end
on a 128-bin log-mel spectrogram (16 kHz, 1024-point FFT, 10 ms hop). ``musiccap bench`` times this
shape in the same run as the app so that the app's speed is quoted as a ratio to it, which holds on
any machine and under any load, where absolute seconds do not.

Only the shape matters for speed, so the weights are random and the model is built from
transformers' config classes: nothing is downloaded. Decoding is beam 5 with exactly 60 new tokens
(``min_new_tokens`` = ``max_new_tokens``: random weights would otherwise stop at whatever step EOS
happens to win) and facebook/bart-base's own no-repeat 3-gram rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from transformers import BartConfig, BartForConditionalGeneration, GenerationConfig
from transformers.modeling_outputs import BaseModelOutput

SAMPLE_RATE = 16_000
N_FFT = 1024
HOP_LENGTH = 160  # 10 ms: 1000 frames for 10 s, 250 encoder positions after the two stride-2 convs
N_MELS = 128


def bart_base_config(**overrides) -> BartConfig:
    """facebook/bart-base's architecture (transformers' ``BartConfig`` defaults are bart-large's)."""
    shape = dict(
        vocab_size=50265,
        d_model=768,
        encoder_layers=6,
        decoder_layers=6,
        encoder_attention_heads=12,
        decoder_attention_heads=12,
        encoder_ffn_dim=3072,
        decoder_ffn_dim=3072,
        max_position_embeddings=1024,
    )
    return BartConfig(**{**shape, **overrides})


@dataclass
class AnchorDecoding:
    num_beams: int = 5
    new_tokens: int = 60
    no_repeat_ngram_size: int = 3  # facebook/bart-base's generation default

    def generation_config(self, bart: BartConfig) -> GenerationConfig:
        return GenerationConfig(
            num_beams=self.num_beams,
            max_new_tokens=self.new_tokens,
            min_new_tokens=self.new_tokens,
            no_repeat_ngram_size=self.no_repeat_ngram_size,
            do_sample=False,
            decoder_start_token_id=bart.decoder_start_token_id,
            bos_token_id=bart.bos_token_id,
            eos_token_id=bart.eos_token_id,
            pad_token_id=bart.pad_token_id,
        )


class LpMusicCapsAnchor(nn.Module):
    """Log-mel -> two stride-2 1-D convs with GELU -> BART encoder (as ``inputs_embeds``) -> beam search."""

    def __init__(self, bart: BartConfig | None = None, decoding: AnchorDecoding | None = None, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)  # random weights, but the same ones on every run
        bart = bart or bart_base_config()
        self.decoding = decoding or AnchorDecoding()
        self.conv1 = nn.Conv1d(N_MELS, bart.d_model, kernel_size=3, stride=2, padding=1)
        self.conv2 = nn.Conv1d(bart.d_model, bart.d_model, kernel_size=3, stride=2, padding=1)
        self.bart = BartForConditionalGeneration(bart).eval()
        import librosa

        mel = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS)
        self.register_buffer("mel_filters", torch.from_numpy(mel), persistent=False)  # [n_mels, n_fft/2+1]
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)
        self.generation_config = self.decoding.generation_config(bart)

    def log_mel(self, samples_16k: torch.Tensor) -> torch.Tensor:
        """[batch, n_mels, frames] log power mel (dB), as LP-MusicCaps' MelSpectrogram + AmplitudeToDB."""
        spectrum = torch.stft(samples_16k, N_FFT, HOP_LENGTH, window=self.window, return_complex=True)
        mel = self.mel_filters @ spectrum.abs().pow(2)
        return 10.0 * torch.log10(mel.clamp(min=1e-10))

    def encode(self, samples_16k: torch.Tensor) -> torch.Tensor:
        """[batch, positions, d_model]: the front end, then the BART encoder on its output as embeddings."""
        x = nn.functional.gelu(self.conv1(self.log_mel(samples_16k)))
        x = nn.functional.gelu(self.conv2(x)).transpose(1, 2)
        return self.bart.model.encoder(inputs_embeds=x, return_dict=True).last_hidden_state

    @torch.no_grad()
    def caption_ids(self, samples: np.ndarray, sample_rate: int) -> torch.Tensor:
        """[batch, new_tokens + 1] generated ids (the decoder start token first) for one clip [n] or a batch [b, n]."""
        from musiccap.encoders.musicnn import resample

        samples = np.atleast_2d(samples)
        samples_16k = torch.from_numpy(np.stack([resample(row, sample_rate) for row in samples]))
        encoded = self.encode(samples_16k)
        return self.bart.generate(
            encoder_outputs=BaseModelOutput(last_hidden_state=encoded),
            generation_config=self.generation_config,
        )
