"""BLIP-2's querying transformer (Q-Former), as BLAP uses it: learned queries and a text path share
pre-LN BERT-style layers; the queries alone cross-attend to the audio tokens.

The self-attention mask (:func:`self_attention_blocked`) makes one set of layers serve BLAP's three
stage-1 objectives (unimodal for ATC, bidirectional for ATM, causal for the LM loss) and the
query-only pass captioning reads (``musiccap/models/blap.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:  # the sizes come from BLAP's config, which imports this module
    from musiccap.models.blap import BLAPConfig


class QFormerLayer(nn.Module):
    """Self-attention over [queries; text], cross-attention from the queries to the audio, feed-forward."""

    def __init__(self, config: BLAPConfig):
        super().__init__()
        width, heads = config.width, config.n_heads
        self.n_heads = heads
        self.self_norm = nn.LayerNorm(width)
        self.self_attn = nn.MultiheadAttention(width, heads, dropout=config.dropout, batch_first=True)
        self.cross_norm = nn.LayerNorm(width)
        self.cross_attn = nn.MultiheadAttention(
            width,
            heads,
            dropout=config.dropout,
            kdim=config.audio_dim,
            vdim=config.audio_dim,
            batch_first=True,
        )
        self.ff_norm = nn.LayerNorm(width)
        self.ff = nn.Sequential(nn.Linear(width, config.ff_dim), nn.GELU(), nn.Linear(config.ff_dim, width))
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        hidden: torch.Tensor,
        n_queries: int,
        blocked: torch.Tensor,
        audio: torch.Tensor | None,
        audio_mask: torch.Tensor | None,
        need_weights: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = self.self_norm(hidden)
        attn_mask = blocked.repeat_interleave(self.n_heads, dim=0)  # [B * heads, L, L], True = not allowed
        hidden = hidden + self.dropout(self.self_attn(x, x, x, attn_mask=attn_mask, need_weights=False)[0])
        cross_weights = None
        if n_queries:
            queries = self.cross_norm(hidden[:, :n_queries])
            out, cross_weights = self.cross_attn(
                queries,
                audio,
                audio,
                key_padding_mask=~audio_mask,
                need_weights=need_weights,
                average_attn_weights=False,
            )
            hidden = torch.cat([hidden[:, :n_queries] + self.dropout(out), hidden[:, n_queries:]], dim=1)
        hidden = hidden + self.dropout(self.ff(self.ff_norm(hidden)))
        return hidden, cross_weights


def self_attention_blocked(
    n_queries: int, text_mask: torch.Tensor | None, mode: str, batch: int
) -> torch.Tensor:
    """Which [queries; text] positions may not attend to which: [B, L, L] bool (True = blocked).

    ``unimodal`` (ATC, and the query-only pass used for captioning): queries and text see only
    themselves. ``bidirectional`` (ATM): everything sees everything. ``causal`` (stage-1 LM): queries
    see queries; text sees all queries and the text before it. Padding keys are blocked; every
    position may always see itself, so no row is empty.
    """
    n_text = 0 if text_mask is None else text_mask.shape[1]
    total = n_queries + n_text
    is_query = torch.arange(total) < n_queries
    if mode == "unimodal":
        allowed = is_query[:, None] == is_query[None, :]
    elif mode == "bidirectional":
        allowed = torch.ones(total, total, dtype=torch.bool)
    elif mode == "causal":
        allowed = (is_query[:, None] & is_query[None, :]) | (~is_query[:, None] & is_query[None, :])
        allowed |= ~is_query[:, None] & ~is_query[None, :] & torch.ones(total, total, dtype=torch.bool).tril()
    else:
        raise ValueError(f"unknown attention mode {mode!r}")
    allowed = allowed.expand(batch, total, total)
    if text_mask is not None:
        real_keys = torch.cat([torch.ones(batch, n_queries, dtype=torch.bool), text_mask.bool()], dim=1)
        allowed = allowed & real_keys[:, None, :]
    return ~(allowed | torch.eye(total, dtype=torch.bool))


@dataclass
class QFormerOutput:
    queries: torch.Tensor  # [B, n_queries, width] (n_queries = 0 for a text-only pass)
    text: torch.Tensor  # [B, L, width]
    cross_attention: list[torch.Tensor]  # per layer [B, heads, n_queries, T] when asked for


class QFormer(nn.Module):
    def __init__(self, config: BLAPConfig):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(config.n_queries, config.width) * 0.02)
        self.text_embed = nn.Embedding(config.vocab_size, config.width)
        # BERT's initialiser. The stage-1 LM head is tied to these rows: at nn.Embedding's N(0, 1) its first
        # logits were ~16 wide (loss ~78), and that gradient took the whole clipping norm, so ATC and ATM
        # sat at chance (ln 32, and 0.637 for 1 positive in 3) through a whole stage-1 run.
        nn.init.normal_(self.text_embed.weight, std=0.02)
        self.text_positions = nn.Parameter(torch.randn(config.max_text_positions, config.width) * 0.02)
        self.embed_norm = nn.LayerNorm(config.width)
        self.embed_dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(QFormerLayer(config) for _ in range(config.n_layers))
        self.final_norm = nn.LayerNorm(config.width)

    def forward(
        self,
        audio: torch.Tensor | None,
        audio_mask: torch.Tensor | None,
        text_ids: torch.Tensor | None = None,
        text_mask: torch.Tensor | None = None,
        *,
        mode: str = "unimodal",
        need_weights: bool = False,
    ) -> QFormerOutput:
        parts = []
        batch = (audio if audio is not None else text_ids).shape[0]
        n_queries = 0
        if audio is not None:
            parts.append(self.queries.expand(batch, -1, -1))
            n_queries = self.queries.shape[0]
        if text_ids is not None:
            parts.append(self.text_embed(text_ids) + self.text_positions[: text_ids.shape[1]])
        hidden = self.embed_dropout(self.embed_norm(torch.cat(parts, dim=1)))
        blocked = self_attention_blocked(n_queries, text_mask, mode, batch)
        cross = []
        for layer in self.layers:
            hidden, weights = layer(hidden, n_queries, blocked, audio, audio_mask, need_weights)
            cross.append(weights)
        hidden = self.final_norm(hidden)
        return QFormerOutput(queries=hidden[:, :n_queries], text=hidden[:, n_queries:], cross_attention=cross)
