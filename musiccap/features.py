"""Features shared by every captioner of one clip: computed once per window, memoised on the Clip.

The embedded audio encoder (musicnn + chroma/key + tempogram) is loaded once per process; a clip
built from cached features (training, evaluation) never touches it. The full profile's HTSAT CLAP
memoises its own input on the clip the same way (``HtsatClap.audio_inputs``: the log-mel, under
``HtsatClap.feature_name``).
"""

from __future__ import annotations

from functools import lru_cache

from musiccap.clip import AUDIO_FEATURES, Clip


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
