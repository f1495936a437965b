"""Is it listening? A window captioned again with its audio replaced, and how much each caption changed.

A captioner can write a fluent, plausible caption without using its audio at all (a language model
reciting the training set's commonest caption does). The check makes that visible on the user's own
clip: every captioner captions the window again with the audio replaced

* by pink noise of the same loudness (the RMS of the window's real audio, seeded), and
* by another clip (the first bundled example, in name order, that is not the clip itself),

keeping everything else: the clip's id (so a captioner seeded by it, like ``random``, draws the same
caption), its lyrics (which ALCAP reads) and the decoding settings. Each replaced caption is compared
with the original in two ways:

* **attributes changed**: both captions read with the project's attribute reader
  (``musiccap.metrics.attributes.read_caption``); among the attributes either caption states
  (instrument families, tempo class, mode, drums, mood), the share whose statement differs. None when
  neither caption states any.
* **text changed**: 1 − the Jaccard similarity of the two captions' sets of lower-cased words.

A captioner that ignores its audio scores 0 on both. ``train/listening.py`` measures the same on a
corpus split (``audio_sensitivity``); this is the one-clip version the app and the CLI run.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from musiccap.audio import Audio, Window, load_audio, windows
from musiccap.clip import LYRICS, Clip, audio_hash
from musiccap.metrics.attributes import CaptionAttributes, read_caption

if TYPE_CHECKING:
    from musiccap.studio import Studio

NOISE = "noise"
OTHER_CLIP = "other clip"
NOISE_SEED = 0
# What a read caption states about each attribute (None: nothing); instrument families as a set.
STATEMENTS = {
    "instruments": lambda read: frozenset(read.families) or None,
    "tempo": lambda read: read.tempo_class,
    "mode": lambda read: read.mode,
    "drums": lambda read: read.drums,
    "mood": lambda read: read.mood,
}
_WORD = re.compile(r"[a-z0-9'-]+")


@dataclass
class Replacement:
    """Audio standing in for the window's own: NOISE or OTHER_CLIP, what it is in words, and the audio."""

    kind: str
    description: str
    window: Window


@dataclass
class CaptionChange:
    """One captioner's caption with replaced audio, against its caption of the real audio."""

    replacement: str  # NOISE or OTHER_CLIP
    text: str = ""
    error: str = ""  # the captioner failed on the replaced audio
    attributes_stated: list[str] = field(default_factory=list)  # stated by either caption
    attributes_changed: list[str] = field(default_factory=list)
    text_change: float = 0.0

    @property
    def attribute_change(self) -> float | None:
        if not self.attributes_stated:
            return None
        return len(self.attributes_changed) / len(self.attributes_stated)

    def to_json(self) -> dict[str, Any]:
        if self.error:
            return {"error": self.error}
        change = self.attribute_change
        return {
            "text": self.text,
            "attributes_stated": self.attributes_stated,
            "attributes_changed": self.attributes_changed,
            "attribute_change": None if change is None else round(change, 4),
            "text_change": round(self.text_change, 4),
        }


@dataclass
class ModelCheck:
    """One captioner: its caption of the real window and of each replacement (in the check's order)."""

    model: str
    original: str = ""
    error: str = ""  # the captioner failed on the real window: nothing to compare
    changes: list[CaptionChange] = field(default_factory=list)

    @property
    def ignores_audio(self) -> bool:
        """Every replaced caption is word for word the original."""
        answered = [c for c in self.changes if not c.error]
        return bool(answered) and all(c.text == self.original for c in answered)


@dataclass
class ListeningCheck:
    window: Window
    replacements: list[Replacement]
    models: list[ModelCheck]

    def to_json(self, model: str) -> dict[str, Any]:
        """One captioner's result, keyed by replacement, each with its source: what the CLI adds to a row."""
        check = next(m for m in self.models if m.model == model)
        sources = {r.kind: r.description for r in self.replacements}
        return {c.replacement: {"source": sources[c.replacement], **c.to_json()} for c in check.changes}


def text_change(original: str, replaced: str) -> float:
    """1 − Jaccard similarity of the two texts' sets of lower-cased words (0 when both have none)."""
    a, b = set(_WORD.findall(original.lower())), set(_WORD.findall(replaced.lower()))
    union = a | b
    return 1.0 - len(a & b) / len(union) if union else 0.0


def attribute_changes(
    original: CaptionAttributes, replaced: CaptionAttributes
) -> tuple[list[str], list[str]]:
    """The attributes either read caption states, and those whose statement differs."""
    stated, changed = [], []
    for name, statement in STATEMENTS.items():
        before, after = statement(original), statement(replaced)
        if before is None and after is None:
            continue
        stated.append(name)
        if before != after:
            changed.append(name)
    return stated, changed


def compare_captions(replacement: str, original: str, replaced: str) -> CaptionChange:
    stated, changed = attribute_changes(read_caption(original), read_caption(replaced))
    return CaptionChange(replacement, replaced, "", stated, changed, text_change(original, replaced))


def pink_noise_like(window: Window, seed: int = NOISE_SEED) -> Window:
    """Pink (1/f power) noise over the window's real audio, at its RMS; the padding stays silent."""
    real = window.samples[: int(round((window.end_s - window.start_s) * window.sample_rate))]
    loudness = float(np.sqrt(np.mean(real.astype(np.float64) ** 2))) if len(real) else 0.0
    if loudness == 0.0:
        raise ValueError(f"the window {window.label} is silent: there is no loudness for the noise to match")
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(len(real)))
    spectrum[1:] /= np.sqrt(np.arange(1, len(spectrum)))
    spectrum[0] = 0.0
    pink = np.fft.irfft(spectrum, len(real))
    if not pink.any():  # a window of a sample or two has no frequency above 0 Hz to fill
        raise ValueError(f"the window {window.label} is too short to make noise for")
    samples = np.zeros_like(window.samples)
    samples[: len(real)] = np.clip(pink / np.sqrt(np.mean(pink**2)) * loudness, -1.0, 1.0)
    return Window(samples, window.sample_rate, window.start_s, window.end_s, window.index)


def other_clip(audio: Audio, candidates: Sequence[str | Path]) -> tuple[str, Window]:
    """The first of ``candidates`` (in name order) that is not ``audio`` itself (neither the same file
    name nor the same decoded samples), as its file name and first window."""
    own = audio_hash(audio.samples)
    for path in sorted(candidates, key=lambda p: Path(p).name):
        if Path(path).name == Path(audio.source).name:
            continue
        candidate = load_audio(path)
        if audio_hash(candidate.samples) != own:
            return Path(path).name, windows(candidate, "first")[0]
    raise ValueError("no other clip to swap in: the bundled examples are missing or all this clip")


def replacements(
    audio: Audio, window: Window, candidates: Sequence[str | Path], seed: int = NOISE_SEED
) -> list[Replacement]:
    """Pink noise at the window's loudness, then another clip's first window."""
    name, donor = other_clip(audio, candidates)
    return [
        Replacement(
            NOISE, f"pink noise at the window's loudness (seed {seed})", pink_noise_like(window, seed)
        ),
        Replacement(OTHER_CLIP, f"{name}, {donor.label}", donor),
    ]


def listening_check(
    studio: Studio,
    window: Window,
    replaced: Sequence[Replacement],
    *,
    lyrics: str | None = None,
    decoding: dict[str, Any] | None = None,
    originals: dict[str, str] | None = None,
) -> ListeningCheck:
    """Caption ``window`` with each replacement's audio instead (and the window itself, unless its
    captions are given in ``originals`` by model name) with every captioner of ``studio``.
    ``decoding``: overrides of each captioner's default decoding, as in ``CompareOptions``."""
    clip = Clip(window)
    stand_ins = [Clip(r.window, clip_id=clip.id) for r in replaced]  # the same id: seeds stay the same
    if lyrics and lyrics.strip():
        for each in (clip, *stand_ins):
            each.put(LYRICS, lyrics.strip())
    models = []
    for name, captioner in studio.captioners.items():
        settings = captioner.default_decoding.replace(**decoding) if decoding else None
        check = ModelCheck(name)
        models.append(check)
        try:
            check.original = (originals or {}).get(name) or studio.caption_clip(clip, name, settings).text
        except Exception as error:  # one failing captioner is reported, the others still answer
            check.error = f"{type(error).__name__}: {error}"
            continue
        for replacement, stand_in in zip(replaced, stand_ins):
            try:
                text = studio.caption_clip(stand_in, name, settings).text
            except Exception as error:
                check.changes.append(
                    CaptionChange(replacement.kind, error=f"{type(error).__name__}: {error}")
                )
                continue
            check.changes.append(compare_captions(replacement.kind, check.original, text))
    return ListeningCheck(window, list(replaced), models)
