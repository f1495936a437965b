"""``python -m train <model> --config train/configs/<model>.yaml [section.key=value ...]``

Builds the model from its config and the training split, trains it with the shared loop
(``train/trainer.py``), evaluates the best weights on the test split and leaves a complete
checkpoint folder: config.json, model.safetensors, tokenizer files, results.json,
training.json (git commit, data, timings), train_log.jsonl and a model card (README.md).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from musiccap.encoders.embedded import AudioFeatures
from musiccap.registry import REPO
from musiccap.training import BUILD_DIR, BuildContext
from train.config import load_config
from train.data import load_items
from train.trainer import TrainConfig, fit


def model_class(name: str):
    if name == "clap":
        from musiccap.encoders.embedded_clap import EmbeddedClap

        return EmbeddedClap
    from musiccap.models.base import registry

    classes = registry()
    if name not in classes:
        raise SystemExit(f"unknown model {name!r}; known: clap, {', '.join(sorted(classes))}")
    return classes[name]


def items_encoder(model_config: dict):
    """The feature encoder whose outputs the model reads: the CLAP's log-mel when its config names an
    HTSAT CLAP (``clap_path``: the full profile), else the embedded features (None: the default)."""
    from musiccap.encoders.clap_loader import HTSAT, clap_folder, clap_kind, feature_encoder

    clap_path = model_config.get("clap_path")
    if clap_path and clap_kind(clap_folder(clap_path)) == HTSAT:
        return feature_encoder(clap_path)
    return None


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def parameter_counts(model) -> dict[str, int]:
    """Trainable and frozen parameters; an architecture with frozen parts outside its modules says so itself."""
    if hasattr(model, "parameter_counts"):
        return model.parameter_counts()
    return {
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "frozen": sum(p.numel() for p in model.parameters() if not p.requires_grad),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train", description=__doc__)
    parser.add_argument("model", help="clap, muscaps, rgmc, blap, alcap, csa")
    parser.add_argument("--config", required=True)
    parser.add_argument("--corpus", default=str(REPO / "data" / "corpus"), help="synthetic corpus folder")
    parser.add_argument("--out", help="checkpoint folder (default runs/<config name>)")
    parser.add_argument("--clap", default="clap", help="the CLAP: registry name, folder or Hub id")
    parser.add_argument("--limit", type=int, help="use only the first N training clips (smoke runs)")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--no-eval", action="store_true", help="skip the test-split evaluation")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument(
        "--shared-build",
        default="",
        help="a folder of build work that runs of other recipes may reuse when made from the same inputs "
        "(RGMC's text pretraining); default: none",
    )
    parser.add_argument(
        "--analysis-probes",
        help="an analysis-conditioned run: the sha256 prefix of the probes whose analyses of the corpus it must "
        "train on (python -m train.analysis_vectors); refused when the corpus holds others",
    )
    parser.add_argument("overrides", nargs="*", help="section.key=value, e.g. train.lr=3e-4")
    args, extra = parser.parse_known_args(argv)  # overrides may follow the options
    unknown = [item for item in extra if "=" not in item or item.startswith("-")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.overrides = list(args.overrides) + extra
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.analysis_probes:
        from train.analysis_vectors import require_analyses

        require_analyses(args.corpus, args.analysis_probes)

    config = load_config(args.config, args.overrides)
    out_dir = Path(args.out or REPO / "runs" / Path(args.config).stem)
    finished = out_dir / "training.json"
    if args.resume and finished.is_file():
        # the training ended and only what follows it (the evaluation) was cut off: do not train again
        recorded = json.loads(finished.read_text())
        if (recorded.get("config_file"), recorded.get("overrides")) != (
            str(Path(args.config)),
            args.overrides,
        ):
            raise SystemExit(
                f"{out_dir} holds a finished training of another configuration; remove it or drop --resume"
            )
        print(f"{out_dir}: training finished earlier ({recorded.get('wall_time_s')} s), not repeated")
        finish(out_dir, args)
        return 0
    started = time.time()
    commit = git_commit()  # read now: HEAD can move on while a long run trains
    encoder = items_encoder(config.get("model", {}))
    train_items = load_items(args.corpus, "train", encoder=encoder, limit=args.limit)
    validation_items = load_items(
        args.corpus, "validation", encoder=encoder, limit=args.limit and max(8, args.limit // 4)
    )
    train_and_record(args, config, train_items, validation_items, out_dir, started=started, commit=commit)
    finish(out_dir, args)
    return 0


def train_and_record(
    args: argparse.Namespace,
    config: dict,
    train_items: list,
    validation_items: list,
    out_dir: Path,
    *,
    started: float,
    commit: str,
) -> None:
    """Build ``args.model`` from ``config``, train it on the items into ``out_dir`` and write training.json
    (the configuration, data, commit and timings): the run of ``python -m train``, also for items made
    elsewhere (``train.muscaps_scratch`` trains on packed log-mel patches)."""
    train_config = TrainConfig.from_dict(config.get("train", {}))
    first = train_items[0].features
    context = BuildContext(
        clap_path=args.clap,
        # log-mel features (HTSAT CLAP) have no embedded layout: csa and blap size themselves from the CLAP
        feature_dims=(
            (first.frames.shape[1], first.pooled.shape[0], first.chunks.shape[1])
            if isinstance(first, AudioFeatures)
            else (0, 0, 0)
        ),
        corpus_dir=str(args.corpus),
        shared_dir=args.shared_build,
    )
    cls = model_class(args.model)
    if out_dir.exists() and not args.resume:
        shutil.rmtree(out_dir)  # before build: a fresh run must not read another run's build work
    build_dir = out_dir / BUILD_DIR
    context.build_dir = str(build_dir)
    build_started = time.time()
    model = cls.build(config.get("model", {}), train_items, context)
    build_time_s = round(time.time() - build_started, 1)  # includes any pretraining done at build (RGMC's LM)
    if "decoding" in config and hasattr(model, "default_decoding"):
        from musiccap.decoding import DecodingConfig

        model.default_decoding = DecodingConfig.from_dict(config["decoding"])
    if hasattr(model, "prepare_items"):  # inputs beyond the feature cache (MusCaps' scratch CNN)
        model.prepare_items(train_items)
        model.prepare_items(validation_items)
    log, summary = fit(model, train_items, validation_items, train_config, out_dir, resume=args.resume)
    shutil.rmtree(build_dir, ignore_errors=True)  # the checkpoint folder ships; build work does not
    training = {
        "model": args.model,
        "config_file": str(Path(args.config)),
        "config": config,
        "overrides": args.overrides,
        "git_commit": commit,
        "corpus": str(args.corpus),
        "analysis_probes": args.analysis_probes,
        "n_train": len(train_items),
        "n_validation": len(validation_items),
        "torch_threads": torch.get_num_threads(),
        # this process's time, plus the training done before it was resumed
        "wall_time_s": round(time.time() - started + summary["train_time_before_resume_s"], 1),
        "build_time_s": build_time_s,
        "parameters": parameter_counts(model),
        **{key: value for key, value in summary.items() if key != "config"},
        "trainer": summary["config"],  # the trainer's settings with their defaults filled in
    }
    (out_dir / "training.json").write_text(json.dumps(training, indent=2) + "\n")


def finish(out_dir: Path, args: argparse.Namespace) -> None:
    """What follows a finished training: the test-split evaluation (which writes the model card), or the card alone."""
    if not args.no_eval:
        from train.evaluate import evaluate_checkpoint

        evaluate_checkpoint(out_dir, args.corpus, split="test", clap_path=args.clap)
    else:
        from train.model_card import write_model_card

        write_model_card(out_dir)
    print(f"checkpoint written to {out_dir}")


if __name__ == "__main__":
    sys.exit(main())
