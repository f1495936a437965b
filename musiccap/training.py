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
    # Build work that runs of other recipes may reuse when it was made from the same inputs (RGMC's text
    # pretraining, keyed by everything it depends on); "" shares nothing. Kept when a run ends.
    shared_dir: str = ""


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


def optimizer_state_tensors(optimizer, prefix: str = "") -> dict[str, torch.Tensor]:
    """An optimiser's per-parameter state (AdamW's moments and step) as flat safetensors entries
    ``{prefix}{index}/{name}``: resumable training state without pickle."""
    return {
        f"{prefix}{index}/{name}": torch.as_tensor(value).detach().contiguous()
        for index, values in optimizer.state_dict()["state"].items()
        for name, value in values.items()
    }


def load_optimizer_state_tensors(optimizer, tensors: dict, param_groups: list, prefix: str = "") -> None:
    """The inverse of :func:`optimizer_state_tensors`; entries without ``prefix`` are not the optimiser's."""
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith(prefix):
            index, name = key[len(prefix) :].split("/", 1)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": param_groups})
