import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from musiccap.audio import AudioError, from_array, load_audio, windows


def write(path, samples, rate, subtype="PCM_16"):
    sf.write(path, samples, rate, subtype=subtype)
    return path


def tone(seconds, rate, channels=1, amplitude=0.5):
    t = np.arange(int(seconds * rate)) / rate
    signal = amplitude * np.sin(2 * np.pi * 440 * t)
    return np.stack([signal] * channels, axis=1) if channels > 1 else signal


@pytest.mark.parametrize("fmt,ext", [("WAV", "wav"), ("FLAC", "flac"), ("OGG", "ogg")])
def test_decodes_common_formats_to_mono_float32(tmp_path, fmt, ext):
    path = tmp_path / f"a.{ext}"
    sf.write(path, tone(2.0, 44100, channels=2), 44100, format=fmt)
    audio = load_audio(path, target_rate=16000)
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert audio.sample_rate == 16000 and audio.original_channels == 2
    assert abs(audio.duration_s - 2.0) < 0.01
    assert 0.4 < np.abs(audio.samples).max() <= 1.0


def test_mp3_through_ffmpeg_or_libsndfile(tmp_path):
    wav = write(tmp_path / "a.wav", tone(1.0, 22050), 22050)
    mp3 = tmp_path / "a.mp3"
    made = subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(wav), str(mp3)], capture_output=True)
    if made.returncode != 0:
        pytest.skip("ffmpeg cannot write mp3 here")
    audio = load_audio(mp3)
    assert abs(audio.duration_s - 1.0) < 0.1


@pytest.mark.parametrize(
    "content,message",
    [(b"", "empty"), (b"this is not audio at all, just text\n" * 10, "not a readable audio file")],
)
def test_bad_files_raise_clear_errors(tmp_path, content, message):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioError, match=message):
        load_audio(path)


def test_truncated_wav_is_rejected_or_decoded_without_crash(tmp_path):
    good = write(tmp_path / "good.wav", tone(1.0, 16000), 16000).read_bytes()
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(good[:30] + b"\x00garbage" * 3)
    with pytest.raises(AudioError):
        load_audio(corrupt)


def test_too_long_is_refused_before_decoding(tmp_path):
    path = tmp_path / "long.wav"
    with sf.SoundFile(path, "w", samplerate=8000, channels=1, subtype="PCM_U8") as handle:
        block = np.zeros(8000 * 60, dtype=np.float32)
        for _ in range(11):
            handle.write(block)
    with pytest.raises(AudioError, match="limit"):
        load_audio(path)


def test_nan_channels_and_rates_are_refused():
    with pytest.raises(AudioError, match="NaN"):
        from_array(np.array([0.0, np.nan, 0.1], dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="channels"):
        from_array(np.zeros((100, 9), dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="sample rate"):
        from_array(np.zeros(100, dtype=np.float32), 4000)
    with pytest.raises(AudioError, match="sample rate"):
        from_array(np.zeros(100, dtype=np.float32), 384000)


def test_silence_is_a_warning_not_an_error():
    audio = from_array(np.zeros(16000, dtype=np.float32), 16000)
    assert any("silent" in w for w in audio.warnings)


def test_windows_cover_the_audio_with_correct_times():
    audio = from_array(tone(25.0, 8000).astype(np.float32), 8000)
    first = windows(audio, "first")
    assert len(first) == 1 and first[0].start_s == 0 and first[0].end_s == 10
    middle = windows(audio, "middle")[0]
    assert middle.start_s == pytest.approx(7.5)
    every = windows(audio, "all")
    assert [(w.start_s, w.end_s) for w in every] == [(0, 10), (10, 20), (20, 25)]
    assert all(len(w.samples) == 80000 for w in every)
    assert every[-1].label == "00:20–00:25"
    assert len(windows(audio, "all", hop_s=2.0, max_windows=4)) == 4
    short_tail = from_array(tone(30.4, 8000).astype(np.float32), 8000)  # 0.4 s past the third window
    assert [w.label for w in windows(short_tail, "all")] == ["00:00–00:10", "00:10–00:20", "00:20–00:30"]


@settings(max_examples=40, deadline=None)
@given(
    seconds=st.floats(min_value=0.01, max_value=30.0),
    rate=st.sampled_from([8000, 11025, 16000, 22050, 44100, 48000, 96000]),
    channels=st.integers(min_value=1, max_value=8),
    dtype=st.sampled_from(["int16", "int32", "uint8", "float32", "float64"]),
)
def test_any_valid_signal_gives_float_mono_in_range(seconds, rate, channels, dtype):
    n = max(1, int(seconds * rate))
    rng = np.random.default_rng(n)
    signal = rng.uniform(-0.9, 0.9, size=(n, channels))
    if dtype.startswith("int"):
        signal = (signal * np.iinfo(dtype).max).astype(dtype)
    elif dtype == "uint8":
        signal = ((signal + 1) * 127.5).astype(np.uint8)
    else:
        signal = signal.astype(dtype)
    audio = from_array(signal, rate, target_rate=16000)
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert np.isfinite(audio.samples).all()
    assert abs(len(audio.samples) - round(n * 16000 / rate)) <= 1
    for window in windows(audio, "all"):
        assert len(window.samples) == 160000 and 0 <= window.start_s < window.end_s <= audio.duration_s + 1e-6


def test_cli_exits_2_with_a_message_on_bad_input(tmp_path):
    from musiccap.models.baselines import RandomCaptioner

    RandomCaptioner(["a calm piano piece."]).save_pretrained(tmp_path / "ckpt" / "random")
    two_hours = tmp_path / "two_hours.wav"
    with sf.SoundFile(two_hours, "w", samplerate=8000, channels=1, subtype="PCM_U8") as handle:
        block = np.zeros(8000 * 600, dtype=np.float32)
        for _ in range(12):
            handle.write(block)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(200)))
    text = tmp_path / "notes.wav"
    text.write_text("hello")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    for path in (text, empty, corrupt, two_hours, tmp_path / "missing.wav"):
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "musiccap",
                "caption",
                str(path),
                "--model",
                "random",
                "--checkpoints",
                str(tmp_path / "ckpt"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 2, run.stderr
        assert "Traceback" not in run.stderr and "musiccap:" in run.stderr
