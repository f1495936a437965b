"""Features shared by every captioner of one clip: computed once per window, memoised on the Clip.

The embedded audio encoder (musicnn + chroma/key + tempogram) is loaded once per process; a clip
built from cached features (training, evaluation) never touches it. The full profile's HTSAT CLAP
memoises its own input on the clip the same way (``HtsatClap.audio_inputs``: the log-mel, under
``HtsatClap.feature_name``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # models import this module; importing them back at run time would be circular
    from musiccap.models.base import Clip

AUDIO_FEATURES = "embedded_audio"


@lru_cache(maxsize=1)
def embedded_encoder():
    from musiccap.encoders.embedded import EmbeddedAudioEncoder

    return EmbeddedAudioEncoder()


def audio_features(clip: Clip):
    """The clip's :class:`~musiccap.encoders.embedded.AudioFeatures`."""

    def compute(c: Clip):
        if c.window is None:
            raise ValueError(f"clip {c.id!r} has neither audio nor cached features")
        return embedded_encoder()(c.window.samples, c.window.sample_rate)

    return clip.get(AUDIO_FEATURES, compute)


# Optional lyrics a user typed for the clip (ALCAP reads them; other captioners ignore them).
LYRICS = "lyrics"
