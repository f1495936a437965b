"""The PyTorch musicnn port against outputs of the original TensorFlow graph (tests/fixtures/musicnn)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musiccap.encoders import musicnn
from musiccap.encoders.tf_checkpoint import load_checkpoint, read_index

FIXTURES = Path(__file__).parent / "fixtures" / "musicnn"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "musicnn-reference"
CLIPS = ("c0000", "hr3-desert-10s")  # a quiet render and a loud real recording (mel power up to 200)

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("musicnn") is None, reason="musicnn wheel not installed"
)


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MUSICCAP_CACHE", str(tmp_path_factory.getbasetemp() / "musiccap-cache"))


def test_tf_checkpoint_reader_reads_the_wheel():
    num_shards, entries = read_index(musicnn.musicnn_package_dir() / "MTT_musicnn" / ".index")
    assert num_shards == 1
    assert entries["conv2d/kernel"].shape == (7, 38, 1, 204)
    tensors = load_checkpoint(f"{musicnn.musicnn_package_dir() / 'MTT_musicnn'}/")
    assert tensors["dense_1/kernel"].shape == (200, 50) and tensors["dense_1/kernel"].dtype == np.float32
    assert np.all(tensors["batch_normalization_10/moving_variance"] > 0)


@pytest.mark.parametrize("model_name", musicnn.MODELS)
@pytest.mark.parametrize("clip", CLIPS)
def test_port_matches_tensorflow(model_name, clip):
    patches = np.load(FIXTURES / f"{clip}.patches.npy")
    reference = np.load(FIXTURES / f"{clip}.{model_name}.tf.npz")
    tagger = musicnn.MusicnnTagger(model_name)
    out = tagger.run_patches(patches)
    logits = (out if tagger.is_vgg else out.logits).numpy()
    np.testing.assert_allclose(1 / (1 + np.exp(-logits)), reference["tags"], atol=1e-4, rtol=0)
    if not tagger.is_vgg:
        np.testing.assert_allclose(logits, reference["logits"], atol=1e-3, rtol=0)
        np.testing.assert_allclose(out.penultimate.numpy(), reference["penultimate"], atol=1e-3, rtol=0)


@pytest.mark.parametrize("clip", CLIPS)
def test_front_end_and_tags_from_audio(clip):
    samples, rate = sf.read(FIXTURES / f"{clip}.flac", dtype="float32")
    frames = musicnn.log_mel(samples, rate)
    patches = musicnn.make_patches(frames, musicnn.patch_starts(len(frames)))
    np.testing.assert_allclose(patches, np.load(FIXTURES / f"{clip}.patches.npy"), atol=1e-4, rtol=0)
    out = musicnn.MusicnnTagger("MTT_musicnn")(samples, rate)
    assert np.isfinite(out.tags).all()
    np.testing.assert_allclose(out.tags, np.load(FIXTURES / f"{clip}.MTT_musicnn.tf.npz")["tags"], atol=1e-4)
    assert out.frontend.shape == (3 * 187, 561) and out.midend.shape == (3 * 187, 192)
    assert out.frame_times[1] == pytest.approx(0.016)
    np.testing.assert_allclose(out.patch_times[1], [187 * 0.016, 374 * 0.016], rtol=1e-6)


def test_loud_clip_stays_finite_where_float16_overflows():
    samples, rate = sf.read(FIXTURES / "hr3-desert-10s.flac", dtype="float32")
    loud = np.clip(samples * 4, -1, 1)
    mel = musicnn.mel_power(loud)
    with np.errstate(over="ignore"):
        assert not np.isfinite(np.log10(10000 * mel.astype(np.float16) + 1)).all()  # musicnn's own code
    out = musicnn.MusicnnTagger("MTT_musicnn")(loud, rate)
    assert np.isfinite(out.tags).all() and np.isfinite(out.penultimate).all()


def test_any_sample_rate_short_clip_and_cover_end():
    samples, rate = sf.read(FIXTURES / "c0000.flac", dtype="float32")
    tagger = musicnn.MusicnnTagger("MTT_musicnn")
    out44 = tagger(musicnn.resample(samples, rate, 44100), 44100)
    np.testing.assert_allclose(out44.tags, tagger(samples, rate).tags, atol=0.02)
    short = tagger(samples[: rate * 2], rate)  # 2 s < one 3 s patch: repeat-padded
    assert short.tags.shape == (1, 50)
    full = tagger(samples, rate, cover_end=True)
    assert len(full.frame_times) == len(musicnn.log_mel(samples, rate)) and full.tags.shape == (3, 50)


def test_top_tags():
    samples, rate = sf.read(FIXTURES / "hr3-desert-10s.flac", dtype="float32")
    tags = musicnn.top_tags(samples, rate, k=5)
    assert len(tags) == 5 and set(tags) <= set(musicnn.MTT_LABELS)
    assert list(tags.values()) == sorted(tags.values(), reverse=True)


@pytest.mark.skipif(not SHARED.exists(), reason="../shared not present")
@pytest.mark.parametrize("clip", ("hr-domina-hunting-10s", "hr-savino-caribbean-10s"))
def test_port_matches_tensorflow_on_shared_clips(clip):
    patches = np.load(SHARED / f"{clip}.patches.npy")
    out = musicnn.MusicnnTagger("MSD_musicnn").run_patches(patches)
    reference = np.load(SHARED / f"{clip}.MSD_musicnn.tf.npz")
    np.testing.assert_allclose(1 / (1 + np.exp(-out.logits.numpy())), reference["tags"], atol=1e-4, rtol=0)
