"""``python -m train.diagnostics.blap_matching runs/blap_stage1 --corpus DIR`` — what BLAP's stage-1 matching head tells apart.

Stage 1's audio–text matching (ATM) loss is trained, as in BLIP-2, on the positives and on *hard* negatives
only: for each clip another clip's text, and for each text another clip, drawn in proportion to their
contrastive similarity. One positive in three puts an uninformed head at 0.637 nats, so a loss near that
says nothing about which pairs it fails on. On the first ``--limit`` validation clips, in batches of 32,
this scores each clip's own text, a random text of another caption, and a hard negative text drawn as in
training, and reports the mean match probability of each and how often the own text beats the other two.
Written to ``--out`` (default ``<checkpoint>/matching.json``).
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
def matching(model, items: list, seed: int = 0) -> dict[str, float]:
    """Mean match probabilities of own / random / hard-negative texts, and the own text's win rates."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    own, random_other, hard = [], [], []
    for start in range(0, len(items), BATCH):
        batch = model.collate(items[start : start + BATCH])
        rows = list(range(len(batch["audio"])))
        groups = batch["caption_group"].tolist()
        others = [[j for j in rows if groups[j] != groups[row]] for row in rows]
        if not all(others):  # a clip whose every other text is the same caption (or a batch of one)
            continue
        # a random text of another caption
        other_texts = [
            choices[int(torch.randint(len(choices), (1,), generator=generator))] for choices in others
        ]
        text_for_clip, _ = model.hard_negatives(model.contrastive_logits(batch), generator)
        texts = [text_for_clip[row] for row in rows]
        for scores, text_rows in ((own, rows), (random_other, other_texts), (hard, texts)):
            scores.append(model.matching_logits(batch, rows, text_rows).softmax(dim=-1)[:, 1])
    own_p, random_p, hard_p = (torch.cat(scores) for scores in (own, random_other, hard))
    return {
        "pairs": len(own_p),
        "match_probability_own_text": float(own_p.mean()),
        "match_probability_random_text": float(random_p.mean()),
        "match_probability_hard_negative_text": float(hard_p.mean()),
        "own_beats_random": float((own_p > random_p).float().mean()),
        "own_beats_hard_negative": float((own_p > hard_p).float().mean()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.diagnostics.blap_matching", description=__doc__)
    parser.add_argument(
        "checkpoint", help="a BLAP stage-1 checkpoint (stage 2 does not train the matching head)"
    )
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--limit", type=int, default=256)
    parser.add_argument("--out", help="JSON file to write (default: <checkpoint>/matching.json)")
    args = parser.parse_args(argv)
    model = load_captioner(args.checkpoint)
    if model.config.stage != 1:
        parser.error(
            f"{args.checkpoint} is a stage-{model.config.stage} checkpoint; the matching head trains in stage 1"
        )
    items = load_items(args.corpus, "validation", encoder=captioner_features(model)[0], limit=args.limit)
    result = {"split": "validation", "n": len(items), **matching(model, items)}
    Path(args.out or Path(args.checkpoint) / "matching.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
