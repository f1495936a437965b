"""Corpus v2's mixing and production: per-part gain, pan and EQ, then a recording chain drawn per clip.

A v2 clip is rendered part by part (`render.MultiRenderer`), each part possibly by another soundfont.
This module decides how those parts are mixed (`draw_part_mix`) and how the mix is produced
(`draw_production`: reverb shape, EQ tilt, compression, saturation, band-limiting, noise, a lossy codec
round trip, the stereo-to-mono fold, the output level), and applies both (`mix_parts`, `produce`).
Every parameter is recorded in the clip's `attributes`, so a caption states only what was done.

Filters, compression, saturation and MP3 come from pedalboard (Spotify's C++ effects, much faster than
numpy versions and well tested); reverb impulses are generated here because their *shape* is what varies;
Ogg Vorbis round trips through libsndfile in memory (no subprocess).
"""

from __future__ import annotations

import io

import numpy as np
from scipy import signal

SAMPLE_RATE = 48_000

# A part's level before its random offset, in dB: v1's MIDI CC7 mix (melody 112, bass 100, ...) in dB.
ROLE_GAIN_DB = {"melody": -2.2, "counter": -6.4, "harmony": -8.0, "bass": -4.2, "drums": -4.9}
PEAK_LEVEL = {"soft": 0.35, "medium": 0.6, "loud": 0.89}  # by dynamics, as v1; v2 adds up to -4 dB

REVERB_SHAPES = ("dry", "room", "hall", "plate", "spring")
_REVERB_P = (0.25, 0.3, 0.2, 0.15, 0.1)
_REVERB_RANGES = {  # rt60 s, pre-delay ms, wet share
    "room": ((0.25, 0.6), (2, 10), (0.15, 0.35)),
    "hall": ((1.2, 2.6), (15, 40), (0.25, 0.5)),
    "plate": ((0.8, 1.8), (0, 5), (0.2, 0.4)),
    "spring": ((1.0, 2.2), (0, 5), (0.2, 0.4)),
}
FOLDS = ("average", "left", "right")
CODECS = ("mp3", "ogg")
# Thresholds above which an effect is a "low quality" recording a caption says so about.
LOW_SNR_DB = 25.0
HEAVY_DRIVE_DB = 14.0
LOW_MP3_VBR = 7  # LAME VBR quality 7..9: ~65..45 kbps on music
LOW_OGG_LEVEL = 0.8  # libsndfile Vorbis compression level 0.8..1: ~70..45 kbps


def _u(rng: np.random.Generator, low: float, high: float, digits: int = 2) -> float:
    return round(float(rng.uniform(low, high)), digits)


def draw_part_mix(role: str, rng: np.random.Generator) -> dict:
    """Gain (dB), pan (-1 left .. 1 right; the melody stays near the centre) and a three-band EQ."""
    pan_range = 0.25 if role == "melody" else 0.6  # so a one-sided fold never loses a part
    return {
        "gain_db": round(ROLE_GAIN_DB.get(role, -6.0) + float(rng.uniform(-3, 3)), 2),
        "pan": _u(rng, -pan_range, pan_range),
        "eq": {
            "low_db": _u(rng, -5, 5),
            "mid_hz": round(float(np.exp(rng.uniform(np.log(300), np.log(4000))))),
            "mid_db": _u(rng, -5, 5),
            "high_db": _u(rng, -6, 4),
        },
    }


def draw_production(dynamics: str, rng: np.random.Generator) -> tuple[dict, dict]:
    """(production parameters, caption-level summary: reverb, tone, quality, degradations)."""
    shape = str(rng.choice(REVERB_SHAPES, p=_REVERB_P))
    reverb = {"shape": shape}
    if shape != "dry":
        rt60, predelay, wet = _REVERB_RANGES[shape]
        reverb.update(rt60_s=_u(rng, *rt60), predelay_ms=_u(rng, *predelay, 1), wet=_u(rng, *wet))
    production: dict = {"reverb": reverb, "eq_tilt_db": _u(rng, -6, 6)}
    production["compression"] = (
        {
            "threshold_db": _u(rng, -30, -12, 1),
            "ratio": _u(rng, 2, 8, 1),
            "attack_ms": _u(rng, 1, 30, 1),
            "release_ms": _u(rng, 50, 300, 0),
        }
        if rng.random() < 0.5
        else None
    )
    production["saturation"] = {"drive_db": _u(rng, 3, 24, 1)} if rng.random() < 0.25 else None
    production["band_limit"] = (
        {"low_hz": _u(rng, 150, 400, 0), "high_hz": _u(rng, 2500, 4500, 0)} if rng.random() < 0.12 else None
    )
    production["noise"] = (
        {"colour": str(rng.choice(("white", "pink", "hum"))), "snr_db": _u(rng, 10, 45, 1)}
        if rng.random() < 0.3
        else None
    )
    if rng.random() < 0.3:
        codec = str(rng.choice(CODECS))
        production["codec"] = (
            {"format": "mp3", "vbr_quality": int(rng.integers(2, 10))}
            if codec == "mp3"
            else {"format": "ogg", "level": _u(rng, 0.3, 1.0)}
        )
    else:
        production["codec"] = None
    production["fold"] = str(rng.choice(FOLDS, p=(0.7, 0.15, 0.15)))
    production["peak"] = round(PEAK_LEVEL[dynamics] * 10 ** (float(rng.uniform(-4, 0)) / 20), 3)

    degradations = []
    if production["noise"] and production["noise"]["snr_db"] < LOW_SNR_DB:
        degradations.append("noise")
    if production["band_limit"]:
        degradations.append("band-limited")
    if production["saturation"] and production["saturation"]["drive_db"] >= HEAVY_DRIVE_DB:
        degradations.append("distortion")
    codec = production["codec"]
    if codec and (codec.get("vbr_quality", 0) >= LOW_MP3_VBR or codec.get("level", 0) >= LOW_OGG_LEVEL):
        degradations.append("low-bitrate")
    tilt = production["eq_tilt_db"]
    summary = {
        "reverb": shape,
        "tone": "bright" if tilt >= 3 else "dark" if tilt <= -3 else "neutral",
        "quality": "low" if degradations else "clean",
        "degradations": degradations,
    }
    return production, summary


def _three_band(eq: dict):
    from pedalboard import HighShelfFilter, LowShelfFilter, PeakFilter, Pedalboard

    return Pedalboard(
        [
            LowShelfFilter(cutoff_frequency_hz=200.0, gain_db=eq["low_db"]),
            PeakFilter(cutoff_frequency_hz=float(eq["mid_hz"]), gain_db=eq["mid_db"], q=1.0),
            HighShelfFilter(cutoff_frequency_hz=5000.0, gain_db=eq["high_db"]),
        ]
    )


def mix_parts(parts: list[np.ndarray], mixes: list[dict]) -> np.ndarray:
    """Mono parts (loudness-matched by the renderer) -> one stereo bus [2, n]: each part EQ'd, scaled by
    its gain and panned (constant power)."""
    bus = np.zeros((2, len(parts[0])), dtype=np.float32)
    for audio, mix in zip(parts, mixes, strict=True):
        shaped = _three_band(mix["eq"])(audio[None, :].astype(np.float32), SAMPLE_RATE)[0]
        angle = (mix["pan"] + 1) * np.pi / 4
        gain = 10 ** (mix["gain_db"] / 20)
        bus[0] += shaped * gain * np.cos(angle)
        bus[1] += shaped * gain * np.sin(angle)
    return bus


def reverb_impulse(reverb: dict, rng: np.random.Generator) -> np.ndarray:
    """A stereo impulse response [2, n] of the given shape: decorrelated noise under a decay envelope,
    coloured per shape (a room has early reflections, a hall builds up slowly and is dark, a plate is
    dense and bright, a spring rings like a comb filter)."""
    shape, rt60 = reverb["shape"], reverb["rt60_s"]
    n = int(min(rt60 * 1.2, 3.0) * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    tail = rng.standard_normal((2, n)) * np.exp(-6.9 * t / rt60)  # -60 dB at rt60
    if shape == "room":
        sos = signal.butter(2, 6000, fs=SAMPLE_RATE, output="sos")
        tail = signal.sosfilt(sos, tail, axis=1)
        for _ in range(8):  # early reflections off nearby walls
            tap = int(rng.uniform(0.004, 0.04) * SAMPLE_RATE)
            tail[:, tap] += rng.uniform(-2, 2, size=2)
    elif shape == "hall":
        tail *= 1 - np.exp(-t / 0.03)  # diffuse build-up
        sos = signal.butter(2, 4000, fs=SAMPLE_RATE, output="sos")
        tail = signal.sosfilt(sos, tail, axis=1)
    elif shape == "plate":
        sos = signal.butter(2, 300, btype="highpass", fs=SAMPLE_RATE, output="sos")
        tail = signal.sosfilt(sos, tail, axis=1)
    elif shape == "spring":
        delay = int(rng.uniform(0.02, 0.035) * SAMPLE_RATE)
        tail = signal.lfilter([1.0], np.r_[1.0, np.zeros(delay - 1), -0.7], tail, axis=1)  # metallic ring
        sos = signal.butter(2, [200, 5000], btype="bandpass", fs=SAMPLE_RATE, output="sos")
        tail = signal.sosfilt(sos, tail, axis=1)
    predelay = int(reverb["predelay_ms"] / 1000 * SAMPLE_RATE)
    return np.pad(tail, ((0, 0), (predelay, 0)))[:, :n]


def add_reverb(bus: np.ndarray, reverb: dict, rng: np.random.Generator) -> np.ndarray:
    if reverb["shape"] == "dry":
        return bus
    impulse = reverb_impulse(reverb, rng)
    wet = np.stack([signal.fftconvolve(bus[c], impulse[c])[: bus.shape[1]] for c in range(2)])
    wet *= np.sqrt(np.mean(bus**2) / max(float(np.mean(wet**2)), 1e-12))
    return (1 - reverb["wet"]) * bus + reverb["wet"] * wet


def _noise(colour: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if colour == "white":
        return rng.standard_normal(n)
    if colour == "pink":  # 1/f power: white noise shaped in the frequency domain
        spectrum = np.fft.rfft(rng.standard_normal(n))
        spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1))
        return np.fft.irfft(spectrum, n)
    t = np.arange(n) / SAMPLE_RATE  # mains hum: 50 or 60 Hz and its harmonics
    base = 50.0 if rng.random() < 0.5 else 60.0
    return sum(np.sin(2 * np.pi * base * k * t + rng.uniform(0, 2 * np.pi)) / k for k in (1, 2, 3, 5))


def codec_round_trip(audio: np.ndarray, codec: dict) -> np.ndarray:
    """Encode and decode through a lossy codec at a low bitrate; same length back."""
    if codec["format"] == "mp3":
        from pedalboard import MP3Compressor

        return MP3Compressor(vbr_quality=float(codec["vbr_quality"]))(audio[None, :], SAMPLE_RATE)[0]
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(
        buffer, audio, SAMPLE_RATE, format="OGG", subtype="VORBIS", compression_level=codec["level"]
    )
    buffer.seek(0)
    decoded, _ = soundfile.read(buffer, dtype="float32")
    out = np.zeros_like(audio)
    out[: min(len(audio), len(decoded))] = decoded[: len(audio)]
    return out


def produce(bus: np.ndarray, production: dict, rng: np.random.Generator) -> np.ndarray:
    """The recording chain on the stereo bus; returns mono float32 at the drawn peak level (no fades)."""
    from pedalboard import Compressor, Distortion, HighShelfFilter, LowShelfFilter, Pedalboard

    audio = add_reverb(bus, production["reverb"], rng).astype(np.float32)
    tilt = production["eq_tilt_db"]  # one knob: brighter tilts the highs up and the lows down
    chain = [
        LowShelfFilter(cutoff_frequency_hz=300.0, gain_db=-tilt / 2),
        HighShelfFilter(cutoff_frequency_hz=3000.0, gain_db=tilt / 2),
    ]
    if production["compression"]:
        c = production["compression"]
        # The compressor's threshold is relative to a bus peaking at -6 dBFS, whatever the synth's level.
        audio *= 0.5 / max(float(np.abs(audio).max()), 1e-9)
        chain.append(
            Compressor(
                threshold_db=c["threshold_db"],
                ratio=c["ratio"],
                attack_ms=c["attack_ms"],
                release_ms=c["release_ms"],
            )
        )
    if production["saturation"]:
        audio *= 0.5 / max(float(np.abs(audio).max()), 1e-9)
        chain.append(Distortion(drive_db=production["saturation"]["drive_db"]))
    audio = Pedalboard(chain)(audio, SAMPLE_RATE)
    fold = production["fold"]
    mono = audio.mean(axis=0) if fold == "average" else audio[0 if fold == "left" else 1]
    if production["band_limit"]:
        band = production["band_limit"]
        sos = signal.butter(
            4, [band["low_hz"], band["high_hz"]], btype="bandpass", fs=SAMPLE_RATE, output="sos"
        )
        mono = signal.sosfilt(sos, mono)
    if production["noise"]:
        noise = _noise(production["noise"]["colour"], len(mono), rng)
        rms = np.sqrt(np.mean(mono**2))
        mono = mono + noise / max(np.sqrt(np.mean(noise**2)), 1e-12) * rms * 10 ** (
            -production["noise"]["snr_db"] / 20
        )
    mono = mono.astype(np.float32)
    if production["codec"]:
        mono *= 0.5 / max(float(np.abs(mono).max()), 1e-9)  # encode at a safe level
        mono = codec_round_trip(mono, production["codec"])
    return mono.astype(np.float32)
