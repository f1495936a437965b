"""``python -m train.ship --arch csa --checkpoints DIR --runs DIR --corpus DIR --variant NAME=PATH ...``

Which model of an architecture the app serves, chosen and installed by the README's rule ("Choosing what
ships"; ``train/diagnostics/choose_shipped.py``), fixed before the retrain's rows landed:

1. Each candidate, the paper row (the checkpoint the pipeline trains into ``<checkpoints>/<arch>``) and each
   variant (a run folder whose row, named NAME, is filed in that checkpoint's results.json), is captioned
   on the first 500 validation clips with its own decoding (``train.diagnostics.decoding_sweep``); with
   ``--decoding LABEL KEY=VALUE...`` each of those models is a candidate under that decoding too, the row
   ``<model>_LABEL``. The records go into ``<runs>/ship_sweeps.json``; a record of the same model (weights,
   vocabulary, config but its decoding, the parts it names) and decoding on the same clips of the same
   corpus is reused, not computed again.
2. ``choose_shipped``'s rule picks the candidate that ships.
3. A winning variant is installed: its weights, config, vocabulary and training record become
   ``<checkpoints>/<arch>``'s (the CLAP and LM it names are renamed as seen from there), results.json's
   top level becomes the variant's row (what the app and the model card show is what the folder serves),
   and the paper recipe stays a row of the table, ``<arch>_paper``, its model kept in ``<runs>/<arch>_paper``.
   If the paper row wins, nothing but ``shipped.json`` is written (and a variant served earlier is
   replaced by the paper's model again). A winner under another decoding than its model's own is served
   with that decoding (config.json's ``decoding``), and its row is evaluated on test and filed first.

``<checkpoints>/<arch>/shipped.json`` records the rule, every candidate's margins over the fixed-caption
floor and validation CIDEr-D, which ships and why (the model card and the About tab say it from there).
Running the command again changes nothing: it reuses the sweeps, finds the winner already served and
writes a file only when its content would change.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

from musiccap.checkpoint import CONFIG_NAME
from musiccap.decoding import DecodingConfig
from musiccap.hub import local_folder
from musiccap.models.base import registry
from musiccap.registry import reference
from musiccap.training import BUILD_DIR
from train.diagnostics import choose_shipped, decoding_sweep
from train.evaluate import LISTENING_KEYS, ROW_KEYS, ablation_run, evaluate_checkpoint, parse_overrides
from train.pipeline import update_json

SWEEPS_FILE = "ship_sweeps.json"
SHIPPED_FILE = "shipped.json"
VALIDATION_CLIPS = 500
# A checkpoint folder's files that describe the folder rather than the model in it (kept where they are),
# and a training's resume state and build work (they belong to the run that wrote the folder).
FOLDER_FILES = ("results.json", "README.md", SHIPPED_FILE)
RUN_STATE = ("last", BUILD_DIR)
# What the model's training left beside it: copied with the model, but not part of its identity.
PROVENANCE = ("training.json", "train_log.jsonl")
RULE = (
    "Each candidate (the paper row and each variant, and where named each of their models under another "
    "decoding) is captioned on the validation clips with its decoding; the one with the highest mean margin "
    "over the fixed-caption floor on instrument F1, tempo, mode and drums ships, unless its validation "
    f"CIDEr-D is more than {choose_shipped.CIDER_TOLERANCE:.0%} below the paper row's; a tie goes to the "
    "paper row. Test, unseen and the reserved soundfonts play no part (README, 'Choosing what ships')."
)


def paper_row(arch: str) -> str:
    """The name of the paper recipe's row in its table once a variant is served in its place."""
    return f"{arch}_paper"


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _write(path: Path, document: dict) -> bool:
    """Write ``document`` as JSON unless the file already holds it (in any key order: a row filed after
    an install keeps its place in the table); True when it was written."""
    if path.is_file() and json.loads(path.read_text()) == document:
        return False
    path.write_text(json.dumps(document, indent=2) + "\n")
    return True


# ---- a model, wherever its folder lies -----------------------------------------------------------


def model_files(folder: Path) -> list[Path]:
    """The files that make up the model in ``folder`` (with its training record), relative to it."""
    skipped = set(FOLDER_FILES) | set(RUN_STATE)
    return sorted(
        path.relative_to(folder)
        for path in folder.rglob("*")
        if path.is_file() and path.relative_to(folder).parts[0] not in skipped
    )


def component_fields(config_document: dict) -> tuple[str, ...]:
    """The config fields naming another checkpoint's folder (the CLAP, BLAP's LM)."""
    return getattr(registry()[config_document["architecture"]], "component_fields", ())


def placed_config(source: Path, destination: Path) -> dict:
    """``source``'s config.json as it must read at ``destination``: every part it names by a path
    relative to itself (``../clap``) named as seen from there, so it still finds the same folder."""
    document = json.loads((source / CONFIG_NAME).read_text())
    for name in component_fields(document):
        folder = local_folder(document["config"][name], source)
        if folder is not None:  # a Hub id stays as it is
            document["config"][name] = reference(folder, destination)
    return document


def model_identity(folder: Path) -> str:
    """A hash of the model in ``folder``: its files, with the parts its config names as absolute folders,
    so the same model copied elsewhere (and its config's paths renamed) keeps its identity. Its default
    decoding is not part of it: ``ship`` chooses the served decoding too, and a folder whose decoding it
    changed still holds the same model."""
    digest = hashlib.sha256()
    for relative in model_files(folder):
        if relative.name in PROVENANCE and len(relative.parts) == 1:
            continue
        digest.update(relative.as_posix().encode() + b"\0")
        if relative.as_posix() == CONFIG_NAME:
            document = json.loads((folder / CONFIG_NAME).read_text())
            document.pop("decoding", None)
            for name in component_fields(document):
                found = local_folder(document["config"][name], folder)
                document["config"][name] = (
                    str(found.resolve()) if found is not None else document["config"][name]
                )
            digest.update(json.dumps(document, sort_keys=True).encode())
        else:
            digest.update((folder / relative).read_bytes())
    return digest.hexdigest()[:16]


def copy_model(source: Path, destination: Path) -> None:
    """Make ``destination`` hold ``source``'s model: its files replace the model files there (those the new
    model lacks are removed); results.json, the model card, shipped.json and run state stay. The new files
    are written beside the folder and moved in, so an interruption leaves whole files."""
    destination.mkdir(parents=True, exist_ok=True)
    incoming = model_files(source)
    for relative in set(model_files(destination)) - set(incoming):
        (destination / relative).unlink()
    for relative in incoming:
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = target.with_name(target.name + ".shipping")
        if relative.as_posix() == CONFIG_NAME:
            document = placed_config(source, destination)
            scratch.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
        else:
            shutil.copyfile(source / relative, scratch)
        scratch.replace(target)
    for folder in sorted((p for p in destination.rglob("*") if p.is_dir()), reverse=True):
        if folder.relative_to(destination).parts[0] not in RUN_STATE and not any(folder.iterdir()):
            folder.rmdir()


# ---- the candidates' validation sweeps ---------------------------------------------------------------


def swept(
    sweeps_path: Path,
    name: str,
    checkpoint: Path,
    overrides: dict,
    corpus: Path,
    clap: Path | None,
    limit: int,
) -> dict:
    """The candidate's validation record: the one in the sweeps file when it is of this very model and
    decoding (the checkpoint's own with ``overrides``) on these clips, else a new sweep, filed there."""
    identity = model_identity(checkpoint)
    key = {"identity": identity, "decoding": overrides, "corpus": str(corpus.resolve()), "limit": limit}
    key["split"] = "validation"
    records = _read(sweeps_path)
    record = records.get(name)
    if record is not None and all(record.get(k) == v for k, v in key.items()):
        print(f"[ship] {name}: reusing its validation sweep ({sweeps_path})", flush=True)
        return record
    print(f"[ship] {name}: captioning {limit} validation clips with {checkpoint}", flush=True)
    record = decoding_sweep.sweep(
        checkpoint, corpus, [overrides], split="validation", limit=limit, clap_path=clap
    )
    record |= {**key, "checkpoint": str(checkpoint)}
    # the pipeline ships several architectures at once: file the record under a lock, into what the file
    # holds now, so no architecture's records are lost
    update_json(sweeps_path, lambda records: records.update({name: record}))
    return record


# ---- the served folder's results.json with the paper or a variant served -------------------------------


def paper_top(document: dict) -> dict:
    """The top level of a results.json: what its checkpoint's own evaluation wrote."""
    return {key: value for key, value in document.items() if key not in ROW_KEYS}


def with_paper_served(document: dict, paper: dict, arch: str) -> dict:
    """results.json as it is when the paper's model is served: ``paper`` (its evaluation) on top and no
    paper row; rows evaluated on the paper's model name it by the folder again."""
    rows = {key: dict(document.get(key) or {}) for key in ROW_KEYS}
    for table in rows.values():
        table.pop(paper_row(arch), None)
    for name, run in rows["ablation_runs"].items():
        if run.get("checkpoint") == paper_row(arch):
            rows["ablation_runs"][name] = {**run, "checkpoint": arch}
    return {**paper, **{key: table for key, table in rows.items() if table}}


def with_variant_served(
    document: dict, paper: dict, arch: str, variant: str, kept_paper: Path, decoding: dict
) -> dict:
    """results.json when ``variant`` is served (with ``decoding``): its row on top (the folder's model),
    the paper's evaluation as the row ``<arch>_paper`` (its model kept in ``kept_paper``), and the rows
    that were evaluated on the paper's model (other decodings, switches) naming it."""
    served = with_paper_served(document, paper, arch)
    rows = {key: dict(served.get(key) or {}) for key in ROW_KEYS}
    name = paper_row(arch)
    for row, run in rows["ablation_runs"].items():
        if run.get("checkpoint") == arch:
            rows["ablation_runs"][row] = {**run, "checkpoint": name}
    rows["ablations"][name] = paper["metrics"]
    rows["ablation_runs"][name] = ablation_run(kept_paper, {}, {}) | {
        "note": f"the paper's recipe, not served: {variant} ships in its place (shipped.json)"
    }
    for key in LISTENING_KEYS:
        if key in paper:
            rows[f"ablation_{key}"][name] = paper[key]
    top = {"split": paper.get("split"), "n": paper.get("n"), "metrics": rows["ablations"][variant]}
    top |= {"decoding": decoding, "checkpoint": arch, "shipped_row": variant}
    for key in LISTENING_KEYS:
        if variant in rows[f"ablation_{key}"]:
            top[key] = rows[f"ablation_{key}"][variant]
    return top | {key: table for key, table in rows.items() if table}


# ---- choosing and installing -------------------------------------------------------------------------


def paper_folder(served: Path, kept_paper: Path, previous: dict, served_identity: str) -> Path:
    """Where the paper recipe's model is: in the served folder, unless shipped.json says a variant is
    served there (or was being installed when a run was cut off) and the kept copy is the paper's model
    it recorded. A served folder that is neither (the paper row trained again) holds the paper."""
    arch = served.name
    variant_served = (
        previous.get("ships", arch) != arch and previous.get("served_identity") == served_identity
    )
    if not (variant_served or previous.get("installing")):
        return served
    if (kept_paper / CONFIG_NAME).is_file() and model_identity(kept_paper) == previous.get("paper_identity"):
        return kept_paper
    if variant_served and served_identity != previous.get("paper_identity"):
        raise SystemExit(
            f"{served} serves {previous['ships']}, but {kept_paper} no longer holds the paper's model "
            f"shipped.json recorded ({previous.get('paper_identity')}): train the paper row again"
        )
    return served


def training_overrides(folder: Path) -> list[str]:
    return list(_read(folder / "training.json").get("overrides") or [])


def decoded_row(model: str, label: str) -> str:
    """The row of ``model`` (the architecture's name for the paper's model) decoded as ``label`` says."""
    return f"{model}_{label}"


def served_decoding(source: Path, overrides: dict) -> dict:
    """The decoding the served folder's config.json holds when it serves ``source``'s model with
    ``overrides`` on that model's own decoding."""
    own = json.loads((source / CONFIG_NAME).read_text()).get("decoding")
    return DecodingConfig.from_dict(own).replace(**overrides).to_dict()


def set_decoding(folder: Path, decoding: dict) -> None:
    """Make ``decoding`` the default decoding of the model in ``folder`` (its config.json), whole or not
    at all."""
    document = json.loads((folder / CONFIG_NAME).read_text())
    if document.get("decoding") == decoding:
        return
    scratch = folder / (CONFIG_NAME + ".shipping")
    scratch.write_text(json.dumps({**document, "decoding": decoding}, indent=2, sort_keys=True) + "\n")
    scratch.replace(folder / CONFIG_NAME)


def ship(
    arch: str,
    checkpoints: Path,
    runs: Path,
    corpus: Path,
    variants: dict[str, Path],
    clap: Path | None = None,
    limit: int = VALIDATION_CLIPS,
    decodings: dict[str, dict] | None = None,
) -> dict:
    """Choose ``arch``'s shipped model among its paper row and ``variants`` (row name -> run folder) and
    serve it from ``<checkpoints>/<arch>``; returns shipped.json's record.

    ``decodings`` (label -> overrides of each model's own decoding): each model is a candidate under each
    of these too, as the row ``<model>_<label>`` (``muscaps_beam3``: the paper's model decoded with the
    paper's beam 3). A winner decoded so is served with that decoding (config.json), and its row, unless
    filed already, is evaluated on test and filed before it becomes the folder's top level."""
    decodings = decodings or {}
    from train.model_card import write_model_card

    served, kept_paper = checkpoints / arch, runs / paper_row(arch)
    if not (served / CONFIG_NAME).is_file():
        raise SystemExit(f"{served} holds no checkpoint: train the paper row first")
    previous = _read(served / SHIPPED_FILE)
    served_identity = model_identity(served)
    paper_source = paper_folder(served, kept_paper, previous, served_identity)
    document = _read(served / "results.json")
    paper = _read(kept_paper / "results.json") if paper_source == kept_paper else paper_top(document)
    if "metrics" not in paper:
        raise SystemExit(f"{paper_source} has no evaluation: run python -m train.evaluate {paper_source}")
    for name, folder in variants.items():
        if not (folder / CONFIG_NAME).is_file():
            raise SystemExit(f"variant {name}: {folder} holds no checkpoint")
        if name not in (document.get("ablations") or {}):
            raise SystemExit(
                f"variant {name} has no row in {served}/results.json: file it first "
                f"(python -m train.evaluate {folder} --into {served} --as {name})"
            )

    sweeps_path = runs / SWEEPS_FILE
    folders = {arch: paper_source, **variants}
    # candidate -> (its model's name in ``folders``, overrides of that model's own decoding)
    models = {name: (name, {}) for name in folders}
    for label, overrides in decodings.items():
        models |= {decoded_row(name, label): (name, overrides) for name in folders}
    if len(models) != len(folders) * (1 + len(decodings)):
        raise SystemExit(f"the decodings' rows {sorted(decodings)} take names of variants {sorted(variants)}")
    for name, (model, overrides) in models.items():
        swept(sweeps_path, name, folders[model], overrides, corpus, clap, limit)
    records = _read(sweeps_path)
    paper_candidate, clips = choose_shipped.candidate(records, arch)
    candidates = [paper_candidate]
    for name in list(models)[1:]:
        other, other_clips = choose_shipped.candidate(records, name)
        if other_clips != clips:
            raise SystemExit(f"{name} was swept on {other_clips}, the paper row on {clips}: not comparable")
        candidates.append(other)
    winner, why = choose_shipped.choose(paper_candidate, candidates[1:])
    print(choose_shipped.table(candidates, paper_candidate, winner), flush=True)
    print(f"\n[ship] {arch} serves {winner.name}: {why}", flush=True)

    paper_identity = model_identity(paper_source)
    winner_model, winner_overrides = models[winner.name]
    source = folders[winner_model]
    if winner.name != arch and paper_source == served:  # keep the paper's model before the folder changes
        if not (kept_paper / CONFIG_NAME).is_file() or model_identity(kept_paper) != paper_identity:
            copy_model(served, kept_paper)
        _write(kept_paper / "results.json", paper)
        write_model_card(kept_paper)
    paper_overrides = set(training_overrides(paper_source))
    # where each model is once this run is done (the paper's: kept aside when another candidate ships)
    locations = folders | {arch: served if winner.name == arch else kept_paper}
    floor = 1 - choose_shipped.CIDER_TOLERANCE
    record = {
        "architecture": arch,
        "rule": RULE,
        "split": clips[0],
        "clips": clips[1],
        "corpus": str(corpus.resolve()),
        "sweeps": str(sweeps_path.resolve()),
        "paper": arch,
        "paper_row": arch if winner.name == arch else paper_row(arch),
        "ships": winner.name,
        "why": why,
        "candidates": {
            c.name: {
                "checkpoint": str(locations[model].resolve()),
                "trained_with": sorted(set(training_overrides(folders[model])) - paper_overrides),
                "decoded_with": overrides,
                "margins": c.margins,
                "mean_margin": c.mean_margin,
                "cider_d": c.cider_d,
                "cider_d_allowed": c is paper_candidate or c.cider_d >= floor * paper_candidate.cider_d,
            }
            for c in candidates
            for model, overrides in [models[c.name]]
        },
        "paper_identity": paper_identity,
        "served_identity": model_identity(source),
    }
    if winner.name != arch:
        record["paper_kept_at"] = str(kept_paper.resolve())
    decoding = served_decoding(source, winner_overrides)
    current = json.loads((served / CONFIG_NAME).read_text()).get("decoding")
    installs = served_identity != record["served_identity"] or current != decoding
    if installs:
        _write(served / SHIPPED_FILE, record | {"installing": True})  # a cut-off install is resumed from here
        if served_identity != record["served_identity"]:
            copy_model(source, served)
        set_decoding(served, decoding)
    filed = winner.name in (_read(served / "results.json").get("ablations") or {})
    if winner_overrides and (installs or previous.get("installing") or not filed):
        # the served row is the winner's model under another decoding than its own: its test numbers
        print(f"[ship] evaluating {winner.name} on test", flush=True)
        evaluate_checkpoint(
            locations[winner_model],
            str(corpus),
            clap_path=str(clap) if clap else None,
            decoding_overrides=winner_overrides,
            into=served,
            as_name=winner.name,
        )

    def serve_winner(document: dict) -> None:
        # under the lock, on the file as it is now: rows trained as runs of their own may have been filed
        # since it was read above, while the candidates were swept
        if winner.name == arch:
            results = with_paper_served(document, paper, arch)
        else:
            results = with_variant_served(document, paper, arch, winner.name, kept_paper, decoding)
        document.clear()
        document.update(results)

    update_json(served / "results.json", serve_winner)
    _write(served / SHIPPED_FILE, record)
    write_model_card(served)
    return record


def parse_variant(text: str) -> tuple[str, Path]:
    name, separator, path = text.partition("=")
    if not separator or not name or not path:
        raise argparse.ArgumentTypeError(
            f"a variant is NAME=PATH (its row name and run folder); got {text!r}"
        )
    return name, Path(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m train.ship", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--arch", required=True, help="the architecture, e.g. csa")
    parser.add_argument("--checkpoints", type=Path, required=True, help="the served checkpoints folder")
    parser.add_argument(
        "--runs", type=Path, required=True, help="the runs folder: sweeps, the kept paper model"
    )
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--clap", type=Path, help="the embedded CLAP: adds CLAP A-T to the sweeps")
    parser.add_argument(
        "--variant",
        type=parse_variant,
        nargs="*",
        default=[],
        help="NAME=PATH: a variant's row and run folder",
    )
    parser.add_argument(
        "--decoding",
        nargs="+",
        action="append",
        default=[],
        metavar="LABEL KEY=VALUE",
        help="every model is a candidate under this decoding too (its own with these overrides), as the row "
        "<model>_LABEL; e.g. --decoding beam3 num_beams=3 no_repeat_ngram_size=0",
    )
    parser.add_argument("--limit", type=int, default=VALIDATION_CLIPS, help="the first N validation clips")
    args = parser.parse_args(argv)
    variants = dict(args.variant)
    if len(variants) != len(args.variant) or args.arch in variants:
        parser.error("each variant needs its own name, other than the architecture's")
    decodings = {}
    for label, *pairs in args.decoding:
        if "=" in label or not pairs or any("=" not in pair for pair in pairs) or label in decodings:
            parser.error(f"--decoding takes a label of its own, then KEY=VALUE pairs; got {label} {pairs}")
        decodings[label] = parse_overrides(pairs)
    try:
        decoding_sweep.check_settings(list(decodings.values()))
    except ValueError as error:
        parser.error(str(error))
    ship(args.arch, args.checkpoints, args.runs, args.corpus, variants, args.clap, args.limit, decodings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
