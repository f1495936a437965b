"""What the audio says: tempo, key and mode, drums, instrument families and musicnn's tags of one window.

The app's own ears, independent of the captioners (none of them is trained to produce these
numbers): every caption is fact-checked against them (`facts`). Three kinds of evidence:

* DSP on the window itself. Tempo: the autocorrelation of a mel onset-strength envelope; the
  strongest beat periodicity (a comb over its multiples, 60-200 BPM) gives seven candidates, the
  periodicity at x1/2, x2/3, x3/4, x1, x4/3, x3/2 and x2 — the octave, triple-meter and dotted-beat
  errors made explicit (on corpus v2's validation split one of the seven is within 4 % of the truth
  for 99 % of the clips, the periodicity itself for 46 %) — and one of them is chosen. Key: a
  chroma (and a bass chroma, below ~260 Hz) correlated with key profiles rotated to each tonic.
  Timbre: statistics of the same log-mel spectrogram (per band quantiles, change, attacks and
  envelope modulation; a cepstrum's summary), for the instrument families.
* musicnn's MagnaTagATune tags and mid-end features, from the embedded encoder's pass that the
  captioners share (`musiccap.features.audio_features`): nothing here runs musicnn a second time.
* Small probes fitted on corpus v2's training split (`python -m train.analysis_probes`, weights in
  ``checkpoints/analysis/probes.safetensors``): a one-hidden-layer perceptron that picks the tempo
  candidate, learned key profiles (one weight vector per mode over the tonic-rotated chromas, a
  softmax over the 24 keys: a conditional logistic regression), which give the key; a perceptron
  ensemble that decides major or minor from the likeliest relative pair's view of the chromas and
  the key probabilities (`mode_inputs`); and a perceptron ensemble with a sigmoid per instrument
  family and for drums, reading musicnn and the timbre statistics. (On the validation split, the
  perceptrons beat logistic regressions, fitted on 2,500 clips: tempo class .79 against .74, family
  F1 .55 against .54, drums .95 against .93; the timbre statistics raised family F1 from .64 to .71
  and the mode probe mode accuracy from .85 to ~.86 over the key probabilities' marginal.)

Without the probe file the DSP rules answer alone: the candidate with the best salience under a
log-normal tempo prior, the Temperley (Kostka-Payne) key profiles, and no drums or families.

Packages with trained tempo weights were tried first (``pip download --no-deps``): ``deeprhythm``
0.0.13's wheel holds no weights (its ``get_weights`` downloads them on first use, and it needs
``nnaudio`` and ``torchaudio``), and ``madmom`` (whose wheel would hold its RNN models) is a 2018
source distribution that does not build here (Cython, numpy 2). Neither runs offline on this CPU, so
the estimators are DSP, musicnn (whose MTT weights do ship in its wheel) and the probes above.
Accuracy on corpus v2: ``python -m train.diagnostics.analysis_accuracy`` (docs/RESULTS.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from safetensors import safe_open
from scipy.ndimage import maximum_filter1d

from musiccap.attributes import FAMILIES, tempo_class
from musiccap.clip import Clip
from musiccap.encoders import musicnn
from musiccap.features import audio_features
from musiccap.registry import CHECKPOINTS

PROBES = CHECKPOINTS / "analysis" / "probes.safetensors"
PITCH_CLASSES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")  # the corpus spelling
KEYS = tuple(f"{p} major" for p in PITCH_CLASSES) + tuple(f"{p} minor" for p in PITCH_CLASSES)
# Temperley (2001), the Kostka-Payne corpus profiles, tonic first: they separate relative major and
# minor better than Krumhansl-Kessler's on chord-based chroma (the leading tone and the b3/3 weigh more).
TEMPERLEY_MAJOR = np.array([5.0, 2.0, 3.5, 2.0, 4.5, 4.0, 2.0, 4.5, 2.0, 3.5, 1.5, 4.0])
TEMPERLEY_MINOR = np.array([5.0, 2.0, 3.5, 4.5, 2.0, 4.0, 2.0, 4.5, 3.5, 2.0, 1.5, 4.0])

FPS = musicnn.SAMPLE_RATE / musicnn.HOP_LENGTH  # onset envelope frames per second (62.5)
TEMPO_RANGE_BPM = (60.0, 200.0)  # where the beat periodicity is searched
TEMPO_LIMITS_BPM = (30.0, 320.0)  # no candidate outside
OCTAVE_FACTORS = (0.5, 2 / 3, 3 / 4, 1.0, 4 / 3, 1.5, 2.0)  # candidates: the periodicity times these
PRIOR_BPM, PRIOR_OCTAVES = 120.0, 1.5  # the rule's log-normal tempo prior (centre, sigma in octaves)
BASS_HZ = 260.0  # chroma of the bass line: below middle C
N_MELS = 64  # the onset envelope's mel bands
LOW_HZ, HIGH_HZ = 200.0, 3000.0  # onset bands: kick and bass below, hi-hat, snare and cymbals above
CHROMA_N_FFT = 4096  # 256 ms at 16 kHz: ~4 Hz bins, semitones apart down to ~70 Hz
TOP_TAGS = 10
# The timbre statistics of the onset envelope's log-mel spectrogram (what the family probe reads
# besides musicnn): per band quantiles, how much and how fast it changes, a cepstrum's summary
MEL_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
N_CEPSTRA = 20
MODULATION_HZ = ((0.5, 2.0), (2.0, 4.0), (4.0, 8.0), (8.0, 16.0))  # phrase, beat, strum/trill, tremolo
MEL_N_FFT = 1024
# the frames whose (centred) window reaches past the window's ends: padded with zeros, they would put
# a step into every band's envelope
MEL_EDGE_FRAMES = MEL_N_FFT // (2 * musicnn.HOP_LENGTH)
TIMBRE_DIM = N_MELS * (len(MEL_QUANTILES) + 5 + len(MODULATION_HZ)) + 3 * N_CEPSTRA


@dataclass
class DspFeatures:
    """The DSP evidence of one window (what the rules and the probes read besides musicnn)."""

    periodicity_bpm: float  # the strongest beat periodicity; the candidates are it times OCTAVE_FACTORS
    salience: np.ndarray  # [7] onset autocorrelation at each candidate's lag (1 = lag 0)
    comb: np.ndarray  # [7] the comb (sum over the lag's first four multiples, 1/k-weighted) at each
    band_salience: np.ndarray  # [2, 7] the salience of the low (< LOW_HZ) and high (> HIGH_HZ) bands
    profile: np.ndarray  # [17] salience at the periodicity times 2^(k/4), k = -8..8: the rhythm's shape
    onset_rate: float  # onset-envelope peaks per second
    chroma: np.ndarray  # [12] mean over the window of each frame's chroma share, max-normalised
    bass_chroma: np.ndarray  # [12] the same below BASS_HZ
    timbre: np.ndarray  # [TIMBRE_DIM] statistics of the log-mel spectrogram (`timbre_statistics`)

    SIZES = {"periodicity_bpm": 1, "salience": 7, "comb": 7, "band_salience": 14, "profile": 17,
             "onset_rate": 1, "chroma": 12, "bass_chroma": 12, "timbre": TIMBRE_DIM}  # fmt: skip

    @property
    def candidates(self) -> np.ndarray:
        return np.clip(self.periodicity_bpm * np.asarray(OCTAVE_FACTORS), *TEMPO_LIMITS_BPM)

    def to_vector(self) -> np.ndarray:
        """Flat float32 vector (the evaluation caches it; :meth:`from_vector` reads it back)."""
        return np.concatenate([np.ravel(getattr(self, name)) for name in self.SIZES]).astype(np.float32)

    @classmethod
    def from_vector(cls, vector: np.ndarray) -> DspFeatures:
        values, start = {}, 0
        for name, size in cls.SIZES.items():
            values[name] = np.asarray(vector[start : start + size], dtype=np.float64)
            start += size
        values["band_salience"] = values["band_salience"].reshape(2, -1)
        return cls(**{k: float(v[0]) if cls.SIZES[k] == 1 else v for k, v in values.items()})

    def tempo_inputs(self) -> np.ndarray:
        """What the tempo probe reads from the DSP: the periodicity, how strong each candidate is (over
        the whole spectrum, in the bass and in the treble), the rhythm's shape around the periodicity,
        and how many onsets fall in one beat at it (a beat rarely holds more than four)."""
        beats_per_second = self.periodicity_bpm / 60.0
        return np.concatenate([
            [np.log2(self.periodicity_bpm / 120.0)], self.salience, self.comb, self.band_salience.ravel(),
            self.profile, [np.log2(max(self.onset_rate, 0.1) / beats_per_second)],
        ])  # fmt: skip

    def tonic_rotations(self) -> np.ndarray:
        """[12, 24]: row t is (chroma, bass chroma) rotated so that pitch class t comes first."""
        return np.stack(
            [np.concatenate([np.roll(self.chroma, -t), np.roll(self.bass_chroma, -t)]) for t in range(12)]
        )


def _salience(autocorr: np.ndarray, bpm: np.ndarray) -> np.ndarray:
    """Onset autocorrelation at the lag of each tempo, interpolated between whole lags."""
    lags = 60.0 * FPS / np.asarray(bpm, dtype=np.float64)
    return np.interp(lags, np.arange(len(autocorr)), autocorr, right=0.0)


def _comb(autocorr: np.ndarray, bpm: np.ndarray) -> np.ndarray:
    return sum(_salience(autocorr, np.asarray(bpm) / k) / k for k in range(1, 5))


def _autocorrelation(envelope: np.ndarray) -> np.ndarray:
    """Normalised (1 at lag 0) autocorrelation of an onset envelope up to four periods of the slowest
    candidate; a beat period rarely falls on a whole lag (60 BPM = 62.5 frames), so a peak counts
    within +-1 lag."""
    import librosa

    max_lag = int(4 * 60.0 * FPS / TEMPO_LIMITS_BPM[0]) + 2
    autocorr = librosa.autocorrelate(envelope - envelope.mean(), max_size=min(max_lag, len(envelope)))
    autocorr = autocorr / autocorr[0] if autocorr[0] > 0 else np.zeros_like(autocorr)
    return maximum_filter1d(autocorr, size=3)


def timbre_statistics(mel_db: np.ndarray) -> np.ndarray:
    """[TIMBRE_DIM] what a window's instruments sound like, from its [N_MELS, T] log-mel spectrogram
    in dB below the window's peak (the mix level does not count): per band the quantiles over time,
    the mean and spread, the mean absolute change and the rises (attacks) between frames, and the
    energy of the band's envelope modulated at MODULATION_HZ; the mean, spread and change of the first
    N_CEPSTRA cepstral coefficients (the spectral envelope's shape, whatever its pitch). On corpus v2's
    validation split these statistics raised the family probe's micro F1 from .64 to .71."""
    from scipy.fft import dct

    mel = mel_db[:, MEL_EDGE_FRAMES:-MEL_EDGE_FRAMES]
    mel = mel - mel.max()
    change = np.diff(mel, axis=1)
    rises = np.maximum(change, 0.0)
    cepstra = dct(mel, axis=0, norm="ortho")[:N_CEPSTRA]
    envelope = np.abs(np.fft.rfft(mel - mel.mean(1, keepdims=True), axis=1))
    hz = np.fft.rfftfreq(mel.shape[1], 1.0 / FPS)
    modulation = [envelope[:, (hz >= low) & (hz < high)].mean(1) for low, high in MODULATION_HZ]
    return np.concatenate([
        *np.quantile(mel, MEL_QUANTILES, axis=1), mel.mean(1), mel.std(1), np.abs(change).mean(1),
        rises.mean(1), rises.std(1), np.log(np.stack(modulation, 1) + 1e-3).ravel(),
        cepstra.mean(1), cepstra.std(1), np.diff(cepstra, axis=1).std(1),
    ])  # fmt: skip


def dsp_features(samples: np.ndarray, sample_rate: int) -> DspFeatures:
    import librosa

    y = musicnn.resample(samples, sample_rate)
    mel_db = librosa.power_to_db(
        librosa.feature.melspectrogram(
            y=y, sr=musicnn.SAMPLE_RATE, n_fft=MEL_N_FFT, hop_length=musicnn.HOP_LENGTH, n_mels=N_MELS
        )
    )
    onset = librosa.onset.onset_strength(S=mel_db, sr=musicnn.SAMPLE_RATE)
    centres = librosa.mel_frequencies(N_MELS + 2, fmax=musicnn.SAMPLE_RATE / 2)[1:-1]
    low, high = int(np.searchsorted(centres, LOW_HZ)), int(np.searchsorted(centres, HIGH_HZ))
    bands = librosa.onset.onset_strength_multi(S=mel_db, channels=[0, low, high, N_MELS])[[0, 2]]
    autocorr = _autocorrelation(onset)
    # a subdivision's multiples fall between beats half the time, so the comb prefers the beat (or
    # the bar: that is what the x1/2 and x2/3 candidates are for)
    grid = np.geomspace(*TEMPO_RANGE_BPM, 400)
    periodicity = float(grid[int(np.argmax(_comb(autocorr, grid)))])
    candidates = np.clip(periodicity * np.asarray(OCTAVE_FACTORS), *TEMPO_LIMITS_BPM)
    peaks = librosa.util.peak_pick(onset, pre_max=3, post_max=3, pre_avg=10, post_avg=10, delta=0.5, wait=5)

    # each frame's share of pitch-class energy, averaged: every chord counts, loud or soft (on corpus
    # v2's validation split this beat log-compressed and CQT chroma for key and mode)
    spectrum = np.abs(librosa.stft(y, n_fft=CHROMA_N_FFT, hop_length=4 * musicnn.HOP_LENGTH))
    spectrum = spectrum / np.maximum(spectrum.sum(0, keepdims=True), 1e-8)
    below_bass = (librosa.fft_frequencies(sr=musicnn.SAMPLE_RATE, n_fft=CHROMA_N_FFT) < BASS_HZ)[:, None]
    chroma_options = dict(sr=musicnn.SAMPLE_RATE, n_fft=CHROMA_N_FFT, norm=None, tuning=0.0)
    chroma = librosa.feature.chroma_stft(S=spectrum, **chroma_options).mean(1)
    bass = librosa.feature.chroma_stft(S=spectrum * below_bass, **chroma_options).mean(1)
    return DspFeatures(
        periodicity_bpm=periodicity,
        salience=_salience(autocorr, candidates),
        comb=_comb(autocorr, candidates),
        band_salience=np.stack([_salience(_autocorrelation(band), candidates) for band in bands]),
        profile=_salience(autocorr, periodicity * 2.0 ** (np.arange(-8, 9) / 4)),
        onset_rate=len(peaks) / max(len(y) / musicnn.SAMPLE_RATE, 1e-3),
        chroma=chroma / max(float(chroma.max()), 1e-8),
        bass_chroma=bass / max(float(bass.max()), 1e-8),
        timbre=timbre_statistics(mel_db),
    )


# ----------------------------------------------------------------------------------------------------
# The rules (DSP alone)


def rule_tempo(dsp: DspFeatures) -> float:
    """The candidate with the best log-salience under a wide log-normal prior around PRIOR_BPM: the
    strongest periodicity wins unless two are close, then the one nearer a moderate tempo. (On corpus
    v2's validation split no salience/prior mix gets the octave right for much more than half the
    clips; the tempo probe is what does.)"""
    candidates = dsp.candidates
    prior = -(np.log2(candidates / PRIOR_BPM) ** 2) / (2 * PRIOR_OCTAVES**2)
    return float(candidates[int(np.argmax(np.log(np.maximum(dsp.salience, 1e-3)) + prior))])


def _zscore(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return (x - x.mean(-1, keepdims=True)) / np.maximum(x.std(-1, keepdims=True), 1e-8)


def rule_key_scores(dsp: DspFeatures) -> np.ndarray:
    """[24] correlation of the chroma with the Temperley profiles of each key (KEYS order)."""
    chroma = _zscore(dsp.chroma)
    rotated = [np.roll(profile, t) for profile in (TEMPERLEY_MAJOR, TEMPERLEY_MINOR) for t in range(12)]
    return _zscore(np.stack(rotated)) @ chroma / 12.0


# ----------------------------------------------------------------------------------------------------
# The probes (fitted by train/analysis_probes.py)


def probe_inputs(
    tags: np.ndarray, pooled: np.ndarray, chunks: np.ndarray, dsp: DspFeatures
) -> dict[str, np.ndarray]:
    """Each probe's input vector, from the embedded encoder's features of the window: ``tags`` are
    musicnn's 50 MTT probabilities (MTT_LABELS order), ``pooled`` the pooled window vector (its last 28
    values: the window tempogram on 24 log-spaced tempo bins and the librosa tempo summary), ``chunks``
    musicnn's 200-d penultimate layer per 3 s patch (mean and max over the patches). The mode probe's
    input depends on the key probe's answer: :func:`mode_inputs`."""
    tags, pooled, chunks = (np.asarray(x, dtype=np.float64) for x in (tags, pooled, chunks))
    rhythm = [[dsp.onset_rate], dsp.band_salience.ravel(), dsp.profile, dsp.salience]
    return {
        "tempo": np.concatenate([dsp.tempo_inputs(), tags, pooled[-28:]]),
        # the rhythm helps to hear drums (a hi-hat's periodicity in the treble band); the timbre
        # statistics see the spectrum at a finer grain than musicnn's pooled mid-end
        "labels": np.concatenate([pooled, chunks.mean(0), chunks.max(0), tags, *rhythm, dsp.timbre]),
    }


def mode_inputs(dsp: DspFeatures, key_probabilities: np.ndarray) -> np.ndarray:
    """[48] the mode probe's input: the chroma, the bass chroma and the key probe's major and minor
    probabilities, rotated so that the tonic of the likeliest relative pair (a major key and the minor
    key a minor third below it, which share their notes) comes first. Major or minor is mostly that
    pair's question, and once rotated it reads the same in every key."""
    key_probabilities = np.asarray(key_probabilities, dtype=np.float64)
    major, minor = key_probabilities[:12], key_probabilities[12:]
    tonic = int(np.argmax(major + np.roll(minor, 3)))  # major tonic t, its relative minor t - 3
    return np.concatenate([np.roll(x, -tonic) for x in (dsp.chroma, dsp.bass_chroma, major, minor)])


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


class Probes:
    """The fitted probes, read from a safetensors file of float32 arrays (no pickles).

    ``tempo.*``: a perceptron (``mean``/``scale`` standardise the input, ``hidden.*`` a ReLU layer,
    ``out.*`` the logits) with a softmax over the seven tempo candidates; ``key.*``: the learned
    profiles, [2, 24] weights (major, minor) over ``DspFeatures.tonic_rotations`` and [2] biases;
    ``mode.*``: perceptrons over :func:`mode_inputs` with one sigmoid, the probability of minor;
    ``labels.*``: perceptrons with a sigmoid per label of ``LABELS``, and ``labels.threshold``, each
    label's decision threshold (chosen on the validation split for F1). The mode and label probes are
    ensembles: their ``hidden.*`` and ``out.*`` tensors stack the members (a leading axis), and the
    probability is the members' mean.
    """

    LABELS = ("drums",) + tuple(f for f in FAMILIES if f != "drums")

    def __init__(self, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None):
        self.tensors = {name: np.asarray(value, dtype=np.float64) for name, value in tensors.items()}
        self.metadata = metadata or {}  # what they were fitted on (train/analysis_probes.py)

    @classmethod
    def load(cls, path: str | Path = PROBES) -> Probes:
        with safe_open(str(path), "np") as file:
            return cls({name: file.get_tensor(name) for name in file.keys()}, file.metadata())

    def _logits(self, name: str, x: np.ndarray) -> np.ndarray:
        """The perceptron's logits; [members, outputs] for an ensemble (3-d ``hidden.weight``)."""
        t = self.tensors
        z = (np.asarray(x, dtype=np.float64) - t[f"{name}.mean"]) / t[f"{name}.scale"]
        hidden = np.maximum(t[f"{name}.hidden.weight"] @ z + t[f"{name}.hidden.bias"], 0.0)
        return (t[f"{name}.out.weight"] @ hidden[..., None])[..., 0] + t[f"{name}.out.bias"]

    def _sigmoids(self, name: str, x: np.ndarray) -> np.ndarray:
        """Each output's probability, averaged over the ensemble's members."""
        return np.atleast_2d(1.0 / (1.0 + np.exp(-self._logits(name, x)))).mean(0)

    def tempo(self, x: np.ndarray) -> np.ndarray:
        """[7] probability of each tempo candidate."""
        return _softmax(self._logits("tempo", x))

    def key(self, dsp: DspFeatures) -> np.ndarray:
        """[24] probability of each key (KEYS order)."""
        weights, bias = self.tensors["key.weight"], self.tensors["key.bias"]
        scores = dsp.tonic_rotations() @ weights.T + bias  # [12 tonics, 2 modes]
        return _softmax(scores.T.reshape(-1))

    def minor(self, x: np.ndarray) -> float:
        """Probability that the window is in a minor key, from :func:`mode_inputs`."""
        return float(self._sigmoids("mode", x)[0])

    def labels(self, x: np.ndarray) -> dict[str, float]:
        return dict(zip(self.LABELS, self._sigmoids("labels", x).tolist()))

    @property
    def thresholds(self) -> dict[str, float]:
        return dict(zip(self.LABELS, self.tensors["labels.threshold"].tolist()))


@lru_cache(maxsize=1)
def shipped_probes() -> Probes | None:
    return Probes.load(PROBES) if PROBES.is_file() else None


# ----------------------------------------------------------------------------------------------------
# The analysis


@dataclass
class Analysis:
    """What one window sounds like. ``drums`` and ``families`` are probabilities (None / empty without
    probes); ``heard`` the families (drums included) whose probability passes its threshold;
    ``confidence`` the probes' probability of the chosen tempo candidate, key and mode."""

    window: tuple[float, float]
    tempo_bpm: float
    tempo_class: str
    key: str
    mode: str
    drums: float | None
    families: dict[str, float]
    heard: list[str]
    tags: dict[str, float]
    confidence: dict[str, float]

    @classmethod
    def from_json(cls, record: dict) -> Analysis:
        return cls(**{**record, "window": tuple(record["window"])})

    def to_json(self) -> dict:
        record = asdict(self)
        record["window"] = [round(self.window[0], 3), round(self.window[1], 3)]
        record["tempo_bpm"] = round(self.tempo_bpm, 1)
        record["drums"] = None if self.drums is None else round(self.drums, 4)
        for name in ("families", "tags", "confidence"):
            record[name] = {k: round(v, 4) for k, v in record[name].items()}
        return record


def estimate(
    tags: dict[str, float],
    pooled: np.ndarray,
    chunks: np.ndarray,
    dsp: DspFeatures,
    probes: Probes | None,
    window: tuple[float, float] = (0.0, 10.0),
) -> Analysis:
    """The analysis from its evidence (the evaluation calls this on cached features)."""
    tag_vector = np.array([tags[label] for label in musicnn.MTT_LABELS])
    top_tags = dict(sorted(tags.items(), key=lambda item: -item[1])[:TOP_TAGS])
    if probes is None:
        bpm, key_name = rule_tempo(dsp), KEYS[int(np.argmax(rule_key_scores(dsp)))]
        return Analysis(
            window, bpm, tempo_class(bpm), key_name, key_name.split()[1], None, {}, [], top_tags, {}
        )
    inputs = probe_inputs(tag_vector, pooled, chunks, dsp)
    tempo_p, key_p = probes.tempo(inputs["tempo"]), probes.key(dsp)
    choice = int(np.argmax(tempo_p))
    bpm = float(dsp.candidates[choice])
    minor = probes.minor(mode_inputs(dsp, key_p))  # the mode, then the best key of that mode
    key_index = int(np.argmax(key_p[12:])) + 12 if minor > 0.5 else int(np.argmax(key_p[:12]))
    labels = probes.labels(inputs["labels"])
    families = {family: labels[family] for family in FAMILIES}
    heard = [family for family, threshold in probes.thresholds.items() if labels[family] >= threshold]
    confidence = {"tempo": float(tempo_p[choice]), "key": float(key_p[key_index]),
                  "mode": max(minor, 1.0 - minor)}  # fmt: skip
    return Analysis(
        window, bpm, tempo_class(bpm), KEYS[key_index], KEYS[key_index].split()[1],
        labels["drums"], families, sorted(heard, key=FAMILIES.index), top_tags, confidence,
    )  # fmt: skip


def analyze(clip: Clip, probes: Probes | None = None) -> Analysis:
    """Analyse a clip's window; musicnn comes from the clip's shared features (computed at most once)."""
    if clip.window is None:
        raise ValueError("analysis needs the clip's audio, not only cached features")
    probes = probes or shipped_probes()
    features = audio_features(clip)
    dsp = dsp_features(clip.window.samples, clip.window.sample_rate)
    return estimate(features.tags, features.pooled, features.chunks, dsp, probes, clip.span)


# ----------------------------------------------------------------------------------------------------
# The fact check: what a caption states (musiccap.metrics.attributes.read_caption) against the analysis


def _fact(said, heard) -> dict:
    """One attribute: agree is None when the caption does not state it or the analysis cannot hear it."""
    agree = None if said is None or heard is None else said == heard
    return {"said": said, "heard": heard, "agree": agree}


def facts(caption: str, analysis: Analysis) -> dict[str, dict]:
    """``{attribute: {"said", "heard", "agree"}}`` for tempo (class), mode, drums and instruments.

    Instruments: ``said`` the families the caption names (drums aside), ``heard`` those the analysis
    hears; they agree when every named family is heard (a caption is not faulted for leaving one out).
    Key and mood are not checked: the attribute reader reads no key, and the analysis hears no mood.
    """
    from musiccap.metrics.attributes import read_caption

    said = read_caption(caption)
    has_probes = analysis.drums is not None
    heard_families = [f for f in analysis.heard if f != "drums"] if has_probes else None
    named = sorted(said.families - {"drums"}, key=FAMILIES.index)
    return {
        "tempo": _fact(said.tempo_class, analysis.tempo_class),
        "mode": _fact(said.mode, analysis.mode),
        "drums": _fact(said.drums, "drums" in analysis.heard if has_probes else None),
        "instruments": {
            "said": named or None,
            "heard": heard_families,
            "agree": None if not named or heard_families is None else set(named) <= set(heard_families),
        },
    }


def grounding(caption_facts: dict[str, dict]) -> float | None:
    """Share of the caption's checkable statements that agree with the analysis: tempo, mode and drums
    count once each, every named instrument family once. None when it states nothing checkable."""
    agreeing = stated = 0
    for name, fact in caption_facts.items():
        if fact["agree"] is None:
            continue
        if name == "instruments":
            stated += len(fact["said"])
            agreeing += len(set(fact["said"]) & set(fact["heard"]))
        else:
            stated += 1
            agreeing += fact["agree"]
    return agreeing / stated if stated else None
