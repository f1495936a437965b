"""No file crashes ``load_audio``: damaged WAV, FLAC, OGG and MP3 files raise ``AudioError`` or decode.

The cases come from ``scripts/fuzz_audio.py`` (seeded byte mutations of small valid files the script
makes itself); the script runs more of them.
"""

import io

import numpy as np
import pytest
import soundfile as sf

from musiccap.audio import AudioError, load_audio
from scripts.fuzz_audio import FORMATS, fuzz


def test_three_thousand_damaged_files_raise_only_audio_error():
    report = fuzz(3000, seed=0, files_every=6)
    assert report.failures == [], "\n".join(report.failures[:5])
    formats_seen = {fmt for fmt, _ in report.outcomes}
    assert formats_seen == set(FORMATS)
    # the mutations must break files, or the test proves nothing
    assert all(report.outcomes[(fmt, "AudioError")] > 50 for fmt in FORMATS), report.summary()


def wav_claiming_channels(channels: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.full((22050, 2), 0.1, np.float32), 22050, format="WAV", subtype="PCM_16")
    data = bytearray(buffer.getvalue())
    data[22:24] = channels.to_bytes(2, "little")  # the fmt chunk's channel count
    return bytes(data)


def test_header_claiming_thousands_of_channels_is_a_clean_error(tmp_path):
    # the field report: libsndfile refuses the file, ffmpeg decodes it, and the PCM did not reshape
    path = tmp_path / "damaged.wav"
    path.write_bytes(wav_claiming_channels(15873))
    with pytest.raises(AudioError, match="15873 channels"):
        load_audio(path)
    with pytest.raises(AudioError):
        load_audio(path.read_bytes())


def test_header_rate_outside_the_supported_range_is_refused_before_reading():
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(1000, np.float32), 8000, format="WAV", subtype="PCM_16")
    data = bytearray(buffer.getvalue())
    data[24:28] = (0x7FFFFFFF).to_bytes(4, "little")  # sample rate
    with pytest.raises(AudioError, match="sample rate"):
        load_audio(bytes(data))
