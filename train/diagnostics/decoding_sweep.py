"""``python -m train.diagnostics.decoding_sweep CKPT --corpus DIR --grid num_beams=1,3 no_repeat_ngram_size=0,3``.

Choose a captioner's decoding on the validation split, never on test or unseen (those report; the tool
refuses them). Every setting captions the same first ``--limit`` clips of the split from the feature
cache, in batches (``train.evaluate.caption_items``), and is scored by:

* the listening caption scores (instrument families F1, tempo, mode, drums, mood), with the reader and
  scorer of the listening table (``train/listening.py``), beside the constant-caption floor on the same
  clips (its training captions chosen as ``train.evaluate`` does; the probe ceiling is in results.json);
* CIDEr-D and BLEU-4 (coco-caption; every phrasing of a corpus v2 clip is a reference; CIDEr-D's
  document frequencies come from the scored clips, so compare rows of one sweep, not sweeps of
  different sizes);
* CLAP A-T with ``--clap`` (the embedded CLAP the evaluation scores with);
* mean caption length in words (beside the references'), the share of captions that repeat a sentence
  word for word, and seconds of captioning per clip.

A setting is a set of ``DecodingConfig`` overrides of the checkpoint's own decoding: ``--grid`` takes
every combination of its keys' comma-separated values, each ``--try`` adds one setting
(space-separated key=value). The table is printed as Markdown; ``--record FILE`` files the numbers in
a JSON file under the checkpoint's name (or ``--as NAME``), e.g. docs/decoding_sweeps.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from dataclasses import fields
from pathlib import Path

from musiccap.decoding import DecodingConfig
from musiccap.metrics import coco
from musiccap.metrics.attributes import read_caption
from musiccap.metrics.diversity import words
from musiccap.metrics.listening import ATTRIBUTE_LABELS, ATTRIBUTES
from musiccap.text import split_sentences
from train.data import load_items, read_manifest, reference_captions
from train.evaluate import caption_items, captioner_features, parse_overrides
from train.listening import attribute_scores, choose_floor, floor_scores

REPORTING_SPLITS = ("test", "unseen")
SAMPLES = 3  # captions kept per setting in the record


def grid_settings(grid: list[str]) -> list[dict]:
    """Every combination of ``key=v1,v2`` values, in order (the last key varies fastest)."""
    axes = []
    for pair in grid:
        key, separator, values = pair.partition("=")
        if not separator or not key or not values:
            raise ValueError(f"a grid axis is key=v1,v2,...; got {pair!r}")
        axes.append([f"{key}={value}" for value in values.split(",")])
    return [parse_overrides(list(combination)) for combination in itertools.product(*axes)] if axes else []


def check_settings(settings: list[dict]) -> None:
    """Refuse a key ``DecodingConfig`` does not have (``from_dict`` would drop it silently) and values it
    rejects, before any clip is captioned."""
    names = {f.name for f in fields(DecodingConfig)}
    for overrides in settings:
        unknown = set(overrides) - names
        if unknown:
            raise ValueError(f"not DecodingConfig fields: {', '.join(sorted(unknown))}")
        try:
            DecodingConfig().replace(**overrides)
        except TypeError as error:  # e.g. "num_beams=4 length_penalty=1.0" quoted as one argument
            raise ValueError(
                f"a value of the wrong type in {overrides}: one key=value per argument"
            ) from error


def repeats_a_sentence(caption: str) -> bool:
    sentences = [" ".join(s.lower().split()) for s in split_sentences(caption)]
    return len(sentences) != len(set(sentences))


def sweep(
    checkpoint: str | Path,
    corpus: str | Path,
    settings: list[dict],
    *,
    split: str = "validation",
    limit: int | None = 200,
    clap_path: str | Path | None = None,
) -> dict:
    """Caption the split's first ``limit`` clips once per setting and score each; returns the record."""
    from musiccap.models.base import load_captioner

    if split in REPORTING_SPLITS:
        raise ValueError(f"decoding is chosen on validation; the {split} split only reports (train.evaluate)")
    if not settings:
        raise ValueError("no settings to sweep: give --grid and/or --try")
    check_settings(settings)
    captioner = load_captioner(checkpoint)
    encoder = captioner_features(captioner)[0]
    items = load_items(corpus, split, encoder=encoder, limit=limit)
    truths = [item.attributes for item in items]
    if any(truth is None for truth in truths):
        raise ValueError(f"{corpus} has no attributes on {split}: the listening scores need corpus v2")
    references = reference_captions(items)
    train_rows = read_manifest(corpus, "train")
    floor_captions = choose_floor(
        [text for row in train_rows for text in row.get("captions") or [row["caption"]]],
        [row["attributes"] for row in train_rows],
    )
    scorer = audio_embeddings = None
    if clap_path:
        from musiccap.scoring import ClapScorer

        scorer = ClapScorer.embedded(clap_path)
        scored = items if encoder is None else load_items(corpus, split, limit=limit)  # CLAP's own features
        audio_embeddings = scorer.embed_audio([item.features for item in scored])

    rows = []
    for overrides in settings:
        decoding = captioner.default_decoding.replace(**overrides)
        started = time.perf_counter()
        predictions = [result.text for result in caption_items(captioner, items, decoding)]
        seconds = (time.perf_counter() - started) / len(items)
        coco_scores = coco.coco_scores(predictions, references, with_meteor=False)
        row = {
            "overrides": overrides,
            "listening": attribute_scores([read_caption(p) for p in predictions], truths),
            "cider_d": coco_scores.cider_d,
            "bleu4": coco_scores.bleu4,
            "words_mean": statistics.fmean(len(words(p)) for p in predictions),
            "repeated_sentence_share": statistics.fmean(repeats_a_sentence(p) for p in predictions),
            "s_per_clip": seconds,
        }
        if scorer:
            row["clap_at"] = statistics.fmean(scorer.audio_text(audio_embeddings, predictions))
        row["samples"] = [{"id": item.id, "caption": p} for item, p in zip(items, predictions)][:SAMPLES]
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "samples"}), file=sys.stderr, flush=True)
    return {
        "split": split,
        "n": len(items),
        "decoding": captioner.default_decoding.to_dict(),  # what the overrides change
        "floor": floor_scores(floor_captions, truths),
        "reference_words_mean": statistics.fmean(len(words(item.caption)) for item in items),
        "settings": rows,
    }


def markdown_table(result: dict) -> str:
    """One row per setting, the floor first (the scores a fixed caption gets on the same clips)."""
    with_clap = any("clap_at" in row for row in result["settings"])
    header = ["setting", "CIDEr-D", *(ATTRIBUTE_LABELS[a] for a in ATTRIBUTES), "words", "repeats", "s/clip"]
    header += ["CLAP A-T"] if with_clap else []
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    floor = [f"{result['floor'][a]:.3f}" for a in ATTRIBUTES]
    lines.append(
        "| floor (fixed caption) | – | "
        + " | ".join(floor)
        + f" | {result['reference_words_mean']:.1f} (refs) | – | –"
        + (" | – |" if with_clap else " |")
    )
    for row in result["settings"]:
        name = " ".join(f"{k}={v}" for k, v in row["overrides"].items()) or "(checkpoint default)"
        cells = [name, f"{row['cider_d']:.3f}", *(f"{row['listening'][a]:.3f}" for a in ATTRIBUTES)]
        cells += [
            f"{row['words_mean']:.1f}",
            f"{row['repeated_sentence_share']:.2f}",
            f"{row['s_per_clip']:.3f}",
        ]
        cells += [f"{row['clap_at']:.3f}"] if with_clap else []
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.diagnostics.decoding_sweep", description=__doc__)
    parser.add_argument("checkpoint")
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--clap", help="embedded CLAP folder: adds CLAP A-T")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--limit", type=int, default=200, help="the first N clips of the split")
    parser.add_argument("--grid", nargs="+", default=[], help="key=v1,v2 ...: every combination")
    parser.add_argument("--try", dest="tries", nargs="+", action="append", default=[], help="one setting")
    parser.add_argument("--record", help="JSON file to file the results in, e.g. docs/decoding_sweeps.json")
    parser.add_argument("--as", dest="as_name", help="the record's name (default: the checkpoint folder's)")
    args = parser.parse_args(argv)
    if args.split in REPORTING_SPLITS:
        parser.error(f"decoding is chosen on validation; the {args.split} split only reports")
    try:
        settings = grid_settings(args.grid) + [parse_overrides(pairs) for pairs in args.tries]
        if not settings:
            raise ValueError("no settings to sweep: give --grid and/or --try")
        check_settings(settings)
    except ValueError as error:
        parser.error(str(error))
    result = sweep(
        args.checkpoint, args.corpus, settings, split=args.split, limit=args.limit, clap_path=args.clap
    )
    result["checkpoint"] = str(args.checkpoint)
    print(markdown_table(result))
    if args.record:
        path = Path(args.record)
        document = json.loads(path.read_text()) if path.is_file() else {}
        document[args.as_name or Path(args.checkpoint).resolve().name] = result
        path.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
