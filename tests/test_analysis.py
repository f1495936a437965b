"""The app's own analysis (musiccap/analysis.py): tempo, key and mode on synthetic signals, the fact
check on hand-written captions, and the ``musiccap analyze`` contract."""

import json

import numpy as np
import pytest
import soundfile as sf

from musiccap.analysis import (
    KEYS,
    MODULATION_HZ,
    N_MELS,
    OCTAVE_FACTORS,
    PROBES,
    TIMBRE_DIM,
    Analysis,
    Probes,
    dsp_features,
    facts,
    grounding,
    mode_inputs,
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
    if PROBES.is_file():  # the learned profiles agree, and so does the mode probe
        probes = Probes.load()
        probabilities = probes.key(dsp)
        assert KEYS[int(np.argmax(probabilities))] == key
        assert (probes.minor(mode_inputs(dsp, probabilities)) > 0.5) == key.endswith("minor")


def test_the_mode_probe_reads_every_key_alike():
    """Its input is rotated to the likeliest relative pair's tonic: a transposed window (chromas and
    key probabilities moved by the same interval) gives the same input."""
    dsp = dsp_features(chord_progression(A_MINOR), RATE)
    probabilities = np.exp(8 * rule_key_scores(dsp))
    probabilities /= probabilities.sum()
    moved = type(dsp).from_vector(dsp.to_vector())
    moved.chroma, moved.bass_chroma = np.roll(dsp.chroma, 5), np.roll(dsp.bass_chroma, 5)
    moved_probabilities = np.concatenate([np.roll(probabilities[:12], 5), np.roll(probabilities[12:], 5)])
    np.testing.assert_allclose(mode_inputs(moved, moved_probabilities), mode_inputs(dsp, probabilities))
    # A minor's relative pair is C major / A minor: rotated to C, A minor's tonic sits at index 9
    inputs = mode_inputs(dsp, probabilities)
    assert int(np.argmax(inputs[36:])) == 9 and len(inputs) == 48


def tone(hz: float, tremolo_hz: float = 0.0, seconds: float = 10.0) -> np.ndarray:
    t = np.arange(int(RATE * seconds)) / RATE
    level = 1.0 - 0.8 * (0.5 + 0.5 * np.sin(2 * np.pi * tremolo_hz * t)) if tremolo_hz else 1.0
    return (0.3 * level * sum(np.sin(2 * np.pi * k * hz * t) / k for k in (1, 2, 3))).astype(np.float32)


def test_timbre_statistics_ignore_the_level_and_hear_a_tremolo():
    steady = dsp_features(tone(440.0), RATE).timbre
    assert steady.shape == (TIMBRE_DIM,) and np.isfinite(steady).all()
    np.testing.assert_allclose(dsp_features(0.1 * tone(440.0), RATE).timbre, steady, atol=0.05)
    # the per-band modulation energies (N_MELS x len(MODULATION_HZ)) follow 10 blocks of N_MELS
    start = 10 * N_MELS
    shaking = dsp_features(tone(440.0, tremolo_hz=6.0), RATE).timbre
    six_hz = list(MODULATION_HZ).index((4.0, 8.0))
    modulation = [
        x[start : start + N_MELS * len(MODULATION_HZ)].reshape(N_MELS, -1) for x in (steady, shaking)
    ]
    assert modulation[1][:, six_hz].max() > modulation[0][:, six_hz].max() + 2.0


def test_ensemble_probes_average_their_members():
    """A probe whose hidden and out tensors stack members answers the mean of their sigmoids; the
    tempo probe (no member axis) reads as before."""
    rng = np.random.default_rng(0)
    n_in, n_hidden, n_labels = 5, 4, len(Probes.LABELS)
    members = [(rng.normal(size=(n_hidden, n_in)), rng.normal(size=n_hidden),
                rng.normal(size=(n_labels, n_hidden)), rng.normal(size=n_labels)) for _ in range(2)]  # fmt: skip
    tensors = {"labels.mean": np.zeros(n_in), "labels.scale": np.ones(n_in),
               "labels.threshold": np.full(n_labels, 0.5)}  # fmt: skip
    for i, name in enumerate(("hidden.weight", "hidden.bias", "out.weight", "out.bias")):
        tensors[f"labels.{name}"] = np.stack([m[i] for m in members])
    x = rng.normal(size=n_in)
    expected = np.mean(
        [1 / (1 + np.exp(-(w2 @ np.maximum(w1 @ x + b1, 0) + b2))) for w1, b1, w2, b2 in members], axis=0
    )
    np.testing.assert_allclose(list(Probes(tensors).labels(x).values()), expected)
    w1, b1, w2, b2 = members[0]
    single = {"tempo.mean": np.zeros(n_in), "tempo.scale": np.ones(n_in), "tempo.hidden.weight": w1,
              "tempo.hidden.bias": b1, "tempo.out.weight": w2, "tempo.out.bias": b2}  # fmt: skip
    logits = Probes(single)._logits("tempo", x)
    np.testing.assert_allclose(logits, w2 @ np.maximum(w1 @ x + b1, 0) + b2)


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
