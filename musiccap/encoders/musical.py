"""Key and tempo features that musicnn lacks, computed with librosa on the 16 kHz signal.

Frozen musicnn features identify mode at chance and tempo class at .52-.64 once pooled
(docs/ARCHITECTURE.md, "What the embedded audio features can hear");
chroma with the 24 major/minor key-profile correlations and a tempogram summary fix that. Everything
is computed on musicnn's frame grid (hop 256 at 16 kHz, 16 ms) and then averaged over groups of
``pool`` frames, so the blocks line up with musicnn's pooled mid-end frames.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import uniform_filter1d

from .musicnn import HOP_LENGTH, SAMPLE_RATE

# Krumhansl & Kessler (1982) probe-tone profiles, tonic first
KRUMHANSL_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KRUMHANSL_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
KEY_NAMES = tuple(f"{p} major" for p in PITCH_CLASSES) + tuple(f"{p} minor" for p in PITCH_CLASSES)

# tempogram summarised on log-spaced tempo bins; a whole octave either side of the usual 60-180 BPM
# range so that the double/half-tempo ambiguity stays visible to the model instead of being folded
TEMPO_BINS_BPM = np.geomspace(30.0, 360.0, 25)  # 24 bins, edges
TEMPOGRAM_SECONDS = 6.0  # autocorrelation window: a few bars at slow tempi
LOCAL_KEY_SECONDS = 2.0  # chroma context for per-frame key correlations
CHROMA_N_FFT = 2048  # 128 ms at 16 kHz: ~8 Hz resolution, enough to separate semitones above ~130 Hz


def _key_profiles() -> np.ndarray:
    """[24, 12] z-scored profiles: 12 major keys then 12 minor keys, rotated to each tonic."""
    profiles = [np.roll(KRUMHANSL_MAJOR, k) for k in range(12)] + [
        np.roll(KRUMHANSL_MINOR, k) for k in range(12)
    ]
    profiles = np.stack(profiles)
    return (profiles - profiles.mean(1, keepdims=True)) / profiles.std(1, keepdims=True)


_PROFILES = _key_profiles()


def key_correlations(chroma: np.ndarray) -> np.ndarray:
    """Pearson correlation of each chroma vector [..., 12] with the 24 key profiles -> [..., 24]."""
    centred = chroma - chroma.mean(-1, keepdims=True)
    norm = np.sqrt((centred**2).mean(-1, keepdims=True))
    z = np.divide(centred, norm, out=np.zeros_like(centred), where=norm > 1e-8)
    return (z @ _PROFILES.T / 12.0).astype(np.float32)


def pool_frames(x: np.ndarray, pool: int) -> np.ndarray:
    """Average consecutive groups of ``pool`` rows; the last group may be shorter."""
    n = -(-len(x) // pool)
    return np.stack([x[i * pool : (i + 1) * pool].mean(0) for i in range(n)]).astype(np.float32)


@dataclass
class MusicalFeatures:
    """Per pooled frame (``frame_times`` = centres in seconds) and per window."""

    frame_times: np.ndarray  # [T]
    chroma: np.ndarray  # [T, 12] max-normalised per frame
    key: np.ndarray  # [T, 24] correlations of the local (2 s) chroma with the key profiles
    tempogram: np.ndarray  # [T, 24] local tempogram on log tempo bins, max-normalised
    window_chroma: np.ndarray  # [12]
    window_key: np.ndarray  # [24]
    window_tempogram: np.ndarray  # [24]
    tempo_bpm: float  # librosa's global estimate (it may be off by an octave)
    tempo_octaves: np.ndarray  # [3] tempogram strength at half, at and at double the estimate
    seconds: float  # compute cost

    @property
    def key_name(self) -> str:
        return KEY_NAMES[int(np.argmax(self.window_key))]


def _tempogram_bins(tempogram: np.ndarray, fps: float) -> np.ndarray:
    """[lags, frames] autocorrelation tempogram -> [frames, 24] mean strength per log tempo bin."""
    lags = np.arange(1, tempogram.shape[0])
    bpm = 60.0 * fps / lags
    out = np.zeros((tempogram.shape[1], len(TEMPO_BINS_BPM) - 1), dtype=np.float32)
    for b, (lo, hi) in enumerate(zip(TEMPO_BINS_BPM[:-1], TEMPO_BINS_BPM[1:])):
        rows = lags[(bpm >= lo) & (bpm < hi)]
        if len(rows):
            out[:, b] = tempogram[rows].mean(0)
    peak = out.max(1, keepdims=True)
    return np.divide(out, peak, out=np.zeros_like(out), where=peak > 1e-8)


def musical_features(samples_16k: np.ndarray, mel_power: np.ndarray, pool: int = 16) -> MusicalFeatures:
    """Key and tempo features of one window.

    ``mel_power`` is musicnn's [frames, 96] mel power spectrogram of the same samples (the onset
    envelope reuses it); frames are pooled by ``pool`` (16 -> 0.256 s, ~4 frames per second).
    """
    import librosa

    start = time.perf_counter()
    fps = SAMPLE_RATE / HOP_LENGTH
    n_frames = len(mel_power)

    chroma = librosa.feature.chroma_stft(
        y=samples_16k, sr=SAMPLE_RATE, n_fft=CHROMA_N_FFT, hop_length=HOP_LENGTH, norm=None, tuning=0.0
    ).T[:n_frames]  # A440 tuning assumed: estimating it costs time and is undefined on silence
    pooled_chroma = pool_frames(chroma, pool)
    context = max(1, round(LOCAL_KEY_SECONDS * fps / pool))
    local_chroma = uniform_filter1d(pooled_chroma, size=context, axis=0, mode="nearest")
    window_chroma = chroma.mean(0)

    onset = librosa.onset.onset_strength(
        S=librosa.power_to_db(mel_power.T), sr=SAMPLE_RATE, hop_length=HOP_LENGTH
    )
    win_length = min(int(TEMPOGRAM_SECONDS * fps), 2 * (len(onset) // 2) or 2)
    tempogram = librosa.feature.tempogram(
        onset_envelope=onset, sr=SAMPLE_RATE, hop_length=HOP_LENGTH, win_length=win_length
    )
    local_tempo = _tempogram_bins(tempogram, fps)[:n_frames]
    global_autocorr = tempogram.mean(1)
    tempo_bpm = float(
        librosa.feature.tempo(
            onset_envelope=onset, sr=SAMPLE_RATE, hop_length=HOP_LENGTH, ac_size=TEMPOGRAM_SECONDS
        )[0]
    )
    octaves = []
    for factor in (0.5, 1.0, 2.0):
        lag = int(round(60.0 * fps / (tempo_bpm * factor)))
        octaves.append(global_autocorr[lag] if 0 < lag < len(global_autocorr) else 0.0)
    octaves = np.asarray(octaves, dtype=np.float32) / max(float(global_autocorr[1:].max()), 1e-8)

    frame_times = pool_frames(np.arange(n_frames, dtype=np.float32)[:, None], pool)[:, 0] / np.float32(fps)
    peak = pooled_chroma.max(1, keepdims=True)
    return MusicalFeatures(
        frame_times=frame_times,
        chroma=np.divide(pooled_chroma, peak, out=np.zeros_like(pooled_chroma), where=peak > 1e-8),
        key=key_correlations(local_chroma),
        tempogram=pool_frames(local_tempo, pool),
        window_chroma=(window_chroma / max(float(window_chroma.max()), 1e-8)).astype(np.float32),
        window_key=key_correlations(window_chroma),
        window_tempogram=_tempogram_bins(global_autocorr[:, None], fps)[0],
        tempo_bpm=tempo_bpm,
        tempo_octaves=octaves,
        seconds=time.perf_counter() - start,
    )
