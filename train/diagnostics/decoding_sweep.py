"""``python -m train.diagnostics.decoding_sweep CKPT --corpus DIR --try num_beams=3 length_penalty=0.0 --try ...``.

Choose a checkpoint's decoding on the validation split, never the test split: each ``--try`` is one
setting (space-separated key=value overrides of its default decoding); every setting captions the
same first ``--limit`` validation clips and is scored by CIDEr-D and BLEU-4 (coco-caption) and
attribute accuracy (what the captions state about the clips, ``musiccap.metrics.attributes``), with the
mean caption length in words beside the references'. Results are printed and, with ``--record``,
filed under the checkpoint's name in a JSON file (``docs/decoding_sweeps.json``), so the numbers in
the configs' comments can be re-run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from musiccap.metrics import coco
from musiccap.metrics.attributes import attribute_accuracy
from musiccap.metrics.diversity import words
from musiccap.models.base import load_captioner
from train.data import load_items, reference_captions
from train.evaluate import _parse_decoding, caption_items, captioner_features


def sweep(checkpoint: str, corpus: str, settings: list[list[str]], limit: int) -> dict:
    captioner = load_captioner(checkpoint)
    items = load_items(corpus, "validation", encoder=captioner_features(captioner)[0], limit=limit)
    references = reference_captions(items)
    rows = []
    for pairs in settings:
        overrides = _parse_decoding(pairs)
        decoding = captioner.default_decoding.replace(**overrides)
        predictions = [result.text for result in caption_items(captioner, items, decoding)]
        scores = coco.coco_scores(predictions, references, with_meteor=False).to_dict()
        rows.append(
            {
                "overrides": overrides,
                "cider_d": scores["cider_d"],
                "bleu4": scores["bleu4"],
                "words_mean": statistics.fmean(len(words(p)) for p in predictions),
                **attribute_accuracy(predictions, [item.attributes for item in items]).to_metrics(),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return {
        "split": "validation",
        "n": len(items),
        "reference_words_mean": statistics.fmean(len(words(item.caption)) for item in items),
        "settings": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.diagnostics.decoding_sweep", description=__doc__)
    parser.add_argument("checkpoint")
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--try", dest="settings", nargs="+", action="append", required=True)
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--record", help="JSON file to file the results in, e.g. docs/decoding_sweeps.json")
    args = parser.parse_args(argv)
    result = sweep(args.checkpoint, args.corpus, args.settings, args.limit)
    if args.record:
        path = Path(args.record)
        document = json.loads(path.read_text()) if path.is_file() else {}
        document[Path(args.checkpoint).name] = result
        path.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
