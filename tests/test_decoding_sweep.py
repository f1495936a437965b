"""The decoding sweep (train/diagnostics/decoding_sweep.py) on a tiny MusCaps checkpoint and a tiny corpus of
tones: one row per setting, scored by the listening table's reader, and the splits it refuses."""

import json

import pytest

from musiccap.metrics.attributes import read_caption
from musiccap.metrics.listening import ATTRIBUTES
from tests.test_listening import N_BANDS, tiny_tone_muscaps, write_tone_corpus
from tests.toy import save_tiny_clap
from train.data import load_items
from train.diagnostics import decoding_sweep
from train.listening import attribute_scores


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Tones of the four toy kinds, as in tests/test_listening.py: 16 train and 6 validation clips."""
    return write_tone_corpus(tmp_path_factory.mktemp("sweep_corpus"), {"train": 16, "validation": 6})


@pytest.fixture
def checkpoint(corpus, tmp_path, monkeypatch):
    """An untrained tiny MusCaps over the tone features, saved as a checkpoint."""
    tiny_tone_muscaps(corpus, monkeypatch, tmp_path / "cache").save_pretrained(tmp_path / "tiny_muscaps")
    return tmp_path / "tiny_muscaps"


def test_two_settings_each_get_a_row_of_listening_scores_cider_and_length(
    corpus, checkpoint, tmp_path, capsys
):
    clap = save_tiny_clap(tmp_path / "clap", frame_dim=N_BANDS, pooled_dim=N_BANDS)
    record = tmp_path / "sweeps.json"
    record.write_text(json.dumps({"older": {"n": 1}}))
    argv = [str(checkpoint), "--corpus", str(corpus), "--clap", str(clap), "--limit", "6"]
    argv += ["--grid", "max_new_tokens=2,7", "--record", str(record), "--as", "tiny"]
    assert decoding_sweep.main(argv) == 0

    table = capsys.readouterr().out
    assert "| floor (fixed caption) |" in table
    assert "| max_new_tokens=2 |" in table and "| max_new_tokens=7 |" in table
    document = json.loads(record.read_text())
    assert document["older"] == {"n": 1}  # other records are kept
    result = document["tiny"]
    assert result["split"] == "validation" and result["n"] == 6
    short, long = result["settings"]
    assert short["overrides"] == {"max_new_tokens": 2} and long["overrides"] == {"max_new_tokens": 7}
    assert short["words_mean"] <= 2 < long["words_mean"] <= 7  # the override reached the decoder
    for row in (short, long):
        assert set(row["listening"]) == set(ATTRIBUTES)
        assert all(0.0 <= value <= 1.0 for value in row["listening"].values())
        assert row["cider_d"] >= 0 and row["s_per_clip"] > 0 and -1 <= row["clap_at"] <= 1
        assert len(row["samples"]) == decoding_sweep.SAMPLES
    # the floor is the listening table's: "slow" is half of train and of these clips
    assert result["floor"]["tempo"] == pytest.approx(0.5)


def test_scores_are_the_listening_tables_on_the_captions(corpus, checkpoint):
    n = decoding_sweep.SAMPLES  # every caption is a sample
    row = decoding_sweep.sweep(checkpoint, corpus, [{"num_beams": 2}], limit=n)["settings"][0]
    captions = [sample["caption"] for sample in row["samples"]]
    truths = [item.attributes for item in load_items(corpus, "validation", limit=n)]
    assert len(captions) == n
    assert row["listening"] == attribute_scores([read_caption(c) for c in captions], truths)


def test_grid_is_every_combination_in_order():
    settings = decoding_sweep.grid_settings(["num_beams=1,3", "length_penalty=0.0,1.0"])
    assert settings == [
        {"num_beams": 1, "length_penalty": 0.0},
        {"num_beams": 1, "length_penalty": 1.0},
        {"num_beams": 3, "length_penalty": 0.0},
        {"num_beams": 3, "length_penalty": 1.0},
    ]
    with pytest.raises(ValueError, match="key=v1,v2"):
        decoding_sweep.grid_settings(["num_beams"])


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--split", "test", "--grid", "num_beams=1"], "only reports"),
        (["--split", "unseen", "--grid", "num_beams=1"], "only reports"),
        (["--grid", "num_beam=1,3"], "not DecodingConfig fields: num_beam"),
        (["--grid", "num_beams=0,3"], "num_beams must be at least 1"),
        (["--try", "num_beams=4 length_penalty=1.0"], "one key=value per argument"),
        (["--try", "do_sample=true seed=1"], "one key=value per argument"),  # once a truthy string
        ([], "no settings"),
    ],
)
def test_refuses_reporting_splits_and_bad_settings_before_captioning(extra, message, capsys):
    with pytest.raises(SystemExit):
        decoding_sweep.main(["no-such-checkpoint", "--corpus", "no-such-corpus", *extra])
    assert message in capsys.readouterr().err
