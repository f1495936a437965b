"""One 10 s window and what is computed from it, memoised: the bottom layer every other module reads.

A :class:`Clip` carries a window (or none, when training and evaluation build it from cached
features) and a cache of named values, so every captioner shown for the same window shares one
musicnn pass (the expensive part on a CPU). The names of what may be cached are declared here,
once; a name that is not declared is refused, so no module invents its own.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from musiccap.audio import Window

# What a clip may cache. Some names are families: a prefix and the producer's own key after ":".
AUDIO_FEATURES = "embedded_audio"  # the embedded encoder's AudioFeatures (musicnn, chroma/key, tempogram)
MEL_PATCHES = "musicnn_log_mel_patches"  # MusCaps' scratch encoder input (also a FeatureItem attribute)
LYRICS = "lyrics"  # lyrics a user typed for the clip (ALCAP reads them; other captioners ignore them)
REFERENCE_CAPTION = "reference_caption"  # the clip's reference caption: RGMC's gold-candidate ablation
CLAP_AUDIO = "clap_audio_embedding"  # family: f"{CLAP_AUDIO}:{scorer name}", a CLAP audio embedding
ANALYSIS = "analysis"  # musiccap.analysis.Analysis of the window: the fact check and conditioned captioners
CLAP_MEL = "clap_mel"  # family: f"{CLAP_MEL}:{feature extractor version}", the HTSAT CLAP's log-mel

FEATURE_NAMES = frozenset({AUDIO_FEATURES, MEL_PATCHES, LYRICS, REFERENCE_CAPTION, ANALYSIS})
FEATURE_FAMILIES = frozenset({CLAP_AUDIO, CLAP_MEL})


def check_feature_name(name: str) -> str:
    if name not in FEATURE_NAMES and name.partition(":")[0] not in FEATURE_FAMILIES:
        raise KeyError(
            f"{name!r} is not a declared clip feature (musiccap/clip.py): "
            f"{sorted(FEATURE_NAMES)} or a family {sorted(FEATURE_FAMILIES)} with ':key'"
        )
    return name


class Clip:
    """One window and its lazily computed, shared features.

    ``features`` maps a declared name to a value computed once: captioners ask for what they need
    with :meth:`get`, giving the function that computes it, or :meth:`put` what they were given.
    """

    def __init__(self, window: Window | None, *, clip_id: str = "", features: dict[str, Any] | None = None):
        self.window = window
        self.id = clip_id or (audio_hash(window.samples) if window is not None else "")
        self.features: dict[str, Any] = {}
        for name, value in (features or {}).items():
            self.put(name, value)
        self.timings: dict[str, float] = {}

    def get(self, name: str, compute: Callable[[Clip], Any]) -> Any:
        if name not in self.features:
            started = time.perf_counter()
            self.features[check_feature_name(name)] = compute(self)
            self.timings[name] = time.perf_counter() - started
        return self.features[name]

    def put(self, name: str, value: Any) -> None:
        self.features[check_feature_name(name)] = value

    @property
    def span(self) -> tuple[float, float]:
        return (self.window.start_s, self.window.end_s) if self.window is not None else (0.0, 10.0)


def audio_hash(samples: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(samples, dtype=np.float32).tobytes()).hexdigest()[:16]
