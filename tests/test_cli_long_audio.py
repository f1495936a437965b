"""musiccap caption --window all: every 10 s window of a long file, windows captioned in batches."""

import json

import numpy as np
import pytest
import soundfile

from musiccap import studio as studio_module
from musiccap.audio import load_audio
from musiccap.cli import main
from musiccap.registry import CHECKPOINTS

EXAMPLE = CHECKPOINTS.parent / "examples" / "real-parrotte-desert.ogg"


@pytest.fixture
def long_track(tmp_path):
    if not all((CHECKPOINTS / name / "config.json").is_file() for name in ("clap", "nearest", "muscaps")):
        pytest.skip("no shipped checkpoints")
    audio = load_audio(EXAMPLE)
    path = tmp_path / "long.wav"
    samples = np.tile(audio.samples, 14)[: int(135 * audio.sample_rate)]  # 2:15, 14 windows, more than 12
    soundfile.write(path, samples, audio.sample_rate)
    return path


def rows(capsys, argv):
    assert main(argv) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_every_window_by_default_in_window_order_as_one_window_at_a_time(long_track, capsys, monkeypatch):
    argv = ["caption", str(long_track), "--window", "all", "--model", "nearest,muscaps", "--json"]
    monkeypatch.setattr(studio_module, "LONG_AUDIO_BATCH", 4)  # 14 windows: batches of 4, 4, 4 and 2
    batched = rows(capsys, argv)
    assert [(row["model"], row["window"][0]) for row in batched] == [
        (model, 10.0 * index) for index in range(14) for model in ("nearest", "muscaps")
    ]
    monkeypatch.setattr(studio_module, "LONG_AUDIO_BATCH", 1)
    alone = rows(capsys, argv)
    assert [row["text"] for row in batched] == [row["text"] for row in alone]
    assert [row["clap_similarity"] for row in batched] == [row["clap_similarity"] for row in alone]


def test_max_windows_still_thins_evenly(long_track, capsys):
    argv = [
        "caption",
        str(long_track),
        "--window",
        "all",
        "--max-windows",
        "3",
        "--model",
        "muscaps",
        "--json",
    ]
    assert [row["window"][0] for row in rows(capsys, argv)] == [0.0, 60.0, 130.0]
