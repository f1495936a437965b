"""Studio.compare: the one path from audio to a comparison, as typed events."""

import pytest

from musiccap.audio import load_audio
from musiccap.decoding import DecodingConfig
from musiccap.registry import CHECKPOINTS
from musiccap.studio import (
    MEAN_VIEW,
    NEIGHBOUR,
    REFERENCE,
    CompareOptions,
    ModelCaption,
    Studio,
    WindowComparison,
)

EXAMPLE = CHECKPOINTS.parent / "examples" / "real-parrotte-desert.ogg"


class Broken:
    default_decoding = DecodingConfig()

    def caption(self, clip, decoding=None):
        raise RuntimeError("out of order")


@pytest.fixture(scope="module")
def studio():
    if not all((CHECKPOINTS / name / "config.json").is_file() for name in ("clap", "nearest", "csa")):
        pytest.skip("no shipped checkpoints")
    return Studio(models=["nearest", "csa"])


def test_compare_yields_each_caption_then_its_window(studio, monkeypatch):
    audio = load_audio(EXAMPLE)
    options = CompareOptions("first", reference="a folk tune on a synth", decoding={"max_new_tokens": 40})
    events = list(studio.compare(audio, options))
    assert [type(e) for e in events] == [ModelCaption, ModelCaption, WindowComparison]
    nearest, csa, window = events
    assert window.captions == [nearest, csa] and window.index == 0
    assert set(window.similarity) == {"nearest", "csa", NEIGHBOUR, REFERENCE}
    assert csa.clap_similarity == window.similarity["csa"]
    assert window.neighbour is not None and window.neighbour.text == nearest.result.text
    assert window.tags and window.features_s > 0
    assert csa.latency_s >= 0 and csa.result.decoding["max_new_tokens"] == 40
    assert csa.result.text[0].isupper() and csa.result.decoded_text  # the studio shows clean text
    heatmap = csa.heatmap
    assert heatmap.views[MEAN_VIEW].shape[0] == len(heatmap.tokens) and heatmap.offset_s == 0.0


def test_a_failing_captioner_is_reported_and_the_others_still_answer(studio, monkeypatch):
    monkeypatch.setitem(studio.captioners, "broken", Broken())
    events = list(studio.compare(load_audio(EXAMPLE)))
    window = events[-1]
    broken = next(c for c in window.captions if c.model == "broken")
    assert broken.result is None and "out of order" in broken.error
    assert "broken" not in window.similarity and window.similarity["csa"] is not None
