"""The only way audio enters musiccap: decode, validate, mix to mono, resample, cut 10 s windows.

Every failure a user can cause (a corrupt or empty file, a text file named .wav, an hour-long
upload, NaN samples, an absurd sample rate) raises :class:`AudioError` with a message meant for
that user. Silence is not an error: it is reported in :attr:`Audio.warnings`.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

MIN_SAMPLE_RATE = 8_000
MAX_SAMPLE_RATE = 192_000
MAX_CHANNELS = 8
DEFAULT_MAX_DURATION_S = 600.0
WINDOW_S = 10.0
MIN_TAIL_S = 2.5  # the least audio a last, partial window of "all" must hold
# Peak below this (about -80 dBFS) counts as silence: nothing a model says about it means anything.
SILENCE_PEAK = 1e-4

WindowMode = Literal["first", "middle", "all"]


class AudioError(ValueError):
    """Audio that cannot be used, with a message meant for the person who supplied it."""


@dataclass
class Audio:
    """Float32 mono samples in [-1, 1] at ``sample_rate``, and what was noticed while loading."""

    samples: np.ndarray
    sample_rate: int
    source: str = ""
    original_sample_rate: int = 0
    original_channels: int = 1
    warnings: list[str] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


@dataclass
class Window:
    """A fixed-length excerpt of an :class:`Audio`, zero-padded at the end when the audio is shorter."""

    samples: np.ndarray
    sample_rate: int
    start_s: float
    end_s: float  # end of the real audio inside the window (padding excluded)
    index: int = 0

    @property
    def label(self) -> str:
        return f"{format_time(self.start_s)}–{format_time(self.end_s)}"


def format_time(seconds: float) -> str:
    whole = int(math.floor(seconds + 1e-6))
    return f"{whole // 60:02d}:{whole % 60:02d}"


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Polyphase resampling (exact rational ratio, deterministic)."""
    if from_rate == to_rate:
        return samples.astype(np.float32, copy=False)
    divisor = math.gcd(int(from_rate), int(to_rate))
    out = resample_poly(samples.astype(np.float64), int(to_rate) // divisor, int(from_rate) // divisor)
    return out.astype(np.float32)


def _as_float(samples: np.ndarray) -> np.ndarray:
    """Integer PCM to float in [-1, 1]; float input is kept as it is."""
    if np.issubdtype(samples.dtype, np.integer):
        info = np.iinfo(samples.dtype)
        scale = float(max(abs(info.min), info.max))
        offset = 0.0 if info.min < 0 else (info.max + 1) / 2.0  # unsigned PCM is centred on mid-range
        return ((samples.astype(np.float64) - offset) / scale).astype(np.float32)
    if np.issubdtype(samples.dtype, np.floating):
        return samples.astype(np.float32)
    raise AudioError(f"unsupported sample type {samples.dtype}")


def from_array(
    samples: np.ndarray,
    sample_rate: int,
    *,
    target_rate: int | None = None,
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
    source: str = "array",
    channels_last: bool = True,
) -> Audio:
    """Validate an in-memory signal (e.g. Gradio's ``(rate, array)`` from the microphone)."""
    if not isinstance(sample_rate, int | np.integer) or not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise AudioError(
            f"{source}: sample rate {sample_rate} Hz is outside the supported "
            f"{MIN_SAMPLE_RATE // 1000}–{MAX_SAMPLE_RATE // 1000} kHz"
        )
    samples = np.asarray(samples)
    if samples.ndim == 1:
        samples = samples[:, None]
    elif samples.ndim == 2:
        if not channels_last:
            samples = samples.T
    else:
        raise AudioError(f"{source}: expected a 1-D or 2-D signal, got {samples.ndim} dimensions")
    n_frames, n_channels = samples.shape
    if n_channels > MAX_CHANNELS:
        raise AudioError(f"{source}: {n_channels} channels; at most {MAX_CHANNELS} are supported")
    if n_frames == 0 or n_channels == 0:
        raise AudioError(f"{source}: the audio is empty (zero samples)")
    duration = n_frames / sample_rate
    if duration > max_duration_s:
        raise AudioError(
            f"{source}: the audio is {format_time(duration)} long; the limit is {format_time(max_duration_s)}"
        )
    floats = _as_float(samples)
    if not np.isfinite(floats).all():
        raise AudioError(f"{source}: the audio contains NaN or infinite samples")
    mono = floats.mean(axis=1, dtype=np.float64).astype(np.float32)
    peak = float(np.abs(mono).max())
    warnings = []
    if peak > 1.0:
        # Float files may exceed full scale; scale down rather than let every encoder clip differently.
        mono /= peak
        warnings.append(f"peak level {peak:.2f} is above full scale; the audio was scaled down")
    if peak < SILENCE_PEAK:
        warnings.append("the audio is silent (peak below -80 dBFS); captions will not mean much")
    rate = int(sample_rate)
    if target_rate is not None and target_rate != rate:
        mono = resample(mono, rate, target_rate)
        rate = target_rate
    return Audio(
        samples=mono,
        sample_rate=rate,
        source=source,
        original_sample_rate=int(sample_rate),
        original_channels=n_channels,
        warnings=warnings,
    )


def _decode_with_soundfile(data: bytes | str, max_duration_s: float, source: str):
    with sf.SoundFile(io.BytesIO(data) if isinstance(data, bytes) else data) as handle:
        # checked before reading: a damaged header's rate and frame count decide how much memory read() takes
        if not MIN_SAMPLE_RATE <= handle.samplerate <= MAX_SAMPLE_RATE:
            raise AudioError(
                f"{source}: sample rate {handle.samplerate} Hz is outside the supported "
                f"{MIN_SAMPLE_RATE // 1000}–{MAX_SAMPLE_RATE // 1000} kHz"
            )
        if handle.frames / handle.samplerate > max_duration_s:
            raise AudioError(
                f"{source}: the audio is {format_time(handle.frames / handle.samplerate)} long; "
                f"the limit is {format_time(max_duration_s)}"
            )
        if handle.channels > MAX_CHANNELS:
            raise AudioError(f"{source}: {handle.channels} channels; at most {MAX_CHANNELS} are supported")
        return handle.read(dtype="float32", always_2d=True), handle.samplerate


def _decode_with_audioread(path: str, max_duration_s: float, source: str):
    """Fallback for formats libsndfile does not read (e.g. m4a/aac through ffmpeg via audioread)."""
    import audioread

    try:
        with audioread.audio_open(path) as handle:
            if handle.duration and handle.duration > max_duration_s:
                raise AudioError(
                    f"{source}: the audio is {format_time(handle.duration)} long; "
                    f"the limit is {format_time(max_duration_s)}"
                )
            rate, channels = handle.samplerate, handle.channels
            if not 1 <= channels <= MAX_CHANNELS:  # a damaged header can claim thousands of channels
                raise AudioError(f"{source}: the file claims {channels} channels; it is damaged or not audio")
            pcm = b"".join(handle)
    except AudioError:
        raise
    # audioread's backends fail in many ways on hostile input; all mean "unreadable"
    except Exception as error:
        raise AudioError(f"{source}: not a readable audio file ({error.__class__.__name__})") from error
    frame_bytes = 2 * channels  # audioread always yields 16-bit little-endian PCM
    whole = len(pcm) - len(pcm) % frame_bytes  # a cut-off last frame is dropped, not an error
    return np.frombuffer(pcm[:whole], dtype="<i2").reshape(-1, channels), rate


def load_audio(
    path: str | os.PathLike | bytes,
    *,
    target_rate: int | None = None,
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
) -> Audio:
    """Decode a file (wav, flac, ogg, mp3, and what ffmpeg reads) or its bytes to validated mono float32."""
    source = "uploaded audio" if isinstance(path, bytes) else Path(path).name
    if not isinstance(path, bytes):
        if not Path(path).is_file():
            raise AudioError(f"{source}: no such file")
        if Path(path).stat().st_size == 0:
            raise AudioError(f"{source}: the file is empty (0 bytes)")
    elif len(path) == 0:
        raise AudioError(f"{source}: the file is empty (0 bytes)")
    try:
        samples, rate = _decode_with_soundfile(
            path if isinstance(path, bytes) else str(path), max_duration_s, source
        )
    except AudioError:
        raise
    # libsndfile on a damaged file: any failure inside the decoder means unreadable
    except Exception as error:
        if isinstance(path, bytes):
            raise AudioError(f"{source}: not a readable audio file ({error})") from error
        samples, rate = _decode_with_audioread(str(path), max_duration_s, source)
    if len(samples) == 0:
        raise AudioError(f"{source}: the audio is empty (zero samples)")
    return from_array(
        samples, int(rate), target_rate=target_rate, max_duration_s=max_duration_s, source=source
    )


def windows(
    audio: Audio,
    mode: WindowMode = "first",
    *,
    length_s: float = WINDOW_S,
    hop_s: float | None = None,
    max_windows: int | None = None,
) -> list[Window]:
    """Deterministic fixed-length windows, each zero-padded to exactly ``length_s``.

    ``first`` and ``middle`` give one window; ``all`` gives every window with hop ``hop_s``
    (default: ``length_s``), thinned evenly to ``max_windows`` when there are more.
    """
    rate = audio.sample_rate
    size = int(round(length_s * rate))
    total = len(audio.samples)
    if mode == "first":
        starts = [0]
    elif mode == "middle":
        starts = [max(0, (total - size) // 2)]
    elif mode == "all":
        hop = int(round((hop_s or length_s) * rate))
        if hop <= 0:
            raise ValueError("hop must be positive")
        starts = list(range(0, max(total - size, 0) + 1, hop))
        # the tail that a whole hop would miss gets its own window, if it holds enough music to caption:
        # a fraction of a second padded with silence (a 30.4 s file's last 0.4 s) is not worth a caption
        if total - (starts[-1] + size) >= MIN_TAIL_S * rate:
            starts.append(starts[-1] + hop)
        if max_windows is not None and len(starts) > max_windows:
            picks = np.linspace(0, len(starts) - 1, max_windows).round().astype(int)
            starts = [starts[i] for i in picks]
    else:
        raise ValueError(f"unknown window mode {mode!r}; use first, middle or all")
    result = []
    for index, start in enumerate(starts):
        chunk = audio.samples[start : start + size]
        padded = np.zeros(size, dtype=np.float32)
        padded[: len(chunk)] = chunk
        result.append(
            Window(
                samples=padded,
                sample_rate=rate,
                start_s=start / rate,
                end_s=(start + len(chunk)) / rate,
                index=index,
            )
        )
    return result
