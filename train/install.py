"""``python -m train.install STAGED [--into checkpoints] [--dry-run]`` — serve a retrain's checkpoints.

A retrain written outside the repository (``python -m train.pipeline --checkpoints STAGED``) is served by
copying it over ``checkpoints/``, but only whole: the app's tables compare every captioner on one test split,
so the CLAP, both baselines, BLAP's LM and every captioner must come from the same corpus, and every captioner
must have been through ``train.ship`` (its ``shipped.json`` says which candidate it serves and why). This
checks that, then replaces each folder whole: a plain ``cp -r`` would merge, leaving files the new model did
not write (an old BLAP's stage-1 run, a prompt-use record) beside it. Folders the retrain does not make (the
analysis probes) stay as they are. Afterwards: ``python -m train.tables --checkpoints checkpoints --out
docs/RESULTS.md`` and ``musiccap bench``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from musiccap.registry import CHECKPOINTS
from train.pipeline import CAPTIONERS

COMPONENTS = ("clap", "random", "nearest", "blap_lm")


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def problems(staged: Path) -> list[str]:
    """What keeps ``staged`` from being served; empty when it can be."""
    found = []
    for name in (*COMPONENTS, *CAPTIONERS):
        if not (staged / name / "config.json").is_file():
            found.append(f"{name}: no checkpoint in {staged / name}")
    for name in CAPTIONERS:
        shipped = _read(staged / name / "shipped.json")
        if not shipped:
            found.append(f"{name}: not shipped yet (python -m train.ship --arch {name} ...)")
        elif shipped.get("installing"):
            found.append(
                f"{name}: train.ship was cut off while installing {shipped.get('ships')}: run it again"
            )
    corpora = {
        name: str(Path(_read(staged / name / "training.json")["corpus"]).resolve())
        for name in (*COMPONENTS, *CAPTIONERS)
        if "corpus" in _read(staged / name / "training.json")
    }
    if len(set(corpora.values())) > 1:
        listed = ", ".join(f"{name}: {corpus}" for name, corpus in sorted(corpora.items()))
        found.append(f"trained on different corpora ({listed})")
    return found


def install(staged: Path, into: Path) -> list[str]:
    """Replace each of ``into``'s retrained folders with ``staged``'s; returns the names installed."""
    installed = []
    for name in (*COMPONENTS, *CAPTIONERS):
        scratch = into / f".{name}.installing"
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.copytree(staged / name, scratch)  # the old folder serves until the copy is whole
        shutil.rmtree(into / name, ignore_errors=True)
        scratch.rename(into / name)
        installed.append(name)
    return installed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.install", description=__doc__)
    parser.add_argument("staged", type=Path, help="the retrain's checkpoints folder")
    parser.add_argument(
        "--into", type=Path, default=CHECKPOINTS, help="default: the repository's checkpoints/"
    )
    parser.add_argument("--dry-run", action="store_true", help="check only")
    args = parser.parse_args(argv)
    found = problems(args.staged)
    if found:
        print(f"{args.staged} cannot be served yet:", *(f"  - {problem}" for problem in found), sep="\n")
        return 1
    if args.dry_run:
        print(f"{args.staged} can be served: {', '.join((*COMPONENTS, *CAPTIONERS))}")
        return 0
    installed = install(args.staged, args.into)
    print(f"served from {args.into}: {', '.join(installed)}")
    print(f"next: python -m train.tables --checkpoints {args.into} --out docs/RESULTS.md; musiccap bench")
    return 0


if __name__ == "__main__":
    sys.exit(main())
