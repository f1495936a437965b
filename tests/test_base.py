"""The captioner interface, checkpoints and the shared training loop on a minimal real model."""

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from musiccap.audio import from_array, windows
from musiccap.clip import AUDIO_FEATURES, CLAP_AUDIO
from musiccap.models.base import (
    CaptionResult,
    Clip,
    NeuralCaptioner,
    load_captioner,
    register,
    registry,
)
from musiccap.models.baselines import RandomCaptioner
from train.trainer import TrainConfig, _optimizer, _save_resume_state, _scheduler, fit


def test_random_baseline_is_reproducible_and_round_trips(tmp_path):
    captions = [f"caption number {i}." for i in range(50)]
    captioner = RandomCaptioner(captions)
    clips = [
        Clip(w)
        for w in windows(
            from_array(np.random.default_rng(0).normal(0, 0.1, 16000 * 25).astype(np.float32), 16000), "all"
        )
    ]
    first = [captioner.caption(c).text for c in clips]
    assert all(t in captions for t in first) and len(set(first)) > 1
    captioner.save_pretrained(tmp_path / "random")
    again = load_captioner(tmp_path / "random")
    assert [again.caption(c).text for c in clips] == first
    assert again.checkpoint_hash
    record = again.caption(clips[1]).to_json()
    assert record["window"] == [10.0, 20.0] and record["model"] == "random"
    assert "random" in registry()


def test_a_clip_caches_only_declared_feature_names():
    clip = Clip(None, clip_id="a", features={AUDIO_FEATURES: 1})
    assert clip.get(f"{CLAP_AUDIO}:some-clap", lambda c: 2) == 2
    assert clip.get(f"{CLAP_AUDIO}:some-clap", lambda c: 3) == 2  # memoised
    with pytest.raises(KeyError, match="not a declared clip feature"):
        clip.get("my_feature", lambda c: 0)
    with pytest.raises(KeyError, match="not a declared clip feature"):
        Clip(None, features={"x": 0})


@dataclass
class TinyConfig:
    n_features: int = 4
    n_classes: int = 3


@register
class TinyClassifierCaptioner(NeuralCaptioner):
    """Picks one of three fixed captions from a feature vector: the smallest real trainable captioner."""

    name = "tiny-test"
    config_class = TinyConfig
    captions = ("a slow sad piano.", "a fast rock band.", "a calm string quartet.")

    def __init__(self, config):
        super().__init__(config)
        self.linear = torch.nn.Linear(config.n_features, config.n_classes)

    def collate(self, items):
        return {"x": torch.tensor(np.stack([i[0] for i in items])), "y": torch.tensor([i[1] for i in items])}

    def training_loss(self, batch):
        nll = torch.nn.functional.cross_entropy(self.linear(batch["x"]), batch["y"])
        return {"loss": nll, "nll": nll}

    def caption(self, clip, decoding=None):
        index = int(self.linear(torch.tensor(clip.features[AUDIO_FEATURES])).argmax())
        return CaptionResult(model=self.name, text=self.captions[index])


def toy_items(n, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    centres = np.eye(3, 4, dtype=np.float32) * 3
    return [(centres[y] + rng.normal(0, 0.3, 4).astype(np.float32), int(y)) for y in labels]


def test_fit_lowers_the_loss_saves_the_best_and_reloads(tmp_path):
    torch.manual_seed(0)
    model = TinyClassifierCaptioner(TinyConfig())
    config = TrainConfig(epochs=6, batch_size=8, lr=0.05, patience=3, schedule="linear", warmup_steps=2)
    log, summary = fit(model, toy_items(64, 0), toy_items(16, 1), config, tmp_path / "ckpt")
    assert log[-1]["validation"]["loss"] < log[0]["validation"]["loss"]
    lines = (tmp_path / "ckpt" / "train_log.jsonl").read_text().splitlines()
    assert len(lines) == len(log) and json.loads(lines[0])["epoch"] == 1
    assert not (tmp_path / "ckpt" / "last").exists()
    again = load_captioner(tmp_path / "ckpt")
    x, y = toy_items(1, 5)[0]
    assert (
        again.caption(Clip(None, clip_id="a", features={AUDIO_FEATURES: x})).text
        == TinyClassifierCaptioner.captions[y]
    )
    assert summary["epochs_run"] == len(log)


def test_fit_records_what_ended_the_run(tmp_path):
    torch.manual_seed(0)
    model = TinyClassifierCaptioner(TinyConfig())
    _, by_epochs = fit(
        model, toy_items(32, 0), toy_items(8, 1), TrainConfig(epochs=2, batch_size=8), tmp_path / "a"
    )
    _, by_steps = fit(
        model,
        toy_items(32, 0),
        toy_items(8, 1),
        TrainConfig(epochs=5, batch_size=8, max_steps=3),
        tmp_path / "b",
    )
    assert by_epochs["stopped_by"] == "the 2-epoch schedule" and by_epochs["epochs_run"] == 2
    assert by_steps["stopped_by"] == "max_steps=3" and by_steps["epochs_run"] == 1


class SometimesProbedCaptioner(TinyClassifierCaptioner):
    """Adds a diagnostic term (the constant 1.0) on every other training batch only."""

    name = "tiny-test-probed"

    def __init__(self, config):
        super().__init__(config)
        self.batches = 0

    def training_loss(self, batch):
        losses = super().training_loss(batch)
        if self.training:
            self.batches += 1
            if self.batches % 2 == 0:
                losses["probe"] = torch.tensor(1.0)
        return losses


def test_a_term_present_on_some_batches_is_averaged_over_those_batches(tmp_path):
    torch.manual_seed(0)
    model = SometimesProbedCaptioner(TinyConfig())
    log, _ = fit(
        model, toy_items(32, 0), toy_items(8, 1), TrainConfig(epochs=1, batch_size=8), tmp_path / "a"
    )
    assert log[0]["train"]["probe"] == 1.0  # four batches, two probed: not 0.5
    assert "probe" not in log[0]["validation"]


def test_resume_continues_from_the_saved_state(tmp_path):
    torch.manual_seed(0)
    config = TrainConfig(epochs=4, batch_size=8, lr=0.05, patience=10, max_steps=0)
    model = TinyClassifierCaptioner(TinyConfig())
    fit(
        model,
        toy_items(32, 0),
        toy_items(8, 1),
        TrainConfig(**{**config.__dict__, "epochs": 2}),
        tmp_path / "a",
    )
    # a run interrupted after 2 of 4 epochs leaves its state in last/: emulate by re-saving it
    from train.trainer import _load_resume_state, _optimizer, _save_resume_state, _scheduler

    optimizer = _optimizer(model, config)
    scheduler = _scheduler(optimizer, config, 16)
    (tmp_path / "b" / "last").mkdir(parents=True)
    _save_resume_state(
        tmp_path / "b" / "last",
        model,
        optimizer,
        scheduler,
        {"epoch": 2, "step": 8, "best": 9.0, "bad_epochs": 0},
    )
    fresh = TinyClassifierCaptioner(TinyConfig())
    progress = _load_resume_state(
        tmp_path / "b" / "last",
        fresh,
        _optimizer(fresh, config),
        _scheduler(_optimizer(fresh, config), config, 16),
    )
    assert progress["epoch"] == 2
    assert torch.equal(fresh.linear.weight, model.linear.weight)
    log, _ = fit(fresh, toy_items(32, 0), toy_items(8, 1), config, tmp_path / "b", resume=True)
    assert [entry["epoch"] for entry in log] == [3, 4]


@pytest.mark.parametrize(
    "elapsed, total",
    [
        ([600.0, 1200.0, 1800.0], 1800.0),  # one process
        ([400.0, 100.0, 600.0], 1000.0),  # resumed after a cut-off epoch: a step down
        ([1665.4, 1672.5, 3272.4, 4825.9], 6491.3),  # resumed after epoch 1: no step down, a 7 s "epoch"
        ([], 0.0),
    ],
)
def test_the_logged_training_time_sums_the_processes_of_an_old_log(tmp_path, elapsed, total):
    from train.trainer import logged_train_time

    log = tmp_path / "train_log.jsonl"
    log.write_text(
        "".join(json.dumps({"epoch": i + 1, "elapsed_s": e}) + "\n" for i, e in enumerate(elapsed))
    )
    assert logged_train_time(log) == pytest.approx(total)


@pytest.mark.parametrize("state", ["with its time", "saved before the time was kept"])
def test_a_resumed_training_counts_the_time_trained_before_it(tmp_path, state):
    """training.json's training time and the log's elapsed_s cover every process that trained the model,
    not the last one only (an 8-epoch run resumed after epoch 7 once reported its last epoch's 9 minutes)."""
    config = TrainConfig(epochs=3, batch_size=8, patience=10)
    model = TinyClassifierCaptioner(TinyConfig())
    fit(model, toy_items(32, 0), toy_items(8, 1), TrainConfig(epochs=2, batch_size=8), tmp_path / "a")
    out = tmp_path / "b"
    (out / "last").mkdir(parents=True)
    before = 1000.0  # the first two epochs took 1,000 s in an earlier process
    progress = {"epoch": 2, "step": 8, "best": 9.0, "bad_epochs": 0}
    if state == "with its time":
        progress["elapsed_s"] = before
    else:  # the log of those epochs, written by two processes that each counted from zero
        lines = [
            {"epoch": 1, "elapsed_s": 400.0},
            {"epoch": 1, "elapsed_s": 100.0},
            {"epoch": 2, "elapsed_s": 600.0},
        ]
        (out / "train_log.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    optimizer = _optimizer(model, config)
    _save_resume_state(out / "last", model, optimizer, _scheduler(optimizer, config, 12), progress)

    log, summary = fit(
        TinyClassifierCaptioner(TinyConfig()), toy_items(32, 0), toy_items(8, 1), config, out, resume=True
    )
    assert [entry["epoch"] for entry in log] == [3]
    assert before <= log[0]["elapsed_s"] < before + 60
    assert summary["train_time_before_resume_s"] == before
    assert before <= summary["train_time_s"] < before + 60
    # 12 steps of 8 over all of that time
    assert summary["train_samples_per_s"] == pytest.approx(12 * 8 / summary["train_time_s"], abs=0.01)


def test_loading_refuses_weights_that_do_not_fit(tmp_path):
    TinyClassifierCaptioner(TinyConfig()).save_pretrained(tmp_path / "c")
    document = json.loads((tmp_path / "c" / "config.json").read_text())
    document["config"]["n_classes"] = 5
    (tmp_path / "c" / "config.json").write_text(json.dumps(document))
    with pytest.raises(Exception, match="size mismatch|do not fit"):
        load_captioner(tmp_path / "c")
