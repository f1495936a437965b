"""train.diagnostics.continue_run: a saved tiny MusCaps trained further at a constant learning rate, into
another folder, with the run's own train settings."""

import json

import pytest
import torch

from musiccap.models.base import load_captioner
from tests.test_listening import tiny_tone_muscaps, write_tone_corpus
from train.diagnostics import continue_run


@pytest.fixture
def run(tmp_path, monkeypatch):
    """(a tone corpus, a tiny MusCaps saved with a training.json as python -m train leaves it)"""
    (tmp_path / "corpus").mkdir()
    corpus = write_tone_corpus(tmp_path / "corpus", {"train": 12, "validation": 4})
    model = tiny_tone_muscaps(corpus, monkeypatch, tmp_path / "cache")
    model.save_pretrained(tmp_path / "run")
    train = {
        "epochs": 4,
        "batch_size": 4,
        "lr": 1e-3,
        "schedule": "linear",
        "grad_clip": 0.0,
        "max_minutes": 30,
    }
    (tmp_path / "run" / "training.json").write_text(json.dumps({"config": {"train": train}}))
    return corpus, tmp_path / "run"


def test_continues_at_a_constant_rate_with_the_runs_settings_into_another_folder(run, tmp_path, capsys):
    corpus, checkpoint = run
    config = continue_run.continued_config(checkpoint, epochs=2, lr=5e-4)
    assert (config.epochs, config.lr, config.schedule, config.max_minutes) == (2, 5e-4, "constant", 0)
    assert (config.batch_size, config.grad_clip) == (4, 0.0)  # the run's own

    out = tmp_path / "continued"
    argv = [str(checkpoint), "--corpus", str(corpus), "--out", str(out), "--epochs", "2", "--lr", "5e-4"]
    assert continue_run.main(argv) == 0
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in log] == [1, 2] and {row["lr"] for row in log} == {5e-4}
    before, after = load_captioner(checkpoint).state_dict(), load_captioner(out).state_dict()
    assert any(not torch.equal(before[name], after[name]) for name in before)
    assert json.loads(capsys.readouterr().out.splitlines()[-1])[0]["epoch"] == 1

    with pytest.raises(SystemExit):  # never over the run being continued
        continue_run.main(
            [str(checkpoint), "--corpus", str(corpus), "--out", str(checkpoint), "--lr", "1e-3"]
        )
