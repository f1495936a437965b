"""The training contract: what ``train/`` asks of a model it builds and trains.

``train/`` (the shared loop, ``train/trainer.py``; the command, ``train/__main__.py``) knows a model
only through these methods; every trainable architecture (``musiccap/models/``) and the embedded
CLAP (``musiccap/encoders/embedded_clap.py``) implement them. Two hooks are optional:
``train_collate`` (a model that augments its training batches; else ``collate``) and
``prepare_items`` (inputs beyond the feature cache, e.g. MusCaps' scratch CNN reads log-mel patches).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch

BUILD_DIR = "build"  # inside a run's folder: its model's kept build-time work (BuildContext.build_dir)


@dataclass
class BuildContext:
    """What a model may need at build time beyond its own config."""

    clap_path: str  # the CLAP: a registry name, a folder or a Hub id
    feature_dims: tuple[int, int, int]  # frame_dim, pooled_dim, chunk_dim of the embedded features
    corpus_dir: str
    # Where a model may keep costly build-time work (RGMC's text pretraining) so that an interrupted run
    # started again with ``--resume`` does not redo it; "" keeps nothing. Removed when training ends.
    build_dir: str = ""


@runtime_checkable
class Trainable(Protocol):
    @classmethod
    def build(cls, config: dict[str, Any], train_items: list, context: BuildContext) -> Trainable:
        """A fresh model from its config section and the training split (vocabularies, indexes)."""

    def collate(self, items: list) -> dict[str, torch.Tensor]:
        """A batch of training or validation items as tensors."""

    def training_loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Named loss terms of a batch; ``"loss"`` is the one optimised."""


def train_collate(model: Trainable):
    """The collate function for training batches: the model's augmenting one when it has it."""
    return getattr(model, "train_collate", model.collate)
