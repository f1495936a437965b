"""``python -m train.diagnostics.continue_run CKPT --corpus DIR --out DIR --epochs 1 --lr 5e-4`` — is a run
still learning, and would a change of its code learn better from the same point?

Loads the trained model in CKPT with the code as it is now and trains it ``--epochs`` more on the corpus at
a constant learning rate (the shared trainer; the rest of the train settings from CKPT's ``training.json``),
into ``--out``: its ``train_log.jsonl`` has the validation loss per epoch, and the model there can be probed
(``train.diagnostics.analysis_response``, ``train.diagnostics.decoding_sweep``). Run it once on the code of
the run and once on a changed code path that reuses the same weights, and the two continuations compare at
equal data and steps. How MusCaps' analysis wiring was judged (README, "the levers of issue 30"): its 4-epoch
analysis run continued one epoch at 5e-4 on each wiring.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from musiccap.models.base import load_captioner
from train.data import load_items
from train.evaluate import captioner_features
from train.trainer import TrainConfig, fit


def continued_config(checkpoint: Path, epochs: int, lr: float) -> TrainConfig:
    """The run's own train settings (batch size, optimiser, clipping, seed), with ``epochs`` more at a
    constant ``lr`` and no wall-clock cap."""
    recorded = checkpoint / "training.json"
    settings = json.loads(recorded.read_text())["config"].get("train", {}) if recorded.is_file() else {}
    return TrainConfig.from_dict(
        {**settings, "epochs": epochs, "lr": lr, "schedule": "constant", "warmup_steps": 0, "max_minutes": 0}
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.diagnostics.continue_run", description=__doc__)
    parser.add_argument("checkpoint")
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--out", required=True, help="where the continued model and its train_log.jsonl go")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, required=True)
    args = parser.parse_args(argv)
    checkpoint, out = Path(args.checkpoint), Path(args.out)
    if out.resolve() == checkpoint.resolve():
        parser.error("--out must be another folder: the run being continued stays as it is")
    model = load_captioner(checkpoint)
    encoder = captioner_features(model)[0]
    train_items = load_items(args.corpus, "train", encoder=encoder)
    validation_items = load_items(args.corpus, "validation", encoder=encoder)
    log, _ = fit(
        model, train_items, validation_items, continued_config(checkpoint, args.epochs, args.lr), out
    )
    print(json.dumps([{"epoch": row["epoch"], "validation": row["validation"]} for row in log]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
