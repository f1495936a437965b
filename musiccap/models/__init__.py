"""Every captioner architecture; importing this package registers them all."""

from musiccap.models import alcap, baselines, blap, csa, muscaps, nearest, rgmc  # noqa: F401
from musiccap.models.base import Captioner, CaptionResult, Clip, load_captioner, registry

__all__ = ["CaptionResult", "Captioner", "Clip", "load_captioner", "registry"]
