"""The two floor baselines of the RGMC paper (Table 3), as captioners.

``random``: a training caption drawn at random, seeded by the clip, so it is reproducible and
has nothing to do with the audio. ``nearest`` (in ``musiccap/models/nearest.py``): the caption of the
training clip whose CLAP audio embedding is closest.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from musiccap.checkpoint import CONFIG_NAME, read_config
from musiccap.decoding import DecodingConfig
from musiccap.models.base import Captioner, CaptionResult, Clip, register

CAPTIONS_NAME = "captions.json"


@register
class RandomCaptioner(Captioner):
    name = "random"
    paper = "Random training caption (floor baseline, RGMC paper Table 3)"

    def __init__(self, captions: list[str], seed: int = 0):
        if not captions:
            raise ValueError("the random baseline needs at least one training caption")
        self.captions = list(captions)
        self.seed = seed

    def generate_batch(self, clips: list[Clip], decoding: DecodingConfig) -> list[CaptionResult]:
        return [self._draw(clip, decoding) for clip in clips]

    def _draw(self, clip: Clip, decoding: DecodingConfig) -> CaptionResult:
        started = time.perf_counter()
        seed = self.seed if decoding.seed is None else decoding.seed
        digest = hashlib.sha256(f"{seed}:{clip.id}".encode()).digest()
        text = self.captions[int.from_bytes(digest[:8], "big") % len(self.captions)]
        return CaptionResult(
            model=self.name,
            text=text,
            tokens=text.split(),
            decoding={"seed": seed},
            timings={"caption": time.perf_counter() - started},
            window=clip.span,
        )

    def save_pretrained(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        config = {"architecture": self.name, "config": {"seed": self.seed, "n_captions": len(self.captions)}}
        (path / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
        (path / CAPTIONS_NAME).write_text(json.dumps(self.captions, indent=0) + "\n")

    @classmethod
    def from_pretrained(cls, path: str | Path) -> RandomCaptioner:
        config = read_config(path)["config"]
        captions = json.loads((Path(path) / CAPTIONS_NAME).read_text())
        return cls(captions, seed=int(config.get("seed", 0)))
