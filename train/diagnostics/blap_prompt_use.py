"""``python -m train.diagnostics.blap_prompt_use checkpoints/blap --corpus DIR`` — does BLAP's soft prompt carry the clip?

The frozen LM's caption NLL on the first ``--limit`` validation clips, three ways: with each clip's own
soft prompt, with the prompts rolled by one clip within each batch (another clip's audio), and with the
instruction alone (no soft prompt). own ≈ rolled means the prompt tells the LM that a caption follows,
not which. Written to ``<checkpoint>/prompt_use.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from musiccap.models.base import load_captioner
from train.data import load_items
from train.evaluate import captioner_features

BATCH = 32


@torch.no_grad()
def prompt_use(model, items: list) -> dict[str, float]:
    """Mean per-token NLL of the items' captions under the three prompts."""
    model.eval()
    totals = {"own_prompt": 0.0, "rolled_prompt": 0.0, "no_prompt": 0.0}
    for start in range(0, len(items), BATCH):
        chunk = items[start : start + BATCH]
        batch = model.collate(chunk)
        inputs = model.encoder_inputs(model.query_outputs(batch["audio"], batch["audio_mask"]))
        prompt, instruction = inputs[:, : model.config.n_queries], inputs[:, model.config.n_queries :]
        variants = {
            "own_prompt": inputs,
            "rolled_prompt": torch.cat([prompt.roll(1, dims=0), instruction], dim=1),
            "no_prompt": instruction,
        }
        for name, embeds in variants.items():
            totals[name] += float(model.lm(inputs_embeds=embeds, labels=batch["labels"]).loss) * len(chunk)
    return {name: total / len(items) for name, total in totals.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.diagnostics.blap_prompt_use", description=__doc__)
    parser.add_argument("checkpoint")
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--limit", type=int, default=128)
    args = parser.parse_args(argv)
    model = load_captioner(args.checkpoint)
    items = load_items(args.corpus, "validation", encoder=captioner_features(model)[0], limit=args.limit)
    result = {"split": "validation", "n": len(items), **prompt_use(model, items)}
    (Path(args.checkpoint) / "prompt_use.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
