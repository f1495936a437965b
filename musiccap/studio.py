"""Every shipped captioner loaded once, run on one piece of audio: what the app, CLI and benchmark share.

The studio owns the expensive shared parts (the embedded audio encoder, the CLAP scorer) so a
window's features are computed once and reused by every captioner and by the similarity chart.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from musiccap.audio import Audio, Window, windows
from musiccap.clip import LYRICS, Clip
from musiccap.decoding import DecodingConfig
from musiccap.features import audio_features
from musiccap.models.base import Captioner, CaptionResult, load_captioner, read_config

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CHECKPOINTS = REPO / "checkpoints"
# Display order: the two floors first, then the papers in publication order.
MODEL_ORDER = ("random", "nearest", "muscaps", "alcap", "rgmc", "blap", "csa")


@dataclass
class WindowCaptions:
    window: Window
    clip: Clip
    results: dict[str, CaptionResult] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


class Studio:
    """``clean_text``: show captions cleaned (musiccap/text.py) rather than as decoded, the paper's text."""

    def __init__(
        self,
        checkpoints_dir: str | Path = DEFAULT_CHECKPOINTS,
        models: list[str] | None = None,
        *,
        clean_text: bool = True,
    ):
        self.checkpoints_dir = Path(checkpoints_dir)
        self.clean_text = clean_text
        self.captioners: dict[str, Captioner] = {}
        self.load_errors: dict[str, str] = {}
        found = {}
        for folder in sorted(p for p in self.checkpoints_dir.iterdir() if (p / "config.json").is_file()):
            architecture = read_config(folder).get("architecture")
            if architecture and architecture != "clap":  # CLAP and BLAP's frozen LM are parts, not captioners
                found[folder.name] = folder
        wanted = models or sorted(found, key=lambda n: (MODEL_ORDER.index(n) if n in MODEL_ORDER else 99, n))
        for name in wanted:
            if name not in found:
                raise ValueError(
                    f"no checkpoint named {name!r} in {self.checkpoints_dir}; have {sorted(found)}"
                )
            try:
                self.captioners[name] = load_captioner(found[name])
            except Exception as error:  # one broken checkpoint must not take the others down
                self.load_errors[name] = f"{type(error).__name__}: {error}"
        self._scorer = None

    @property
    def scorer(self):
        """CLAP similarity (None when no CLAP checkpoint is shipped)."""
        if self._scorer is None and (self.checkpoints_dir / "clap" / "config.json").is_file():
            from musiccap.scoring import ClapScorer

            self._scorer = ClapScorer.embedded(self.checkpoints_dir / "clap")
        return self._scorer

    def clips(
        self, audio: Audio, window_mode: str = "first", max_windows: int = 6, lyrics: str | None = None
    ):
        result = []
        for window in windows(audio, window_mode, max_windows=max_windows):
            clip = Clip(window)
            if lyrics and lyrics.strip():
                clip.put(LYRICS, lyrics.strip())
            result.append(clip)
        return result

    def caption_clip(self, clip: Clip, name: str, decoding: DecodingConfig | None = None) -> CaptionResult:
        captioner = self.captioners[name]
        decoding = (decoding or captioner.default_decoding).replace(
            clean_text=self.clean_text, dedupe_sentences=self.clean_text
        )
        started = time.perf_counter()
        result = captioner.caption(clip, decoding)
        result.timings.setdefault("total", time.perf_counter() - started)
        return result

    def similarity(self, clip: Clip, texts: list[str]) -> list[float] | None:
        if self.scorer is None or not texts:
            return None
        embedding = self.scorer.embed_clip(clip)
        return [float(s) for s in self.scorer.audio_text(np.asarray([embedding] * len(texts)), texts)]

    def tags(self, clip: Clip, k: int = 10) -> dict[str, float]:
        tags = audio_features(clip).tags
        return dict(sorted(tags.items(), key=lambda item: -item[1])[:k])
