"""The app's own analysis (musiccap/analysis.py): tempo, key and mode on synthetic signals, the fact
check on hand-written captions, and the ``musiccap analyze`` contract."""

import json

import numpy as np
import pytest
import soundfile as sf

from musiccap.analysis import (
    KEYS,
    OCTAVE_FACTORS,
    PROBES,
    Analysis,
    Probes,
    dsp_features,
    facts,
    grounding,
    rule_key_scores,
    rule_tempo,
)
from musiccap.attributes import FAMILIES, TEMPO_CLASSES
from musiccap.cli import main

RATE = 22050


def click_track(bpm: float, seconds: float = 10.0) -> np.ndarray:
    y = np.zeros(int(RATE * seconds), dtype=np.float32)
    t = np.arange(int(0.02 * RATE)) / RATE
    click = np.sin(2 * np.pi * 1000 * t) * np.exp(-200 * t)
    for start in np.arange(0.0, seconds - 0.05, 60.0 / bpm):
        n = int(start * RATE)
        y[n : n + len(click)] += click
    return y


def chord_progression(
    chords: list[list[int]], seconds_per_chord: float = 1.25, repeats: int = 2
) -> np.ndarray:
    """Triads (MIDI notes) as harmonic tones, with the root an octave down as a bass line."""
    t = np.arange(int(RATE * seconds_per_chord)) / RATE
    envelope = np.minimum(1.0, 20 * t) * np.exp(-1.5 * t)
    parts = []
    for chord in chords * repeats:
        tone = np.zeros_like(t)
        for note in chord + [chord[0] - 12]:
            f = 440.0 * 2 ** ((note - 69) / 12)
            tone += sum(np.sin(2 * np.pi * h * f * t) / h for h in (1, 2, 3))
        parts.append(tone * envelope)
    y = np.concatenate(parts)
    return (0.2 * y / np.abs(y).max()).astype(np.float32)


C_MAJOR = [[60, 64, 67], [65, 69, 72], [67, 71, 74], [60, 64, 67]]  # I IV V I
A_MINOR = [[57, 60, 64], [62, 65, 69], [64, 68, 71], [57, 60, 64]]  # i iv V i (harmonic minor's E major)


@pytest.mark.parametrize("bpm", [60, 75, 90, 120, 150, 180])
def test_a_click_track_gives_its_tempo(bpm):
    dsp = dsp_features(click_track(bpm), RATE)
    assert abs(rule_tempo(dsp) / bpm - 1) <= 0.04


@pytest.mark.parametrize("bpm", [90, 180])
def test_half_and_double_tempo_are_candidates_and_the_stronger_one_wins(bpm):
    """Clicks at 180 BPM are also a 90 BPM pulse (every second click): the octave is an explicit choice
    between candidates, and the pulse whose every beat sounds has the higher salience."""
    dsp = dsp_features(click_track(bpm), RATE)
    candidates = dsp.candidates
    for factor in (0.5, 2.0):
        assert np.abs(candidates / (bpm * factor) - 1).min() <= 0.04 or bpm * factor > 320
    true = int(np.abs(candidates / bpm - 1).argmin())
    half = int(np.abs(candidates / (bpm / 2) - 1).argmin())
    assert dsp.salience[true] > dsp.salience[half]
    assert len(candidates) == len(OCTAVE_FACTORS)


@pytest.mark.parametrize(("chords", "key"), [(C_MAJOR, "C major"), (A_MINOR, "A minor")])
def test_a_triad_progression_gives_its_key_and_mode(chords, key):
    dsp = dsp_features(chord_progression(chords), RATE)
    assert KEYS[int(np.argmax(rule_key_scores(dsp)))] == key
    if PROBES.is_file():  # the learned profiles agree
        probabilities = Probes.load().key(dsp)
        assert KEYS[int(np.argmax(probabilities))] == key


def test_dsp_features_round_trip_through_a_vector():
    dsp = dsp_features(chord_progression(C_MAJOR), RATE)
    again = type(dsp).from_vector(dsp.to_vector())
    np.testing.assert_allclose(again.tonic_rotations(), dsp.tonic_rotations(), rtol=1e-6)
    np.testing.assert_allclose(again.candidates, dsp.candidates, rtol=1e-6)


def heard(tempo="slow", mode="minor", drums=0.9, families=("piano", "bass", "drums")) -> Analysis:
    return Analysis(
        window=(0.0, 10.0), tempo_bpm=72.0, tempo_class=tempo, key=f"A {mode}", mode=mode, drums=drums,
        families={f: (0.9 if f in families else 0.1) for f in FAMILIES}, heard=list(families),
        tags={"piano": 0.5}, confidence={"tempo": 0.8, "key": 0.6, "mode": 0.9},
    )  # fmt: skip


def test_facts_of_a_caption_that_is_right():
    checked = facts("A slow, sad piano piece in a minor key with a bass guitar and soft drums.", heard())
    assert checked["tempo"] == {"said": "slow", "heard": "slow", "agree": True}
    assert checked["mode"] == {"said": "minor", "heard": "minor", "agree": True}
    assert checked["drums"] == {"said": True, "heard": True, "agree": True}
    assert checked["instruments"] == {"said": ["piano", "bass"], "heard": ["piano", "bass"], "agree": True}
    assert grounding(checked) == 1.0


def test_facts_of_a_caption_that_is_partly_wrong():
    checked = facts("A fast song in a major key. A piano and a trumpet play; there are no drums.", heard())
    assert checked["tempo"]["agree"] is False and checked["mode"]["agree"] is False
    assert checked["drums"] == {"said": False, "heard": True, "agree": False}
    assert checked["instruments"]["said"] == ["piano", "brass"] and checked["instruments"]["agree"] is False
    assert grounding(checked) == pytest.approx(1 / 5)  # tempo, mode, drums, piano (right), brass


def test_what_a_caption_does_not_state_is_not_checked():
    checked = facts("A pleasant tune.", heard())
    assert all(fact["agree"] is None and fact["said"] is None for fact in checked.values())
    assert grounding(checked) is None
    without_probes = heard(drums=None, families=())
    checked = facts("A slow piece with drums and a piano.", without_probes)
    assert checked["tempo"]["agree"] is True and checked["drums"]["agree"] is None
    assert checked["instruments"]["agree"] is None and grounding(checked) == 1.0


def test_the_analyze_command_prints_one_json_object_per_window(tmp_path, capsys):
    path = tmp_path / "clicks.wav"
    sf.write(path, np.concatenate([click_track(120, 10.0), click_track(120, 4.0)]), RATE)
    assert main(["analyze", str(path), "--window", "all", "--json"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["window"][0] for r in records] == [0.0, 10.0]
    for record in records:
        assert {
            "file",
            "window",
            "tempo_bpm",
            "tempo_class",
            "key",
            "mode",
            "drums",
            "families",
            "tags",
        } <= set(record)
        assert record["file"] == str(path) and record["tempo_class"] in TEMPO_CLASSES
        assert record["key"] in KEYS and record["mode"] in ("major", "minor")
        assert set(record["families"]) <= set(FAMILIES)
        probabilities = [record["drums"], *record["families"].values(), *record["tags"].values()]
        assert all(0.0 <= p <= 1.0 for p in probabilities if p is not None)
    # the probe may read bare clicks at another octave (musicnn hears them as "slow"); never off-grid
    assert min(abs(records[0]["tempo_bpm"] / (120 * octave) - 1) for octave in (0.5, 1, 2)) <= 0.04


def test_the_analyze_command_rejects_an_unreadable_file(tmp_path, capsys):
    path = tmp_path / "not-audio.wav"
    path.write_text("hello")
    assert main(["analyze", str(path)]) == 2
    assert "musiccap:" in capsys.readouterr().err


def test_compare_checks_every_caption_against_the_windows_analysis():
    from musiccap.audio import load_audio
    from musiccap.registry import CHECKPOINTS
    from musiccap.studio import CompareOptions, Studio

    if not all((CHECKPOINTS / name / "config.json").is_file() for name in ("clap", "nearest")):
        pytest.skip("no shipped checkpoints")
    studio = Studio(models=["nearest"])
    audio = load_audio(CHECKPOINTS.parent / "examples" / "real-parrotte-desert.ogg")
    *captions, window = studio.compare(audio, CompareOptions("first"))
    assert window.analysis is not None and window.analysis.tempo_class in TEMPO_CLASSES
    (caption,) = captions
    assert caption.facts == facts(caption.result.text, window.analysis)
    assert set(caption.facts) == {"tempo", "mode", "drums", "instruments"}
    assert caption.grounding == grounding(caption.facts)


def test_caption_json_rows_carry_the_fact_check(capsys):
    from musiccap.registry import CHECKPOINTS

    if not all((CHECKPOINTS / name / "config.json").is_file() for name in ("clap", "nearest")):
        pytest.skip("no shipped checkpoints")
    example = CHECKPOINTS.parent / "examples" / "synthetic-test-00002.flac"
    assert main(["caption", str(example), "--model", "nearest", "--json"]) == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert set(row["facts"]) == {"tempo", "mode", "drums", "instruments"}
    assert all(set(fact) == {"said", "heard", "agree"} for fact in row["facts"].values())
    assert row["grounding"] is None or 0.0 <= row["grounding"] <= 1.0
