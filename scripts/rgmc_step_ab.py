"""RGMC's caption latency with its decoding step (``gpt2_cached_step``) against the transformers forward.

``python scripts/rgmc_step_ab.py [--corpus DIR] [--rounds 6]``: captions one 10 s test clip with the shipped
checkpoint at its default decoding, the two steps taking turns so a machine whose speed drifts weighs on
both alike, and prints the sorted latencies and their medians. Both steps give identical captions
(``tests/test_rgmc.py``). Results: docs/benchmark_runs/rgmc_step_ab.md.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import DynamicCache

import musiccap.models.rgmc as rgmc
from musiccap.models.base import load_captioner
from train.data import load_items
from train.evaluate import caption_items, captioner_features


def transformers_step(lm, tokens, past, attention_mask, positions):
    """The same step through ``GPT2LMHeadModel.forward`` (what RGMC decoded with before)."""
    out = lm(
        input_ids=tokens,
        past_key_values=DynamicCache(ddp_cache_data=past),
        attention_mask=attention_mask,
        position_ids=positions,
        use_cache=True,
        output_attentions=True,
    )
    return (
        out.logits[:, -1],
        tuple((layer.keys, layer.values) for layer in out.past_key_values.layers),
        out.attentions,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpus", default="data/corpus")
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    model = load_captioner("checkpoints/rgmc")
    item = load_items(args.corpus, "test", encoder=captioner_features(model)[0], limit=1)
    steps = {"gpt2_cached_step": rgmc.gpt2_cached_step, "transformers forward": transformers_step}

    def caption_seconds() -> float:
        started = time.perf_counter()
        caption_items(model, item, None)
        return time.perf_counter() - started

    caption_seconds()  # warm
    seconds = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            rgmc.gpt2_cached_step = step
            seconds[name].append(caption_seconds())
    print(f"torch threads {torch.get_num_threads()}, {args.rounds} rounds")
    for name, values in seconds.items():
        print(f"{name}: median {statistics.median(values):.3f} s  {sorted(round(v, 3) for v in values)}")


if __name__ == "__main__":
    main()
