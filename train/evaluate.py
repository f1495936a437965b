"""``python -m train.evaluate <checkpoint> [--split test]`` — regenerate a checkpoint's results.json.

Captioners are scored with every metric of ``musiccap.metrics`` (n-gram, semantic, CLAP A-T/T-T,
diversity, attribute accuracy) and, on a corpus with attributes, the listening table of
``train/listening.py`` (floor, probe ceiling and caption per attribute, audio sensitivity; under
``listening`` and, when the corpus has an unseen split, ``listening_unseen``; ``--no-listening``
skips it, ``--sensitivity-clips N`` sizes its re-captioned subset); the embedded CLAP with retrieval
recall. ``--into CKPT --as NAME`` files the numbers as an ablation row of another checkpoint's
results.json instead (its listening blocks under ``ablation_listening`` / ``ablation_listening_unseen``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from musiccap.clip import ANALYSIS, AUDIO_FEATURES, MEL_PATCHES, REFERENCE_CAPTION, Clip
from musiccap.decoding import DecodingConfig
from musiccap.models.base import read_config
from musiccap.registry import REPO
from train.data import load_items, read_manifest, reference_captions
from train.listening import DEFAULT_SENSITIVITY_CLIPS
from train.pipeline import update_json

# A checkpoint's results.json keys that hold the rows of its paper's table, filed by other runs.
ROW_KEYS = ("ablations", "ablation_runs", "ablation_listening", "ablation_listening_unseen")
LISTENING_KEYS = ("listening", "listening_unseen")

BATCH = 32


def _corpus_of(checkpoint: Path, corpus: str | None) -> str:
    if corpus:
        return corpus
    training = checkpoint / "training.json"
    if training.is_file():
        return json.loads(training.read_text())["corpus"]
    return str(REPO / "data" / "corpus")


def captioner_features(captioner) -> tuple[object | None, str]:
    """The feature encoder and Clip feature name a captioner reads: its HTSAT CLAP's log-mel (full
    profile), else the embedded features (encoder None: ``load_items``' default)."""
    from musiccap.encoders.htsat_clap import HtsatClap

    clap = getattr(captioner, "clap", None)
    if isinstance(clap, HtsatClap):
        return clap.encoder.mel, clap.feature_name
    return None, AUDIO_FEATURES


def caption_items(captioner, items, decoding: DecodingConfig | None = None, *, with_reference: bool = False):
    """Caption every item from its cached features (those ``captioner_features`` names), in batches;
    returns CaptionResults in order.

    ``with_reference`` hands each clip its reference caption: only RGMC's gold-candidate ablation
    (paper Table 4) reads it.
    """
    if hasattr(captioner, "prepare_items"):  # inputs beyond the feature cache (MusCaps' scratch CNN)
        captioner.prepare_items(items)
    feature_name = captioner_features(captioner)[1]
    results = []
    for start in range(0, len(items), BATCH):
        batch = items[start : start + BATCH]
        clips = []
        for item in batch:
            features = {feature_name: item.features}
            if with_reference:
                features[REFERENCE_CAPTION] = item.caption
            if getattr(item, "mel_patches", None) is not None:
                features[MEL_PATCHES] = item.mel_patches
            if getattr(item, "analysis", None) is not None:  # analysis-conditioned captioners read it
                features[ANALYSIS] = item.analysis
            clips.append(Clip(None, clip_id=item.id, features=features))
        results.extend(captioner.caption_batch(clips, decoding))
    return results


def evaluate_captioner(
    checkpoint: Path,
    corpus: str,
    split: str,
    clap_path: str,
    decoding_overrides: dict,
    config_overrides: dict,
    listening: bool = True,
    sensitivity_clips: int = DEFAULT_SENSITIVITY_CLIPS,
    unseen_corpus: str | None = None,
):
    from musiccap.metrics import compute_metrics
    from musiccap.models.base import load_captioner
    from musiccap.scoring import ClapScorer

    captioner = load_captioner(checkpoint)
    for key, value in config_overrides.items():  # evaluation-time switches, e.g. RGMC's candidate=gold
        if not hasattr(captioner.config, key):
            raise SystemExit(f"{captioner.name} has no config key {key!r}")
        setattr(captioner.config, key, value)
    decoding = captioner.default_decoding.replace(**decoding_overrides) if decoding_overrides else None
    items = load_items(corpus, split)  # embedded features: what the scoring CLAP reads
    encoder = captioner_features(captioner)[0]
    captioned = items if encoder is None else load_items(corpus, split, encoder=encoder)
    # A corpus v2 row has several captions: all are references (multi-reference CIDEr/BLEU) and all count
    # as training captions (document frequencies, novelty).
    train_captions = [
        c for row in read_manifest(corpus, "train") for c in row.get("captions") or [row["caption"]]
    ]
    started = time.perf_counter()
    gold = getattr(getattr(captioner, "config", None), "candidate", None) == "gold"
    results = caption_items(captioner, captioned, decoding, with_reference=gold)
    caption_time = time.perf_counter() - started
    predictions = [r.text for r in results]
    references = reference_captions(items)
    scorer = ClapScorer.embedded(clap_path)
    audio_embeddings = scorer.embed_audio([item.features for item in items])
    clap_at = scorer.audio_text(audio_embeddings, predictions)
    clap_tt = scorer.text_text(predictions, [item.caption for item in items])
    candidates = [r.neighbour.text for r in results] if results and results[0].neighbour else None
    metrics = compute_metrics(
        predictions,
        references,
        train_captions=train_captions,
        attributes=[item.attributes for item in items],
        clap_at=clap_at,
        clap_tt=clap_tt,
        candidates=candidates,
    )
    samples = [
        {"id": item.id, "prediction": r.text, "reference": item.caption}
        for item, r in list(zip(items, results, strict=True))[:10]
    ]
    used = (decoding or captioner.default_decoding).to_dict()
    timing = {"caption_s_per_clip": round(caption_time / max(1, len(items)), 4)}
    report = {
        "split": split,
        "n": len(items),
        "metrics": metrics,
        "decoding": used,
        "timing": timing,
        "samples": samples,
    }
    if listening:
        from train.listening import listening_report

        def caption(perturbed: list) -> list[str]:
            return [r.text for r in caption_items(captioner, perturbed, decoding, with_reference=gold)]

        started = time.perf_counter()
        report |= listening_report(
            captioner, corpus, split, captioned, predictions, caption, encoder=encoder,
            sensitivity_clips=sensitivity_clips, unseen_corpus=unseen_corpus,
        )  # fmt: skip
        timing["listening_s"] = round(time.perf_counter() - started, 1)
    return report


def evaluate_clap(checkpoint: Path, corpus: str, split: str):
    from musiccap.encoders.embedded_clap import EmbeddedClap
    from musiccap.retrieval import retrieval_metrics

    clap = EmbeddedClap.from_pretrained(checkpoint)
    items = load_items(corpus, split)
    audio = np.asarray(clap.embed_audio([item.features for item in items]))
    text = np.asarray(clap.embed_text([item.caption for item in items]))
    metrics = retrieval_metrics(audio, text)
    return {"split": split, "n": len(items), **metrics}


def evaluate_checkpoint(
    checkpoint: str | Path,
    corpus: str | None = None,
    *,
    split: str = "test",
    clap_path: str | None = None,
    decoding_overrides: dict | None = None,
    config_overrides: dict | None = None,
    into: str | Path | None = None,
    as_name: str | None = None,
    listening: bool = True,
    sensitivity_clips: int = DEFAULT_SENSITIVITY_CLIPS,
    unseen_corpus: str | None = None,
) -> dict:
    checkpoint = Path(checkpoint)
    corpus = _corpus_of(checkpoint, corpus)
    clap_path = clap_path or str(REPO / "checkpoints" / "clap")
    architecture = read_config(checkpoint)["architecture"]
    if architecture == "clap":
        results = evaluate_clap(checkpoint, corpus, split)
    else:
        results = evaluate_captioner(
            checkpoint, corpus, split, clap_path, decoding_overrides or {}, config_overrides or {},
            listening, sensitivity_clips, unseen_corpus,
        )  # fmt: skip
    results["checkpoint"] = checkpoint.name
    if into:
        run = ablation_run(checkpoint, decoding_overrides or {}, config_overrides or {})
        file_row(Path(into), as_name or checkpoint.name, results, run)
    else:
        variant = served_variant(checkpoint)

        def replace_results(document: dict) -> None:
            # ablation rows filed by other runs, and how each was made, survive a re-evaluation
            rows = {key: document[key] for key in ROW_KEYS if document.get(key)}
            document.clear()
            document.update(reevaluated(results, rows, variant))

        results = update_json(checkpoint / "results.json", replace_results)
    from train.model_card import write_model_card

    write_model_card(Path(into) if into else checkpoint)
    return results


def served_variant(checkpoint: Path) -> str | None:
    """The variant row ``train.ship`` serves from ``checkpoint`` (shipped.json), if the folder still holds
    that model: a paper run trained there again serves the paper's recipe, whatever shipped.json says."""
    from train.ship import SHIPPED_FILE, model_identity

    record = checkpoint / SHIPPED_FILE
    if not record.is_file():
        return None
    shipped = json.loads(record.read_text())
    serves_variant = shipped.get("ships") not in (None, shipped.get("architecture"))
    if serves_variant and shipped.get("served_identity") == model_identity(checkpoint):
        return shipped["ships"]
    return None


def reevaluated(results: dict, rows: dict, variant: str | None) -> dict:
    """results.json after a new evaluation of the folder's model, ``rows`` its other rows. Where a variant
    is served the top level is that variant's row (train.ship): the row is the new evaluation too, and the
    top level keeps naming it, so the table never shows the served model with two sets of numbers."""
    if variant is None:
        return results | rows
    rows = {key: dict(table) for key, table in rows.items()}
    put_row(rows, variant, results)
    return results | rows | {"shipped_row": variant}


def put_row(document: dict, name: str, results: dict) -> None:
    """Set the row ``name`` of the table in ``document`` (results.json) to ``results``: its metrics and
    listening blocks."""
    document.setdefault("ablations", {})[name] = results["metrics"]
    for key in LISTENING_KEYS:
        if key in results:
            document.setdefault(f"ablation_{key}", {})[name] = results[key]


def file_row(into: Path, name: str, results: dict, run: dict) -> dict:
    """File ``results`` (one evaluation) as the row ``name`` of the table in ``into``/results.json, made as
    ``run`` says, under update_json's lock (rows of one table are filed by evaluations running side by
    side). The top level, what the folder serves, is left as it is."""

    def add(document: dict) -> None:
        put_row(document, name, results)
        document.setdefault("ablation_runs", {})[name] = run

    return update_json(into / "results.json", add)


def ablation_run(checkpoint: Path, decoding_overrides: dict, config_overrides: dict) -> dict:
    """How an ablation row was made: which model, trained how long, evaluated with which switches."""
    run = {"checkpoint": checkpoint.name, "decoding": decoding_overrides, "set": config_overrides}
    training = checkpoint / "training.json"
    if training.is_file():
        summary = json.loads(training.read_text())
        run |= {key: summary.get(key) for key in ("epochs_run", "train_time_s", "git_commit")}
        # trained away from the corpus on a subset (train.muscaps_scratch): where, and on how many clips
        if "device" in summary:
            run |= {"device": summary["device"], "n_train": summary.get("n_train")}
    # the run folder (runs/...) is not kept, so its validation losses travel with the row
    if validation := final_validation(checkpoint):
        run["final_validation"] = validation
    if curve := validation_curve(checkpoint):
        run["validation_curve"] = curve
    return run


def logged_validations(checkpoint: Path) -> list[dict]:
    """Each logged epoch's validation losses (``train_log.jsonl``); [] for a run without a log."""
    log = checkpoint / "train_log.jsonl"
    if not log.is_file():
        return []
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [line.get("validation") or {} for line in lines]


def final_validation(checkpoint: Path) -> dict | None:
    """The validation losses of a run's last logged epoch, if it has a log."""
    epochs = logged_validations(checkpoint)
    return epochs[-1] or None if epochs else None


def validation_curve(checkpoint: Path) -> list[float] | None:
    """Each logged epoch's validation caption NLL (its loss where it logs no NLL: then they are one), so
    that runs with and without extra loss terms or weights read on one scale."""
    curve = [epoch.get("nll", epoch.get("loss")) for epoch in logged_validations(checkpoint)]
    return curve if curve and None not in curve else None


def parse_overrides(pairs: list[str]) -> dict:
    """``["num_beams=3", ...]`` as ``{"num_beams": 3, ...}`` (each value read as the configs read it)."""
    from train.config import parse_value

    overrides = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        overrides[key] = parse_value(value)
    return overrides


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.evaluate", description=__doc__)
    parser.add_argument("checkpoint")
    parser.add_argument("--split", default="test")
    parser.add_argument("--corpus")
    parser.add_argument("--clap")
    parser.add_argument("--decoding", nargs="*", default=[], help="key=value overrides, e.g. num_beams=1")
    parser.add_argument(
        "--set", nargs="*", default=[], help="config key=value at evaluation, e.g. candidate=gold"
    )
    parser.add_argument("--into", help="file the metrics as an ablation row of this checkpoint")
    parser.add_argument("--as", dest="as_name", help="the ablation row's name")
    parser.add_argument(
        "--no-listening", action="store_true", help="skip the listening table (train/listening.py)"
    )
    parser.add_argument(
        "--sensitivity-clips", type=int, default=DEFAULT_SENSITIVITY_CLIPS,
        help="clips (a seeded subset) captioned again with swapped audio, noise and silence",
    )  # fmt: skip
    parser.add_argument(
        "--unseen-corpus",
        help="take listening_unseen from this corpus's unseen split (default: --corpus's own)",
    )
    args = parser.parse_args(argv)
    if args.sensitivity_clips < 2:
        parser.error("--sensitivity-clips must be at least 2 (swapping audio needs two clips)")
    results = evaluate_checkpoint(
        args.checkpoint,
        args.corpus,
        split=args.split,
        clap_path=args.clap,
        decoding_overrides=parse_overrides(args.decoding),
        config_overrides=parse_overrides(args.set),
        into=args.into,
        as_name=args.as_name,
        listening=not args.no_listening,
        sensitivity_clips=args.sensitivity_clips,
        unseen_corpus=args.unseen_corpus,
    )
    print(json.dumps(results.get("metrics", results), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
