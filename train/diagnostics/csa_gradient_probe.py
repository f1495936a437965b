"""``python -m train.diagnostics.csa_gradient_probe CHECKPOINT ... --corpus DIR`` — how Kim & Park's loss terms pull.

For each trained Kim & Park checkpoint, on ``--batches`` training batches of 32 (augmented as in training,
dropout on), the gradient of each term of the paper's M4 loss, L_NLL + 0.5 L_C + 1.0 L_S, over the
checkpoint's trainable parameters: its norm and its cosine with L_NLL's (``CsaCaptioner.gradient_probe``).
Every checkpoint is measured under M4's weights, whatever it was trained with, so M3 (trained without
L_S) shows where L_S would have pulled it. Medians over the batches, with the terms' values, are written
to ``--out`` (JSON, one entry per checkpoint).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from pathlib import Path

import torch

from musiccap.models.base import load_captioner
from train.data import load_items
from train.evaluate import captioner_features

BATCH = 32
M4_WEIGHTS = {"contrastive_weight": 0.5, "semantic_weight": 1.0}


def probe_checkpoint(model, items: list, batches: int, seed: int = 0) -> dict[str, float]:
    """Median term values, gradient norms and cosines with L_NLL over ``batches`` random training batches."""
    for name, weight in M4_WEIGHTS.items():
        setattr(model.config, name, weight)
    model.config.gradient_probe_every = 1
    model.train()
    rng = random.Random(seed)
    rows = []
    for index in range(batches):
        torch.manual_seed(seed + index)
        losses = model(model.train_collate(rng.sample(items, min(BATCH, len(items)))))
        rows.append({name: float(value) for name, value in losses.items() if name != "loss"})
    return {name: round(statistics.median(row[name] for row in rows), 4) for name in rows[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m train.diagnostics.csa_gradient_probe", description=__doc__
    )
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--batches", type=int, default=6)
    parser.add_argument("--out", default="docs/csa_gradient_probe.json")
    args = parser.parse_args(argv)
    result = {"batches": args.batches, "batch_size": BATCH, "weights": M4_WEIGHTS, "checkpoints": {}}
    items_by_features: dict[str, list] = {}
    for folder in args.checkpoints:
        model = load_captioner(folder)
        if model.name != "csa":
            raise SystemExit(f"{folder} is a {model.name} checkpoint, not Kim & Park (csa)")
        encoder, features = captioner_features(model)
        if features not in items_by_features:
            items_by_features[features] = load_items(args.corpus, "train", encoder=encoder)
        result["checkpoints"][folder] = probe_checkpoint(model, items_by_features[features], args.batches)
        print(folder, json.dumps(result["checkpoints"][folder]), flush=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
