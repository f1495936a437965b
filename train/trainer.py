"""One training loop for every architecture.

A model honours the training contract (``musiccap/training.py``: ``build`` from its config and the
training items, ``collate`` and, if it augments its training batches, ``train_collate``, and
``training_loss``, a dict of named loss terms whose ``"loss"`` is optimised); this loop owns everything else: seeds, the optimiser and schedule,
gradient clipping, early stopping on the validation loss, resuming, the progress bar and the epoch
log. It runs under Hugging Face Accelerate, so ``accelerate launch -m train ...`` runs the same code
on several GPUs (DDP, mixed precision); here it runs on the CPU.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader
from tqdm import tqdm

from musiccap.training import Trainable, load_optimizer_state_tensors, optimizer_state_tensors, train_collate
from train.data import CaptionSampler


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 16
    lr: float = 1e-4
    optimizer: str = "adam"  # adam | adamw
    weight_decay: float = 0.0
    warmup_steps: int = 0
    schedule: str = "linear"  # linear | cosine | constant (after warm-up)
    grad_clip: float = 1.0
    patience: int = 10
    seed: int = 0
    max_steps: int = 0  # 0: no limit (tests and benchmarks cap it)
    max_minutes: float = (
        0  # 0: no limit; a wall-clock budget per run on a shared CPU (recorded in training.json)
    )
    mixed_precision: str = "no"

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown train settings {sorted(unknown)}")
        return cls(**values)


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _scheduler(optimizer, config: TrainConfig, total_steps: int):
    def factor(step: int) -> float:
        if config.warmup_steps and step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress = (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps)
        progress = min(max(progress, 0.0), 1.0)
        if config.schedule == "linear":
            return max(0.0, 1.0 - progress)
        if config.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        if config.schedule == "constant":
            return 1.0
        raise ValueError(f"unknown schedule {config.schedule!r}")

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _optimizer(model: torch.nn.Module, config: TrainConfig):
    parameters = [p for p in model.parameters() if p.requires_grad]
    if not parameters:
        raise ValueError("the model has no trainable parameters")
    if config.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    raise ValueError(f"unknown optimizer {config.optimizer!r}")


def _save_resume_state(path: Path, model, optimizer, scheduler, progress: dict) -> None:
    """Optimiser state as safetensors + JSON (no pickle), so resuming never unpickles anything.

    Only what training changes is kept (trainable parameters and buffers): frozen pretrained
    towers are rebuilt with the model, so each epoch does not rewrite ~90 MB of MiniLM.
    """
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    tensors = {
        f"model/{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k not in frozen
    }
    tensors |= optimizer_state_tensors(optimizer, prefix="optim/")
    save_file(tensors, str(path / "resume.safetensors"))
    param_groups = optimizer.state_dict()["param_groups"]
    meta = {"param_groups": param_groups, "scheduler": scheduler.state_dict(), "progress": progress}
    (path / "resume.json").write_text(json.dumps(meta))


def _load_resume_state(path: Path, model, optimizer, scheduler) -> dict:
    tensors = load_file(str(path / "resume.safetensors"))
    meta = json.loads((path / "resume.json").read_text())
    saved = {k[6:]: v for k, v in tensors.items() if k.startswith("model/")}
    _, unexpected = model.load_state_dict(saved, strict=False)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    if unexpected or not trainable <= set(saved):
        raise ValueError("the resume state does not belong to this model")
    load_optimizer_state_tensors(optimizer, tensors, meta["param_groups"], prefix="optim/")
    scheduler.load_state_dict(meta["scheduler"])
    return meta["progress"]


def _batch_losses(model, batch) -> dict[str, torch.Tensor]:
    losses = model(batch)  # forward() is training_loss(): DDP needs the call to go through the wrapper
    if "loss" not in losses:
        raise KeyError(f"{type(model).__name__}.training_loss must return a 'loss' term")
    return losses


@torch.no_grad()
def validation_loss(model, loader) -> dict[str, float]:
    model.eval()
    totals: dict[str, float] = {}
    count = 0
    for batch in loader:
        for name, value in _batch_losses(model, batch).items():
            totals[name] = totals.get(name, 0.0) + float(value)
        count += 1
    model.train()
    return {name: value / max(count, 1) for name, value in totals.items()}


def fit(
    model: Trainable,
    train_items,
    validation_items,
    config: TrainConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
):
    """Train ``model`` and keep its best (lowest validation loss) weights in ``out_dir``.

    Returns the epoch log. ``model.save_pretrained(out_dir)`` is called whenever validation
    improves; ``out_dir/train_log.jsonl`` gets one line per epoch; the resume state lives in
    ``out_dir/last/`` and is removed when training ends.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    set_seed(config.seed)
    accelerator = Accelerator(mixed_precision=config.mixed_precision)
    loader_seed = torch.Generator().manual_seed(config.seed)
    train_loader = DataLoader(
        train_items,
        batch_size=config.batch_size,
        shuffle=True,
        # A model may augment its training batches; each item takes one of its captions per step.
        collate_fn=CaptionSampler(train_collate(model), config.seed),
        generator=loader_seed,
        drop_last=len(train_items) > config.batch_size,
    )
    validation_loader = DataLoader(validation_items, batch_size=config.batch_size, collate_fn=model.collate)
    optimizer = _optimizer(model, config)
    steps_per_epoch = len(train_loader)
    total_steps = config.max_steps or steps_per_epoch * config.epochs
    scheduler = _scheduler(optimizer, config, total_steps)
    progress = {"epoch": 0, "step": 0, "best": float("inf"), "bad_epochs": 0, "elapsed_s": 0.0}
    resume_dir = out_dir / "last"
    log_path = out_dir / "train_log.jsonl"
    if resume and (resume_dir / "resume.json").is_file():
        progress = _load_resume_state(resume_dir, model, optimizer, scheduler)
        progress.setdefault("elapsed_s", logged_train_time(log_path))  # a state saved before it was kept
        accelerator.print(f"resumed at epoch {progress['epoch']} step {progress['step']}")
    model, optimizer, train_loader, validation_loader, scheduler = accelerator.prepare(
        model, optimizer, train_loader, validation_loader, scheduler
    )
    raw_model = accelerator.unwrap_model(model)
    log = []
    model.train()
    started, earlier_s = time.time(), progress["elapsed_s"]

    def elapsed() -> float:
        """Seconds spent training this model, over every process that trained it (a resumed run's budget,
        log and training time count the epochs trained before the resume)."""
        return earlier_s + time.time() - started

    stopped_by = f"the {config.epochs}-epoch schedule"
    for epoch in range(progress["epoch"], config.epochs):
        if hasattr(raw_model, "on_epoch_start"):
            raw_model.on_epoch_start(epoch, train_items)
        bar = tqdm(
            train_loader, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not accelerator.is_main_process
        )
        epoch_totals: dict[str, float] = {}
        epoch_counts: dict[str, int] = {}  # per term: a diagnostic term may come on some batches only
        for batch in bar:
            losses = _batch_losses(model, batch)
            accelerator.backward(losses["loss"])
            if config.grad_clip:
                accelerator.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            progress["step"] += 1
            for name, value in losses.items():
                epoch_totals[name] = epoch_totals.get(name, 0.0) + float(value.detach())
                epoch_counts[name] = epoch_counts.get(name, 0) + 1
            bar.set_postfix(loss=f"{float(losses['loss'].detach()):.3f}")
            if config.max_steps and progress["step"] >= config.max_steps:
                break
            if config.max_minutes and elapsed() > 60 * config.max_minutes:
                break  # checked every step: on a loaded machine one epoch can outlast the whole budget
        validation = validation_loss(raw_model, validation_loader)
        entry = {
            "epoch": epoch + 1,
            "step": progress["step"],
            "train": {k: v / epoch_counts[k] for k, v in epoch_totals.items()},
            "validation": validation,
            "lr": scheduler.get_last_lr()[0],
            "elapsed_s": round(elapsed(), 1),
        }
        log.append(entry)
        if accelerator.is_main_process:
            with log_path.open("a") as handle:
                handle.write(json.dumps(entry) + "\n")
            accelerator.print(
                f"epoch {epoch + 1}: train {entry['train']['loss']:.4f} validation {validation['loss']:.4f}"
            )
        progress["epoch"], progress["elapsed_s"] = epoch + 1, elapsed()
        if validation["loss"] < progress["best"]:
            progress["best"] = validation["loss"]
            progress["bad_epochs"] = 0
            if accelerator.is_main_process:
                raw_model.save_pretrained(out_dir)
        else:
            progress["bad_epochs"] += 1
        if accelerator.is_main_process:
            resume_dir.mkdir(exist_ok=True)
            _save_resume_state(resume_dir, raw_model, optimizer, scheduler, progress)
        if progress["bad_epochs"] >= config.patience:
            stopped_by = f"early stopping (no validation improvement for {config.patience} epochs)"
            accelerator.print(f"early stop: no validation improvement for {config.patience} epochs")
            break
        if config.max_steps and progress["step"] >= config.max_steps:
            stopped_by = f"max_steps={config.max_steps}"
            break
        if config.max_minutes and elapsed() > 60 * config.max_minutes:
            stopped_by = f"the {config.max_minutes:g}-minute budget"
            accelerator.print(f"stopping: the {config.max_minutes}-minute budget is spent")
            break
    for name in ("resume.safetensors", "resume.json"):
        (resume_dir / name).unlink(missing_ok=True)
    if resume_dir.is_dir():
        resume_dir.rmdir()
    summary = {
        "config": asdict(config),
        "epochs_run": progress["epoch"],
        "best_validation_loss": progress["best"],
        "stopped_by": stopped_by,
    }
    summary["train_time_s"] = round(elapsed(), 1)
    summary["train_time_before_resume_s"] = round(earlier_s, 1)
    summary["train_samples_per_s"] = round(progress["step"] * config.batch_size / max(1e-9, elapsed()), 2)
    return log, summary


def logged_train_time(log_path: Path) -> float:
    """The training time a ``train_log.jsonl`` records. Logs written before the time was carried across a
    resume restart ``elapsed_s`` from zero in each process: each such segment's last value counts. A new
    segment shows as a step down, or as an epoch that took under half the typical epoch's time (a process
    resumed after one epoch counts about one epoch again: 1665 s, then 1672 s). A last epoch cut short by
    ``train.max_minutes`` reads the same and is counted twice; only resume states saved before the time
    was kept (corpus-v2 runs begun before 2026-12-04) need this reading."""
    if not log_path.is_file():
        return 0.0
    values = [
        json.loads(line).get("elapsed_s", 0.0) for line in log_path.read_text().splitlines() if line.strip()
    ]
    steps = [b - a for a, b in zip([0.0, *values], values)]
    typical = (
        float(np.median([step for step in steps if step > 0])) if any(step > 0 for step in steps) else 0.0
    )
    total = 0.0
    for previous, step in zip([0.0, *values], steps):
        if step < 0.5 * typical:  # a new process started counting from zero
            total += previous
    return total + (values[-1] if values else 0.0)
