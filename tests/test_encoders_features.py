"""Embedded audio features (musicnn + key + tempo) and the musical feature blocks."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musiccap.encoders.embedded import AudioFeatures, EmbeddedAudioEncoder
from musiccap.encoders.musical import KEY_NAMES, key_correlations, musical_features
from musiccap.encoders.musicnn import mel_power, resample

FIXTURES = Path(__file__).parent / "fixtures" / "musicnn"
SR = 16000


def tone_clip(freqs, bpm, seconds=10.0, sr=SR):
    """Sustained chord with loud percussive accents at ``bpm``."""
    t = np.arange(int(seconds * sr)) / sr
    chord = sum(np.sin(2 * np.pi * f * t) for f in freqs) / len(freqs)
    clicks = np.zeros_like(t)
    clicks[(np.arange(0, seconds, 60.0 / bpm) * sr).astype(int)] = 1.0
    envelope = 0.3 + np.convolve(clicks, np.exp(-np.arange(1600) / 150.0))[: len(t)]
    return (0.3 * chord * envelope).astype(np.float32)


def test_key_correlations_pick_the_profile_key():
    c_major_scale = np.array([1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1], dtype=float)
    assert KEY_NAMES[int(np.argmax(key_correlations(c_major_scale)))] in ("C major", "A minor")
    a_minor_triad = np.zeros(12)
    a_minor_triad[[9, 0, 4]] = 1.0
    assert KEY_NAMES[int(np.argmax(key_correlations(a_minor_triad)))] == "A minor"
    assert np.allclose(key_correlations(np.ones(12)), 0)  # flat chroma: no key, no NaN


@pytest.mark.parametrize("bpm", (90, 150))
def test_musical_features_hear_mode_and_tempo(bpm):
    a_minor = tone_clip([220.0, 261.63, 329.63], bpm)
    f = musical_features(a_minor, mel_power(a_minor))
    assert f.key_name == "A minor"
    ratio = f.tempo_bpm / bpm
    assert min(abs(ratio - r) for r in (0.5, 1.0, 2.0)) < 0.05  # right up to an octave ...
    assert f.tempo_octaves.argmax() != 0 or ratio < 0.75  # ... and the octave strengths show which
    assert f.chroma.shape == (40, 12) and f.key.shape == (40, 24) and f.tempogram.shape == (40, 24)
    assert np.all(np.diff(f.frame_times) > 0) and 0 < f.frame_times[0] < 0.3 and f.frame_times[-1] < 10
    assert f.seconds > 0


needs_musicnn = pytest.mark.skipif(
    importlib.util.find_spec("musicnn") is None, reason="musicnn wheel not installed"
)


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("MUSICCAP_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield EmbeddedAudioEncoder()
    mp.undo()


@needs_musicnn
def test_embedded_features_contract(encoder):
    samples, rate = sf.read(FIXTURES / "hr3-desert-10s.flac", dtype="float32")
    f = encoder(samples, rate)
    assert f.frames.shape == (40, encoder.frame_dim) and f.frames.dtype == np.float32
    assert f.frame_times.shape == (40,) and np.all(np.diff(f.frame_times) > 0)
    assert f.chunks.shape == (3, encoder.chunk_dim) and f.chunk_times.shape == (3, 2)
    assert f.pooled.shape == (encoder.pooled_dim,)
    assert np.isfinite(f.frames).all() and np.isfinite(f.pooled).all()
    assert len(f.tags) == 50 and all(0 <= p <= 1 for p in f.tags.values())
    # each block is scaled by 1/sqrt(width): no block dominates the frame vector
    norms = [
        np.linalg.norm(f.frames[:, a:b], axis=1).mean()
        for a, b in [(0, 192), (192, 204), (204, 228), (228, 252)]
    ]
    assert max(norms) / min(norms) < 20
    # a 44.1 kHz stereo copy gives nearly the same features
    upsampled = resample(samples, rate, 44100)
    g = encoder(np.stack([upsampled, upsampled], 1), 44100)
    assert np.corrcoef(f.pooled, g.pooled)[0, 1] > 0.99

    restored = AudioFeatures.from_tensors(f.to_tensors())
    assert restored.tags == f.tags and np.array_equal(restored.frames, f.frames)
    short, medium, silent = encoder.batch([samples[:rate], samples[: rate * 5], np.zeros_like(samples)], rate)
    assert short.frames.shape == (4, encoder.frame_dim) and short.chunks.shape == (
        1,
        200,
    )  # repeat-padded patch
    assert medium.frames.shape == (20, encoder.frame_dim) and medium.chunks.shape == (1, 200)
    assert np.isfinite(silent.frames).all() and np.isfinite(silent.pooled).all()


@needs_musicnn
def test_embedded_version_tracks_config():
    from musiccap.encoders.embedded import EmbeddedConfig

    assert EmbeddedAudioEncoder().version == EmbeddedAudioEncoder().version
    assert EmbeddedAudioEncoder(EmbeddedConfig(pool=8)).version != EmbeddedAudioEncoder().version
