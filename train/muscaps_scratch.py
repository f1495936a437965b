"""MusCaps' "without pre-training" row (Table II) on a lent accelerator, beside a matched control.

The row trains musicnn from a random start together with the captioner. On the 2-core CPU that trains the
rest of the table, one step takes ~100 s (train/configs/muscaps_scratch.yaml), so it needs a GPU. The GPU
machine this project is sometimes lent takes 64 MiB of inputs a call, not the corpus' 5.5 GB of audio. So
the row trains on a random subset of the training clips, packed here as 8-bit log-mel patches, and the
pack also holds the same clips' pretrained musicnn features. The accelerator then trains two models on
the same clips with the same budget: the scratch row, and early fusion on the pretrained features (the
control). Comparing the two, not the scratch row with the full-data rows, is what answers the paper's
question at this size.

    python -m train.muscaps_scratch pack --corpus C --out .gpu_row/pack.npz --clips 900
    python -m train.muscaps_scratch train --pack .gpu_row/pack.npz --row scratch --out RUNS/muscaps_scratch
    python -m train.muscaps_scratch train --pack .gpu_row/pack.npz --row pretrained --out RUNS/muscaps_early_subset
    python -m train.evaluate RUNS/muscaps_scratch --corpus C --clap CK/clap --into CK/muscaps --as muscaps_scratch

``train`` runs wherever torch finds a GPU (it is the shared trainer, through accelerate) and on a CPU too
(the tests train a tiny pack for two steps). Both rows are evaluated here on the full test split like every
other row: the scratch model computes its log-mels from the test audio itself.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np

from train.data import read_manifest

# The two models trained on a pack, by their configs: the paper's row (musicnn from a random start) and the
# matched control (the frozen pretrained musicnn)
ROWS = {"scratch": "train/configs/muscaps_scratch.yaml", "pretrained": "train/configs/muscaps_early.yaml"}
LEVELS = 255  # 8-bit log-mels: the pack must fit the accelerator's 64 MiB with the code beside it


def pick(rows: list[dict], count: int, seed: int) -> list[dict]:
    if count > len(rows):
        raise SystemExit(f"asked for {count} clips, the split has {len(rows)}")
    return random.Random(seed).sample(rows, count)


def pack(corpus: str, out: str, clips: int, validation_clips: int, seed: int) -> dict:
    """Write the pack: for each chosen clip its manifest row, 8-bit log-mel patches and pretrained chunks."""
    from musiccap.features import embedded_encoder
    from musiccap.models.muscaps import audio_file_mel_patches
    from train.__main__ import git_commit
    from train.data import clip_features

    encoder = embedded_encoder()
    arrays: dict[str, np.ndarray] = {}
    manifest: dict[str, list[dict]] = {}
    train_rows = read_manifest(corpus, "train")
    chosen = {
        "train": pick(train_rows, clips, seed),
        "validation": pick(read_manifest(corpus, "validation"), validation_clips, seed),
    }
    patches: dict[str, list[np.ndarray]] = {}
    for split, rows in chosen.items():
        manifest[split] = rows
        patches[split] = [audio_file_mel_patches(Path(corpus) / row["audio"]) for row in rows]
        features = [clip_features(Path(corpus) / row["audio"], encoder) for row in rows]
        arrays[f"{split}_chunks"] = np.concatenate([f["chunks"] for f in features]).astype(np.float16)
        arrays[f"{split}_chunk_times"] = np.concatenate([f["chunk_times"] for f in features]).astype(
            np.float32
        )
        arrays[f"{split}_chunk_counts"] = np.array([len(f["chunks"]) for f in features])
        arrays[f"{split}_patch_counts"] = np.array([len(p) for p in patches[split]])
    every = np.concatenate([np.concatenate(p) for p in patches.values()])
    low, high = float(every.min()), float(every.max())
    for split, split_patches in patches.items():
        scaled = (np.concatenate(split_patches) - low) / max(high - low, 1e-6) * LEVELS
        arrays[f"{split}_patches"] = np.round(scaled).astype(np.uint8)
    meta = {
        "corpus": str(corpus),
        "corpus_train_clips": len(train_rows),
        "seed": seed,
        "git_commit": git_commit(),
        "log_mel_range": [low, high],
        "manifest": manifest,
        # the feature layout the items are rebuilt with (train.__main__ reads the model's input sizes from it)
        "frame_dim": features[0]["frames"].shape[1],
        "pooled_dim": features[0]["pooled"].shape[0],
    }
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    return meta


def read_pack(path: str) -> tuple[dict, dict[str, list]]:
    """(the pack's metadata, {"train": items, "validation": items}) as ``python -m train`` builds them."""
    from musiccap.encoders.embedded import AudioFeatures
    from train.data import FeatureItem

    with np.load(path) as data:
        arrays = {key: data[key] for key in data.files}
    meta = json.loads(arrays.pop("meta").tobytes())
    low, high = meta["log_mel_range"]
    items = {}
    for split, rows in meta["manifest"].items():
        patches = arrays[f"{split}_patches"].astype(np.float32) / LEVELS * (high - low) + low
        patch_ends = np.cumsum(arrays[f"{split}_patch_counts"])
        chunk_ends = np.cumsum(arrays[f"{split}_chunk_counts"])
        items[split] = [
            FeatureItem.from_row(
                row,
                # both rows read chunks (early fusion) or mel patches only; frames and pooled are left empty
                AudioFeatures(
                    frames=np.zeros((0, meta["frame_dim"]), np.float32),
                    frame_times=np.zeros(0, np.float32),
                    chunks=arrays[f"{split}_chunks"][chunk_start:chunk_end].astype(np.float32),
                    chunk_times=arrays[f"{split}_chunk_times"][chunk_start:chunk_end],
                    pooled=np.zeros(meta["pooled_dim"], np.float32),
                    tags={},
                ),
                mel_patches=patches[patch_start:patch_end],
            )
            for row, patch_start, patch_end, chunk_start, chunk_end in zip(
                rows, [0, *patch_ends[:-1]], patch_ends, [0, *chunk_ends[:-1]], chunk_ends, strict=True
            )
        ]
    return meta, items


def steps_per_epoch(clips: int, batch_size: int) -> int:
    """As the trainer batches: it drops the last partial batch unless the data is one batch or less."""
    return clips // batch_size if clips > batch_size else 1


def row_overrides(meta: dict, n_train: int, batch_size: int, minutes: float) -> list[str]:
    """Corpus v2's MusCaps settings, and as many steps as the full-data rows take (their epochs over the
    whole training split), so the subset rows differ from them in data, not in training budget.
    Early stopping (the configs' patience, as in the paper) keeps the best epoch of either."""
    from train.pipeline import V2_EPOCHS, V2_SETTINGS

    full_steps = V2_EPOCHS["muscaps"] * steps_per_epoch(meta["corpus_train_clips"], batch_size)
    epochs = math.ceil(full_steps / steps_per_epoch(n_train, batch_size))
    return [f"train.epochs={epochs}", f"train.max_minutes={minutes:g}", *V2_SETTINGS["muscaps"]]


def train(
    pack_path: str,
    row: str,
    out: str,
    minutes: float,
    threads: int,
    extra: tuple[str, ...] = (),
    commit: str = "",
) -> None:
    import torch

    from train.__main__ import train_and_record
    from train.config import load_config

    if threads:
        torch.set_num_threads(threads)
    started = time.time()
    meta, items = read_pack(pack_path)
    config_file = ROWS[row]
    batch_size = load_config(config_file, list(extra))["train"]["batch_size"]
    overrides = [*row_overrides(meta, len(items["train"]), batch_size, minutes), *extra]
    args = argparse.Namespace(
        model="muscaps",
        config=config_file,
        overrides=overrides,
        clap="",  # MusCaps reads no CLAP
        corpus=f"{meta['corpus']} ({len(items['train'])} training clips packed in {Path(pack_path).name})",
        shared_build="",
        analysis_probes=None,
        resume=False,
    )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"{row}: {len(items['train'])} clips, {' '.join(overrides)}, on {device}", flush=True)
    train_and_record(
        args,
        load_config(config_file, overrides),
        items["train"],
        items["validation"],
        Path(out),
        started=started,
        # the accelerator's copy has no git history: the commit it was sent from, else the one that packed it
        commit=commit or meta["git_commit"],
    )
    recorded = json.loads((Path(out) / "training.json").read_text())
    recorded["device"] = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    recorded["pack"] = {"seed": meta["seed"], "validation_clips": len(items["validation"])}
    (Path(out) / "training.json").write_text(json.dumps(recorded, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.muscaps_scratch", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    packing = commands.add_parser("pack", help="pack a training subset (run where the corpus is)")
    packing.add_argument("--corpus", required=True)
    packing.add_argument("--out", required=True, help="the .npz to write")
    packing.add_argument("--clips", type=int, default=900, help="training clips")
    packing.add_argument("--validation-clips", type=int, default=150)
    packing.add_argument("--seed", type=int, default=0)
    training = commands.add_parser("train", help="train one row on a pack (run where the GPU is)")
    training.add_argument("--pack", required=True)
    training.add_argument("--row", choices=sorted(ROWS), required=True)
    training.add_argument("--out", required=True, help="the checkpoint folder to write")
    training.add_argument("--minutes", type=float, default=6.0, help="a cap on training time")
    training.add_argument("--threads", type=int, default=0)
    training.add_argument(
        "--commit", default="", help="the code's commit, where git cannot say (default: the pack's)"
    )
    training.add_argument(
        "overrides", nargs="*", help="section.key=value after the row's own (tests: a tiny model)"
    )
    args = parser.parse_args(argv)
    if args.command == "pack":
        meta = pack(args.corpus, args.out, args.clips, args.validation_clips, args.seed)
        size = Path(args.out).stat().st_size
        print(f"{args.out}: {len(meta['manifest']['train'])} training clips, {size / 2**20:.1f} MiB")
    else:
        train(args.pack, args.row, args.out, args.minutes, args.threads, tuple(args.overrides), args.commit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
