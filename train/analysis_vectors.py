"""``python -m train.analysis_vectors --corpus CORPUS`` — the analysis of every corpus clip, for the
analysis-conditioned captioners (musiccap/conditioning.py).

Writes ``CORPUS/analysis/<split>.jsonl``: one line per clip, ``{"id", "fold", "analysis"}``.

* Train clips are analysed by probes that never saw them: the split is cut into ``--folds`` folds by
  composition (a clip's piece is in one fold only, so no probe has heard another excerpt of the same
  piece) and each fold is analysed by probes fitted on the other folds (``train.analysis_probes``'
  fitting, its hyper-parameters chosen on validation as always). A captioner trained on analyses the
  probes had fitted would learn to trust them far more than they deserve on new music.
* Validation, test and unseen clips are analysed by the shipped probes (fitted on the whole train split),
  as the app analyses an upload.

``CORPUS/analysis/info.json`` records the probes file's hash and the folds; a run that finds every
split written with the same ones has nothing to do (a pipeline resumed elsewhere does not redo it).
The analysis reads each clip's cached features (``python -m train.features``) and the DSP evidence
that ``train.analysis_probes`` caches, so a run is minutes, not a pass over the audio.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from musiccap.analysis import PROBES, Analysis, Probes, estimate, shipped_probes
from musiccap.encoders import musicnn
from train.analysis_probes import Evidence, fit_probes, load_evidence
from train.data import analysis_path, read_manifest

SPLITS = ("train", "validation", "test", "unseen")


def fold_of(piece: str, folds: int) -> int:
    """A composition's fold: a stable hash of its name (the same on every machine and run)."""
    return int(hashlib.sha1(piece.encode()).hexdigest(), 16) % folds


def subset(evidence: Evidence, rows: np.ndarray) -> Evidence:
    return Evidence(
        [evidence.ids[i] for i in rows],
        [evidence.attributes[i] for i in rows],
        evidence.tags[rows],
        evidence.pooled[rows],
        evidence.chunks[rows],
        [evidence.dsp[i] for i in rows],
    )


def analyse(evidence: Evidence, probes: Probes) -> list[Analysis]:
    return [
        estimate(dict(zip(musicnn.MTT_LABELS, tags.tolist())), pooled, chunks, dsp, probes)
        for tags, pooled, chunks, dsp in zip(evidence.tags, evidence.pooled, evidence.chunks, evidence.dsp)
    ]


def cross_fitted(train: Evidence, validation: Evidence, pieces: list[str], folds: int) -> tuple[list, list]:
    """(the train clips' analyses, each clip's fold), every fold analysed by probes fitted without it."""
    fold = np.array([fold_of(piece, folds) for piece in pieces])
    analyses: list[Analysis | None] = [None] * len(train.ids)
    for k in range(folds):
        held_out, fitted_on = np.flatnonzero(fold == k), np.flatnonzero(fold != k)
        started = time.time()
        probes = fit_probes(subset(train, fitted_on), validation)
        for row, analysis in zip(held_out, analyse(subset(train, held_out), probes)):
            analyses[row] = analysis
        print(f"fold {k + 1}/{folds}: {len(held_out)} clips, {time.time() - started:.0f} s", flush=True)
    return analyses, fold.tolist()


def write(corpus: Path, split: str, ids: list[str], analyses: list[Analysis], folds: list | None) -> Path:
    path = analysis_path(corpus, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        json.dumps({"id": clip_id, "fold": None if folds is None else folds[row], "analysis": a.to_json()})
        for row, (clip_id, a) in enumerate(zip(ids, analyses))
    ]
    partial = path.with_suffix(".partial")
    partial.write_text("\n".join(lines) + "\n")
    partial.rename(path)
    return path


def probes_sha256() -> str:
    """The shipped probes' fingerprint: what a corpus's analyses, and a model trained on them, depend on."""
    return hashlib.sha256(PROBES.read_bytes()).hexdigest()


def provenance(folds: int) -> dict:
    """What the analyses depend on besides the corpus: the shipped probes' bytes and the folds."""
    return {"probes_sha256": probes_sha256(), "folds": folds}


def require_analyses(corpus: str | Path, probes: str) -> None:
    """Refuse a corpus whose analyses were not made by the probes ``probes`` (a sha256 prefix) names:
    an analysis-conditioned run must train on what the probes it was planned with say."""
    info = analysis_path(corpus, "train").parent / "info.json"
    made_by = json.loads(info.read_text())["probes_sha256"] if info.is_file() else None
    if made_by is None or not made_by.startswith(probes):
        found = "no analyses" if made_by is None else f"analyses made by probes {made_by[:12]}"
        raise SystemExit(
            f"{corpus} has {found}, not by probes {probes}: "
            f"python -m train.analysis_vectors --corpus {corpus}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.analysis_vectors", description=__doc__)
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--splits", nargs="*", default=list(SPLITS))
    parser.add_argument(
        "--probes-sha256",
        help="refuse to run unless the shipped probes' sha256 starts with this (the pipeline's plan)",
    )
    args = parser.parse_args(argv)
    if args.folds < 2:
        raise SystemExit("--folds must be at least 2")
    if args.probes_sha256 and PROBES.is_file() and not probes_sha256().startswith(args.probes_sha256):
        raise SystemExit(
            f"the shipped probes are {probes_sha256()[:12]}, not {args.probes_sha256}: plan again"
        )
    torch.set_num_threads(1)
    corpus = Path(args.corpus)
    probes = shipped_probes()
    if probes is None:  # checked before its fingerprint is read
        raise SystemExit(
            "no shipped probes (checkpoints/analysis/probes.safetensors): python -m train.analysis_probes"
        )
    splits = [split for split in args.splits if (corpus / f"{split}.jsonl").is_file()]  # unseen may be absent
    info = analysis_path(corpus, "train").parent / "info.json"
    wanted = provenance(args.folds)
    if info.is_file() and json.loads(info.read_text()) == wanted:
        if all(analysis_path(corpus, split).is_file() for split in splits):
            print(f"{info.parent}: every split analysed with these probes and folds already")
            return 0
    info.unlink(missing_ok=True)
    validation = load_evidence(corpus, "validation")
    for split in splits:
        started = time.time()
        evidence = validation if split == "validation" else load_evidence(corpus, split)
        if split == "train":
            piece = {row["id"]: row.get("piece", row["id"]) for row in read_manifest(corpus, "train")}
            analyses, folds = cross_fitted(evidence, validation, [piece[i] for i in evidence.ids], args.folds)
        else:
            analyses, folds = analyse(evidence, probes), None
        path = write(corpus, split, evidence.ids, analyses, folds)
        print(f"{split}: {len(analyses)} clips -> {path} in {time.time() - started:.0f} s", flush=True)
    info.write_text(json.dumps(wanted, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
