"""``python -m train.diagnostics.latency_against_served``: a staged captioner timed against the served one it
would replace, interleaved on one window; a captioner only one folder holds is named and left out."""

from __future__ import annotations

import json

from tests.test_listening import tiny_tone_muscaps, write_tone_corpus
from train.diagnostics import latency_against_served


def test_a_staged_captioner_is_timed_against_the_served_one(tmp_path, monkeypatch, capsys):
    (tmp_path / "corpus").mkdir()
    corpus = write_tone_corpus(tmp_path / "corpus", {"train": 8})
    served, staged = tmp_path / "served", tmp_path / "staged"
    tiny_tone_muscaps(corpus, monkeypatch, tmp_path / "cache").save_pretrained(served / "muscaps")
    wider = tiny_tone_muscaps(corpus, monkeypatch, tmp_path / "cache", hidden_dim=32)
    wider.save_pretrained(staged / "muscaps")
    clip = next((corpus / "audio").glob("*.wav"))

    argv = [str(staged), "--served", str(served), "--models", "muscaps", "alcap", "--clip", str(clip)]
    assert latency_against_served.main([*argv, "--runs", "3", "--json"]) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert "alcap: not in both folders" in err and list(report["models"]) == ["muscaps"]
    timed = report["models"]["muscaps"]
    assert timed["served"]["runs"] == timed["staged"]["runs"] == 3
    assert timed["served"]["median"] > 0 and timed["staged"]["median"] > 0
    assert timed["ratio"] == round(timed["staged"]["median"] / timed["served"]["median"], 3)
    assert timed["captions"]["served"] and timed["captions"]["staged"]

    assert latency_against_served.main([*argv, "--runs", "2"]) == 0
    assert "| muscaps |" in capsys.readouterr().out
