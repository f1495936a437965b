"""Pre-train BLAP's frozen language model on caption text: ``python -m train.blap_lm --out checkpoints/blap_lm``.

No package ships T5 weights, so the embedded profile's stand-in for Flan-T5 is a small T5
(``musiccap.models.blap.build_t5``) trained here, then frozen for both BLAP stages.

Text: the training split's captions (``--corpus``) + MusicCaps' training captions (``--musiccaps``;
the rows with ``is_audioset_eval`` false, so the MusicCaps test captions never leak into the LM).
Tokenizer: a unigram model of that text (``--vocab-size``, caption-sized).

Task, shaped like BLAP's encoder input ``[soft prompt; instruction; </s>] -> caption``: the encoder
reads a corrupted copy of the caption (each token dropped with a rate drawn per example from
U(``--min-noise``, 1); every dropped run becomes one ``<mask>``) followed by the instruction "Generate
an objective music description.", and the decoder writes the whole caption. At rate 1 nothing is
left and the LM learns the caption prior; at lower rates it learns to carry content from the
positions before the instruction into the caption, which is what the soft prompt will use.

Whether it learned to read them is measured at the end (``held_out_loss_by_noise``: the held-out caption
loss with 0, half or all of the caption removed). The first shipped LM (500 steps, ``--min-noise 0.3``)
gained only 0.06 nats from the whole caption, and BLAP's soft prompt went unused; the shipped LM
(2670 steps, ``--min-noise 0``, the pipeline's command) gains 0.26.

Writes ``config.json`` + ``model.safetensors`` (T5), ``tokenizer.json`` and ``pretraining.json``
(text counts, steps, losses, held-out loss, wall time). Budget: ``--max-minutes`` (default 5).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import random
import shutil
import sys
import time
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from musiccap.encoders.caption_lm import (
    EOS,
    MASK,
    PAD,
    SPECIAL_TOKENS,
    TOKENIZER_NAME,
    build_t5,
    load_lm,
    train_caption_tokenizer,
)
from musiccap.models.blap import INSTRUCTION
from musiccap.registry import REPO
from musiccap.training import BUILD_DIR, load_optimizer_state_tensors, optimizer_state_tensors

DEFAULT_MUSICCAPS = REPO.parent / "shared" / "data" / "musiccaps" / "musiccaps-public.csv"
KEEP_EVERY = 200  # steps between kept states of an interrupted pretraining (about 5 min on 2 threads)


class PretrainingProgress:
    """The LM pretraining's state every ``KEEP_EVERY`` steps, in ``folder`` (the output's build folder): the
    LM, the optimiser's moments, the schedule, both random generators and where in which epoch it was.
    Safetensors and JSON only, each file renamed into place whole; reloaded only when made by the same
    command on the same texts (``made_from``), so that the same command started again continues."""

    def __init__(self, folder: Path, made_from: dict):
        self.folder = folder
        self.made_from = made_from
        self.state_file = folder / "pretraining_state.safetensors"
        self.progress_file = folder / "pretraining_progress.json"

    def save(self, lm, optimizer, scheduler, rng: random.Random, progress: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tensors = {
            f"lm/{name}": value.detach().clone() for name, value in lm.state_dict().items()
        }  # clone: T5 ties its embeddings
        tensors |= optimizer_state_tensors(optimizer, prefix="optim/")
        tensors["torch_rng"] = torch.get_rng_state()
        document = {
            "made_from": self.made_from,
            "scheduler": scheduler.state_dict(),
            "rng": json.loads(json.dumps(rng.getstate())),
            **progress,
        }
        # the tensors first: a progress file always names a state that was written whole
        partial = self.state_file.with_suffix(".partial")
        save_file(tensors, str(partial), metadata={"step": str(progress["step"])})
        partial.replace(self.state_file)
        partial = self.progress_file.with_suffix(".partial")
        partial.write_text(json.dumps(document))
        partial.replace(self.progress_file)

    def reload(self, lm, optimizer, scheduler, rng: random.Random) -> dict | None:
        """The kept progress after loading its state, or None when nothing matching is kept."""
        if not (self.state_file.is_file() and self.progress_file.is_file()):
            return None
        document = json.loads(self.progress_file.read_text())
        with safe_open(str(self.state_file), "pt") as file:
            same_step = file.metadata().get("step") == str(document.get("step"))
        if document.get("made_from") != self.made_from or not same_step:
            return None
        tensors = load_file(str(self.state_file))
        lm.load_state_dict({name[3:]: value for name, value in tensors.items() if name.startswith("lm/")})
        load_optimizer_state_tensors(
            optimizer, tensors, optimizer.state_dict()["param_groups"], prefix="optim/"
        )
        scheduler.load_state_dict(document["scheduler"])
        torch.set_rng_state(tensors["torch_rng"])
        version, internal, gauss = document["rng"]
        rng.setstate((version, tuple(internal), gauss))
        return document


def corpus_captions(corpus_dir: str | Path) -> list[str]:
    path = Path(corpus_dir) / "train.jsonl"
    return [json.loads(line)["caption"] for line in path.read_text().splitlines() if line.strip()]


def musiccaps_train_captions(csv_path: str | Path) -> list[str]:
    with open(csv_path, newline="") as handle:
        return [
            row["caption"].strip()
            for row in csv.DictReader(handle)
            if row.get("caption", "").strip() and row.get("is_audioset_eval", "False") != "True"
        ]


def corrupt(ids: list[int], rate: float, rng: random.Random) -> list[int]:
    """Drop each token with probability ``rate``; each run of dropped tokens becomes one ``<mask>``."""
    mask_id = SPECIAL_TOKENS.index(MASK)
    out: list[int] = []
    for token in ids:
        if rng.random() < rate:
            if not out or out[-1] != mask_id:
                out.append(mask_id)
        else:
            out.append(token)
    return out


def example_at(ids: list[int], instruction: list[int], rate: float, rng: random.Random):
    """(encoder ids, labels): the caption with ``rate`` of it dropped + instruction + </s> -> caption + </s>."""
    eos = SPECIAL_TOKENS.index(EOS)
    return corrupt(ids, rate, rng) + instruction + [eos], ids + [eos]


def make_example(ids: list[int], instruction: list[int], min_noise: float, rng: random.Random):
    """A training example: the drop rate is drawn from U(``min_noise``, 1)."""
    return example_at(ids, instruction, rng.uniform(min_noise, 1.0), rng)


def pad(rows: list[list[int]], value: int) -> torch.Tensor:
    out = torch.full((len(rows), max(map(len, rows))), value, dtype=torch.long)
    for index, row in enumerate(rows):
        out[index, : len(row)] = torch.tensor(row)
    return out


def batch_of(examples: list[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
    pad_id = SPECIAL_TOKENS.index(PAD)
    input_ids = pad([source for source, _ in examples], pad_id)
    return {
        "input_ids": input_ids,
        "attention_mask": (input_ids != pad_id).long(),
        "labels": pad([target for _, target in examples], -100),
    }


def held_out_split(
    tokenizer, texts: list[str], held_out: float, rng: random.Random, max_tokens: int = 112
) -> tuple[list[list[int]], list[list[int]]]:
    """(held-out, training) token rows: a shuffled ``held_out`` share of the texts is kept back."""
    encoded = [tokenizer.encode(text).ids[:max_tokens] for text in texts]
    rng.shuffle(encoded)
    n_held = max(1, int(len(encoded) * held_out)) if len(encoded) > 20 else 0
    return encoded[:n_held], encoded[n_held:]


HELD_OUT = 0.05  # share of the texts kept back for the held-out losses
NOISE_PROBES = (0.0, 0.5, 1.0)


def encoder_use(lm, held: list[list[int]], instruction: list[int]) -> dict[str, float]:
    """Held-out caption loss with a fixed share of the caption dropped from the encoder input.

    Does the LM read its encoder? At noise 0 the whole caption is there to copy, at 1 nothing is: an LM
    that reads its encoder scores far lower at 0 than at 1, one that only learned the caption prior
    scores the same. BLAP's soft prompt reaches the frozen LM only through that encoder.
    """
    if not held:
        return {}
    was_training = lm.training
    lm.eval()
    losses = {}
    with torch.no_grad():
        for rate in NOISE_PROBES:
            rng = random.Random(0)
            examples = [example_at(ids, instruction, rate, rng) for ids in held]
            total, tokens = 0.0, 0
            for start in range(0, len(examples), 64):
                batch = batch_of(examples[start : start + 64])
                n_tokens = int((batch["labels"] != -100).sum())
                total += float(lm(**batch).loss) * n_tokens
                tokens += n_tokens
            losses[f"{rate:g}"] = total / tokens
    lm.train(was_training)
    return losses


def pretrain(
    lm,
    tokenizer,
    texts: list[str],
    *,
    max_minutes: float,
    max_steps: int = 0,
    batch_size: int = 32,
    lr: float = 1e-3,
    min_noise: float = 0.3,
    max_tokens: int = 112,  # training captions run to ~120 caption-BPE tokens; BLAP stage 2 cuts at 112
    held_out: float = HELD_OUT,
    seed: int = 0,
    log_every: int = 100,
    keep: PretrainingProgress | None = None,
) -> dict:
    """Train ``lm`` in place until the time (or step) budget is spent; returns the training record.
    With ``keep`` its state is kept every ``KEEP_EVERY`` steps and a kept state is continued from (the
    time budget counts the time spent before the interruption)."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    held, train = held_out_split(tokenizer, texts, held_out, rng, max_tokens)
    instruction = tokenizer.encode(INSTRUCTION).ids
    held_batches = [
        batch_of(
            [
                make_example(ids, instruction, min_noise, random.Random(index))
                for index, ids in enumerate(chunk)
            ]
        )
        for chunk in (held[i : i + 64] for i in range(0, len(held), 64))
    ]

    def held_out_loss() -> float | None:
        if not held_batches:
            return None
        lm.eval()
        with torch.no_grad():
            value = sum(float(lm(**batch).loss) for batch in held_batches) / len(held_batches)
        lm.train()
        return value

    optimizer = torch.optim.AdamW(lm.parameters(), lr=lr, weight_decay=0.01)
    warmup = min(200, max_steps // 10) if max_steps else 200
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))
    kept = keep.reload(lm, optimizer, scheduler, rng) if keep is not None else None
    if kept is None:
        losses: list[float] = []
        step, epoch, order, position, spent_before = 0, 0, None, 0, 0.0
        initial = held_out_loss()
    else:
        losses, step, epoch, order, position = (
            kept[k] for k in ("losses", "step", "epoch", "order", "position")
        )
        spent_before, initial = kept["train_time_s"], kept["held_out_loss_initial"]
        print(f"continuing the kept pretraining at step {step} (epoch {epoch})", flush=True)
    started = time.time() - spent_before
    lm.train()
    while True:
        if order is None:
            order = list(range(len(train)))
            rng.shuffle(order)
            position = 0
        for start in range(position, len(order), batch_size):
            batch = batch_of(
                [
                    make_example(train[i], instruction, min_noise, rng)
                    for i in order[start : start + batch_size]
                ]
            )
            loss = lm(**batch).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(lm.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            step += 1
            if log_every and step % log_every == 0:
                recent = sum(losses[-log_every:]) / log_every
                print(
                    f"step {step} epoch {epoch} loss {recent:.3f} ({time.time() - started:.0f} s)", flush=True
                )
            if keep is not None and step % KEEP_EVERY == 0:
                progress = {"losses": losses, "step": step, "epoch": epoch, "order": order}
                progress |= {"position": start + batch_size, "train_time_s": time.time() - started}
                keep.save(lm, optimizer, scheduler, rng, progress | {"held_out_loss_initial": initial})
            out_of_time = max_minutes and time.time() - started > 60 * max_minutes
            if out_of_time or (max_steps and step >= max_steps):
                lm.eval()
                return {
                    "steps": step,
                    "epochs": epoch + start / max(len(order), 1),
                    "n_train_texts": len(train),
                    "n_held_out_texts": len(held),
                    "first_losses": losses[:10],
                    "last_loss_mean": sum(losses[-50:]) / len(losses[-50:]),
                    "held_out_loss_initial": initial,
                    "held_out_loss": held_out_loss(),
                    "held_out_loss_by_noise": encoder_use(lm, held, instruction),
                    "train_time_s": round(time.time() - started, 1),
                    "step_time_s": round((time.time() - started) / step, 4),
                }
        epoch += 1
        order = None


def diagnose(folder: Path, texts: list[str], seed: int) -> int:
    """``held_out_loss_by_noise`` of a saved LM on the held-out texts its own pre-training kept back."""
    lm, tokenizer = load_lm(folder)
    held, _ = held_out_split(tokenizer, texts, HELD_OUT, random.Random(seed))
    losses = encoder_use(lm, held, tokenizer.encode(INSTRUCTION).ids)
    record_path = folder / "pretraining.json"
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    record["held_out_loss_by_noise"] = losses
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(losses, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.blap_lm", description=__doc__)
    parser.add_argument("--out", required=True, help="LM folder, e.g. checkpoints/blap_lm")
    parser.add_argument(
        "--corpus", default=str(REPO / "data" / "corpus"), help="synthetic corpus (train.jsonl)"
    )
    parser.add_argument(
        "--musiccaps", default=str(DEFAULT_MUSICCAPS), help="musiccaps-public.csv ('' to skip)"
    )
    parser.add_argument("--vocab-size", type=int, default=2000)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--d-ff", type=int, default=512)
    parser.add_argument("--layers", type=int, default=2, help="encoder layers = decoder layers")
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--min-noise", type=float, default=0.3)
    parser.add_argument("--max-minutes", type=float, default=5.0, help="wall-clock budget; 0: none")
    parser.add_argument("--max-steps", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--diagnose",
        action="store_true",
        help="measure the LM already in --out (same texts and seed) instead of training one: "
        "adds held_out_loss_by_noise to its pretraining.json",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    texts, sources = [], {}
    if args.corpus and (Path(args.corpus) / "train.jsonl").is_file():
        sources["corpus_train"] = len(found := corpus_captions(args.corpus))
        texts += found
    if args.musiccaps and Path(args.musiccaps).is_file():
        sources["musiccaps_train"] = len(found := musiccaps_train_captions(args.musiccaps))
        texts += found
    if not texts:
        raise SystemExit("no caption text: pass --corpus DIR (with train.jsonl) and/or --musiccaps CSV")

    if args.diagnose:
        return diagnose(Path(args.out), texts, args.seed)
    tokenizer = train_caption_tokenizer(texts, args.vocab_size)
    torch.manual_seed(args.seed)
    lm = build_t5(tokenizer.get_vocab_size(), args.d_model, args.d_ff, args.layers, args.heads, args.dropout)
    out = Path(args.out)
    # The same command started again continues from the kept state (the pipeline reruns a cut-off step).
    made_from = {"args": vars(args), "texts": hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]}
    keep = PretrainingProgress(out / BUILD_DIR, made_from)
    record = pretrain(
        lm,
        tokenizer,
        texts,
        max_minutes=args.max_minutes,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        lr=args.lr,
        min_noise=args.min_noise,
        seed=args.seed,
        keep=keep,
    )
    out.mkdir(parents=True, exist_ok=True)
    lm.save_pretrained(str(out))
    shutil.rmtree(out / BUILD_DIR, ignore_errors=True)  # the LM folder ships; the kept state does not
    tokenizer.save(str(out / TOKENIZER_NAME))
    record = {"sources": sources, "vocab_size": tokenizer.get_vocab_size(), "args": vars(args), **record}
    (out / "pretraining.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: v for k, v in record.items() if k != "args"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
