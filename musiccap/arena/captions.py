"""Where arena captions come from, kept behind one callable so the arena never imports model code.

The app passes a `CaptionSource` that runs a captioner and scores its caption against the clip;
`CachedCaptionSource` makes sure each (clip, captioner) is captioned and scored once, so serving a pair
is a dictionary lookup after the first time. The scores are the server's own: every vote stores them
(musiccap.arena.leaderboard.metric_agreement asks whether they agree with the listeners).
"""

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from .clips import ArenaClip


@dataclass(frozen=True)
class ServedCaption:
    text: str
    decoding: dict = field(default_factory=dict)  # the DecodingConfig as a dict, stored with the vote
    checkpoint_hash: str = ""
    clap_similarity: float | None = None  # the caption's CLAP similarity to the clip; None without CLAP
    grounding: float | None = None  # musiccap.analysis.grounding; None when it states nothing checkable


CaptionSource = Callable[[ArenaClip, str], ServedCaption]


class CachedCaptionSource:
    """Thread-safe memo of a caption source keyed by (clip hash, model), least recently used evicted.

    One lock per key: two listeners asking for the same uncached caption wait for one model run
    instead of starting two.
    """

    def __init__(self, source: CaptionSource, max_entries: int = 8192):
        self.source = source
        self.max_entries = max_entries
        self._cache: OrderedDict[tuple[str, str], ServedCaption] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._key_locks: dict[tuple[str, str], threading.Lock] = {}

    def __call__(self, clip: ArenaClip, model: str) -> ServedCaption:
        key = (clip.sha256, model)
        with self._cache_lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._cache_lock:
                if key in self._cache:
                    return self._cache[key]
            caption = self.source(clip, model)
            with self._cache_lock:
                self._cache[key] = caption
                while len(self._cache) > self.max_entries:
                    self._cache.popitem(last=False)
                self._key_locks.pop(key, None)
        return caption

    def warm(self, clips: list[ArenaClip], models: list[str]) -> None:
        """Caption every clip with every model ahead of time (run it in a background thread)."""
        for clip in clips:
            for model in models:
                self(clip, model)


@dataclass(frozen=True)
class FixedCaptionSource:
    """Deterministic captions from fixed phrases: the standalone server and the load tests need no model."""

    phrases: dict[str, str]

    def __call__(self, clip: ArenaClip, model: str) -> ServedCaption:
        if model not in self.phrases:
            raise KeyError(f"no fixed caption for model {model!r}")
        return ServedCaption(
            text=f"{self.phrases[model]} ({clip.title})",
            decoding={"strategy": "fixed"},
            checkpoint_hash=f"fixed-{model}",
        )


DEMO_PHRASES = {
    "demo-terse": "A piano melody.",
    "demo-tags": "piano, slow, calm, major key, soft",
    "demo-verbose": "A calm, slow solo piano piece in a major key, played softly with gentle reverb.",
    "demo-wrong": "An aggressive heavy metal song with distorted guitars and screaming vocals.",
}
