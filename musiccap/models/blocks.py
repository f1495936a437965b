"""Blocks the architectures share: attention that returns its weights, a cached Transformer decoder,
and the helpers that turn attention weights into heatmap views.

ALCAP (a BART-style, post-LN decoder) and CSA (a GPT-style, pre-LN decoder) build their caption
decoders from :class:`TransformerDecoder`; the module names are those of their checkpoints, so the
shipped weights load as they are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from transformers import GPT2LMHeadModel


class Attention(nn.Module):
    """Multi-head attention that returns its weights (the heatmaps) and takes precomputed keys/values.

    Queries, keys and values are ``attention_dim`` wide (default ``width``), split over the heads and
    projected back to ``width``. ``fused_key_value``: one projection makes keys and values (CSA's
    checkpoints) instead of two (ALCAP's).
    """

    def __init__(
        self,
        width: int,
        n_heads: int,
        dropout: float,
        attention_dim: int | None = None,
        *,
        fused_key_value: bool = False,
    ):
        super().__init__()
        attention_dim = attention_dim or width
        self.n_heads, self.head_dim = n_heads, attention_dim // n_heads
        self.query = nn.Linear(width, attention_dim)
        if fused_key_value:
            self.key_value = nn.Linear(width, 2 * attention_dim)
        else:
            self.key = nn.Linear(width, attention_dim)
            self.value = nn.Linear(width, attention_dim)
        self.out = nn.Linear(attention_dim, width)
        self.dropout = nn.Dropout(dropout)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:  # [N, L, attention_dim] -> [N, heads, L, head_dim]
        return x.view(x.shape[0], x.shape[1], self.n_heads, self.head_dim).transpose(1, 2)

    def keys_values(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if hasattr(self, "key_value"):
            keys, values = self.key_value(source).chunk(2, dim=-1)
        else:
            keys, values = self.key(source), self.value(source)
        return self._heads(keys), self._heads(values)

    def forward(self, x, keys, values, allowed):
        """x [N, Lq, width]; keys/values [N, heads, Lk, head_dim]; allowed bool, broadcast to [N, heads, Lq, Lk]."""
        scores = self._heads(self.query(x)) @ keys.transpose(-1, -2) / math.sqrt(self.head_dim)
        weights = scores.masked_fill(~allowed, float("-inf")).softmax(dim=-1)
        mixed = (self.dropout(weights) @ values).transpose(1, 2).reshape(x.shape[0], x.shape[1], -1)
        return self.out(mixed), weights


def feed_forward(width: int, ff_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, ff_dim), nn.GELU(), nn.Linear(ff_dim, width))


@dataclass
class DecoderShape:
    """The sizes of a :class:`TransformerDecoder` and which of the two block styles it uses."""

    vocab_size: int
    max_positions: int
    width: int
    n_layers: int
    n_heads: int
    ff_dim: int
    dropout: float
    attention_dim: int = 0  # 0: the width
    pre_norm: bool = (
        False  # True: GPT style (pre-LN, final norm); False: BART style (post-LN, embedding norm)
    )
    fused_key_value: bool = False


class DecoderLayer(nn.Module):
    """Causal self-attention over the tokens so far, cross-attention to the memory, feed-forward."""

    def __init__(self, shape: DecoderShape):
        super().__init__()
        self.pre_norm = shape.pre_norm

        def attention():
            return Attention(
                shape.width,
                shape.n_heads,
                shape.dropout,
                shape.attention_dim,
                fused_key_value=shape.fused_key_value,
            )

        self.self_attention = attention()
        self.self_norm = nn.LayerNorm(shape.width)
        self.cross_attention = attention()
        self.cross_norm = nn.LayerNorm(shape.width)
        self.mlp = feed_forward(shape.width, shape.ff_dim)
        self.mlp_norm = nn.LayerNorm(shape.width)
        self.dropout = nn.Dropout(shape.dropout)

    def forward(self, x, past_keys, past_values, causal, memory_keys, memory_values, memory_allowed):
        if self.pre_norm:
            normed = self.self_norm(x)
            new_keys, new_values = self.self_attention.keys_values(normed)
            keys = torch.cat([past_keys, new_keys], dim=2)
            values = torch.cat([past_values, new_values], dim=2)
            attended, _ = self.self_attention(normed, keys, values, causal)
            x = x + self.dropout(attended)
            attended, cross_weights = self.cross_attention(
                self.cross_norm(x), memory_keys, memory_values, memory_allowed
            )
            x = x + self.dropout(attended)
            x = x + self.dropout(self.mlp(self.mlp_norm(x)))
            return x, keys, values, cross_weights
        new_keys, new_values = self.self_attention.keys_values(x)
        keys = torch.cat([past_keys, new_keys], dim=2)
        values = torch.cat([past_values, new_values], dim=2)
        attended, _ = self.self_attention(x, keys, values, causal)
        x = self.self_norm(x + self.dropout(attended))
        attended, cross_weights = self.cross_attention(x, memory_keys, memory_values, memory_allowed)
        x = self.cross_norm(x + self.dropout(attended))
        x = self.mlp_norm(x + self.dropout(self.mlp(x)))
        return x, keys, values, cross_weights


@dataclass
class DecoderOutput:
    logits: torch.Tensor  # [N, L, vocab]
    keys: tuple[torch.Tensor, ...]  # per layer [N, heads, past + L, head_dim]: the self-attention cache
    values: tuple[torch.Tensor, ...]
    cross_attention: torch.Tensor  # [N, layers, heads, L, S]


class TransformerDecoder(nn.Module):
    """Token + learned position embeddings, decoder blocks, output layer tied to the token embedding.

    BART style (ALCAP): embedding LayerNorm, post-LN blocks, an output bias. GPT style (CSA): pre-LN
    blocks and a final LayerNorm. Self-attention keys/values are cached, so each decoding step is one
    token; the memory's cross-attention keys/values are computed once per clip (:meth:`memory_cache`).
    """

    def __init__(self, shape: DecoderShape):
        super().__init__()
        self.shape = shape
        self.token_embedding = nn.Embedding(shape.vocab_size, shape.width)
        self.position_embedding = nn.Embedding(shape.max_positions, shape.width)
        if not shape.pre_norm:
            self.embedding_norm = nn.LayerNorm(shape.width)
        self.dropout = nn.Dropout(shape.dropout)
        self.layers = nn.ModuleList(DecoderLayer(shape) for _ in range(shape.n_layers))
        if shape.pre_norm:
            self.final_norm = nn.LayerNorm(shape.width)
        else:
            self.output_bias = nn.Parameter(torch.zeros(shape.vocab_size))
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.position_embedding.weight, std=0.02)

    def memory_cache(self, memory: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        """Cross-attention keys and values of every layer, computed once per clip."""
        pairs = [layer.cross_attention.keys_values(memory) for layer in self.layers]
        return tuple(k for k, _ in pairs), tuple(v for _, v in pairs)

    def empty_cache(self, n_rows: int) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        head_dim = (self.shape.attention_dim or self.shape.width) // self.shape.n_heads
        empty = torch.zeros(n_rows, self.shape.n_heads, 0, head_dim)
        return tuple(empty for _ in self.layers), tuple(empty for _ in self.layers)

    def forward(self, tokens, memory_keys, memory_values, memory_mask, past_keys=None, past_values=None):
        """tokens [N, L] following ``past`` cached positions; memory_mask [N, S] True = real position."""
        if past_keys is None:
            past_keys, past_values = self.empty_cache(tokens.shape[0])
        start, length = past_keys[0].shape[2], tokens.shape[1]
        if start + length > self.shape.max_positions:
            raise ValueError(f"{start + length} positions exceed max_positions={self.shape.max_positions}")
        x = self.token_embedding(tokens) + self.position_embedding(torch.arange(start, start + length))
        x = self.dropout(x if self.shape.pre_norm else self.embedding_norm(x))
        causal = torch.ones(length, start + length, dtype=torch.bool).tril(diagonal=start)
        memory_allowed = memory_mask[:, None, None, :]
        keys, values, cross = [], [], []
        for index, layer in enumerate(self.layers):
            x, k, v, weights = layer(
                x, past_keys[index], past_values[index], causal, memory_keys[index], memory_values[index],
                memory_allowed,
            )  # fmt: skip
            keys.append(k)
            values.append(v)
            cross.append(weights)
        if self.shape.pre_norm:
            logits = self.final_norm(x) @ self.token_embedding.weight.T
        else:
            logits = x @ self.token_embedding.weight.T + self.output_bias
        return DecoderOutput(logits, tuple(keys), tuple(values), torch.stack(cross, dim=1))

    def cached_step(self, last_tokens: torch.Tensor, state: dict, never_generated: list[int]):
        """One step for :func:`musiccap.decoding.search` over the state ``search_state`` made.

        Returns logits [N, V] (``never_generated`` ids masked), the grown cache and the cross-attention
        of every layer and head, flattened to [N, layers * heads * S]."""
        output = self(
            last_tokens[:, None],
            state["memory_keys"],
            state["memory_values"],
            state["memory_mask"],
            state["keys"],
            state["values"],
        )
        new_state = {**state, "keys": output.keys, "values": output.values}
        logits = output.logits[:, -1].clone()
        logits[:, never_generated] = float("-inf")  # never training targets (padding, UNK, BOS)
        return logits, new_state, output.cross_attention[:, :, :, 0, :].reshape(len(last_tokens), -1)

    def search_state(self, memory: torch.Tensor, memory_mask: torch.Tensor, expand: torch.Tensor) -> dict:
        """The decoding state of memory rows ``expand`` (each clip repeated once per beam)."""
        memory_keys, memory_values = self.memory_cache(memory.index_select(0, expand))
        keys, values = self.empty_cache(len(expand))
        return {
            "memory_keys": memory_keys,
            "memory_values": memory_values,
            "memory_mask": memory_mask.index_select(0, expand),
            "keys": keys,
            "values": values,
        }


IGNORE = -100  # cross-entropy target of padding


def teacher_forcing(
    captions: list[list[int]], bos: int, eos: int, pad: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoder inputs (BOS + caption, padded) and targets (caption + EOS, padding ignored), [B, L + 1] each."""
    longest = max(len(c) for c in captions) + 1
    input_ids = torch.full((len(captions), longest), pad, dtype=torch.long)
    targets = torch.full((len(captions), longest), IGNORE, dtype=torch.long)
    for row, caption in enumerate(captions):
        input_ids[row, : len(caption) + 1] = torch.tensor([bos] + caption)
        targets[row, : len(caption) + 1] = torch.tensor(caption + [eos])
    return input_ids, targets


@torch.no_grad()
def gpt2_cached_step(
    lm: GPT2LMHeadModel,
    tokens: torch.Tensor,
    past: tuple[tuple[torch.Tensor, torch.Tensor], ...],
    attention_mask: torch.Tensor,
    positions: torch.Tensor,
    prefix: tuple[tuple[torch.Tensor, torch.Tensor], ...] | None = None,
) -> tuple[torch.Tensor, tuple[tuple[torch.Tensor, torch.Tensor], ...], list[torch.Tensor]]:
    """One decoding step of an eval-mode GPT-2 over its key/value cache: what
    ``lm(input_ids=tokens, past_key_values=..., attention_mask=..., position_ids=..., output_attentions=True)``
    computes (eager attention), from the model's own modules.

    tokens and positions [N, 1]; past per layer (keys, values) [N, heads, S, head_dim]; attention_mask
    [N, S + 1], 0 = padding. ``prefix``: a cache of P positions attended before ``past`` (same shapes,
    P for S; ``attention_mask`` then covers P + S + 1), kept apart from the cache this returns (e.g. a
    prompt's, the same in every beam: ``musiccap.decoding.SameForEveryBeam``). Returns logits [N, vocab],
    the grown cache (``prefix`` not included) and each layer's attention [N, heads, 1, P + S + 1]. Why not the transformers forward: its per-call wrappers, mask building and cache
    objects cost more than this small model's arithmetic on a CPU (0.53 vs 0.71 s a caption, docs/benchmark_runs/rgmc_step_ab.md);
    ``tests/test_rgmc.py`` holds the two equal.
    """
    if lm.training:
        raise RuntimeError("gpt2_cached_step is for decoding: call lm.eval() first (it applies no dropout)")
    model = lm.transformer
    hidden = model.wte(tokens) + model.wpe(positions)
    padding = torch.zeros(attention_mask.shape, dtype=hidden.dtype)
    padding = padding.masked_fill(attention_mask == 0, torch.finfo(hidden.dtype).min)[:, None, None, :]
    grown, attentions = [], []
    no_prefix = [()] * len(model.h)
    for block, (past_keys, past_values), start in zip(model.h, past, prefix or no_prefix, strict=True):
        attention = block.attn
        query, key, value = attention.c_attn(block.ln_1(hidden)).split(attention.split_size, dim=2)
        query, key, value = (
            x.view(len(tokens), 1, -1, attention.head_dim).transpose(1, 2) for x in (query, key, value)
        )
        keys, values = torch.cat([past_keys, key], dim=2), torch.cat([past_values, value], dim=2)
        grown.append((keys, values))
        if start:  # one cache of the prefix's and these: the very numbers a single cache of them all holds
            keys, values = torch.cat([start[0], keys], dim=2), torch.cat([start[1], values], dim=2)
        weights = torch.softmax(query @ keys.transpose(-1, -2) * attention.scaling + padding, dim=-1)
        hidden = hidden + attention.c_proj((weights @ values).transpose(1, 2).reshape(len(tokens), 1, -1))
        hidden = hidden + block.mlp(block.ln_2(hidden))
        attentions.append(weights)
    return lm.lm_head(model.ln_f(hidden))[:, -1], tuple(grown), attentions


# ---- heatmap views ---------------------------------------------------------------------------------


def rows_to_one(matrix: np.ndarray) -> np.ndarray:
    """Each row rescaled to sum to 1 (a part of the memory, as a distribution over its positions)."""
    return (matrix / np.maximum(matrix.sum(axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def layer_views(
    weights: np.ndarray, prefix: str = "", *, per_head: bool = False, renormalise: bool = True
) -> dict[str, np.ndarray]:
    """weights [n_tokens, layers, heads, positions] -> ``"{prefix}layer k"`` (mean over heads) and, with
    ``per_head``, ``"{prefix}layer k, head h"``. ``renormalise`` when the positions are a part of what
    was attended to, so that each row sums to 1 again."""
    finish = rows_to_one if renormalise else (lambda matrix: matrix.astype(np.float32))
    views = {}
    for layer in range(weights.shape[1]):
        views[f"{prefix}layer {layer + 1}"] = finish(weights[:, layer].mean(axis=1))
        if per_head:
            for head in range(weights.shape[2]):
                views[f"{prefix}layer {layer + 1}, head {head + 1}"] = finish(weights[:, layer, head])
    return views
