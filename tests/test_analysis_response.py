"""train.diagnostics.analysis_response: a captioner that reads a field of the analysis follows it when it is
forced; one that ignores a field does not."""

import numpy as np
import pytest

from musiccap.analysis import Analysis
from musiccap.clip import ANALYSIS
from musiccap.models.base import CaptionResult
from train.data import FeatureItem
from train.diagnostics.analysis_response import FORCED_BPM, forced_analyses, response


class ReadsModeIgnoresTempo:
    """States the mode and the drums its analysis gives, and always 'a medium tempo'."""

    def caption_batch(self, clips, decoding=None):
        results = []
        for clip in clips:
            analysis = clip.features[ANALYSIS]
            drums = "The drums keep time." if analysis.drums > 0.5 else "There are no drums."
            text = f"A piano plays at a medium tempo. The piece is in a {analysis.mode} key. {drums}"
            results.append(CaptionResult("toy", text))
        return results


def analysis(mode: str, drums: float, bpm: float) -> Analysis:
    return Analysis(
        window=(0.0, 10.0),
        tempo_bpm=bpm,
        tempo_class="medium",
        key="C",
        mode=mode,
        drums=drums,
        families={"piano": 0.9},
        heard=["piano"],
        tags={},
        confidence={"tempo": 0.6, "mode": 0.7},
    )


@pytest.fixture
def items() -> list[FeatureItem]:
    rows = [("major", 0.9, 96.0), ("minor", 0.1, 104.0), ("minor", 0.8, 90.0), ("major", 0.2, 110.0)]
    return [
        FeatureItem(
            id=f"v{i}",
            caption="",
            lyrics=None,
            attributes={},
            piece=f"p{i}",
            features=np.zeros(1),
            audio_path="",
            analysis=analysis(*row),
        )
        for i, row in enumerate(rows)
    ]


def test_forcing_changes_one_field_at_full_confidence():
    base = analysis("minor", 0.3, 96.0)
    settings = forced_analyses(base)
    assert set(settings) == {f"tempo={bpm:g}" for bpm in FORCED_BPM} | {
        "mode=major",
        "mode=minor",
        "drums=absent",
        "drums=present",
    }
    attribute, value, fast = settings["tempo=170"]
    assert (attribute, value, fast.tempo_class, fast.tempo_bpm, fast.confidence["tempo"]) == (
        "tempo_class",
        "fast",
        "fast",
        170.0,
        1.0,
    )
    assert fast.mode == base.mode and fast.drums == base.drums
    assert settings["mode=major"][2].mode == "major" and settings["mode=major"][2].tempo_bpm == 96.0
    assert settings["drums=present"][2].drums == 1.0


def test_a_field_read_is_followed_and_a_field_ignored_is_not(items):
    result = response(ReadsModeIgnoresTempo(), items)
    assert result["mode=major"] == {"follows": 1.0, "changed": 0.5, "stated": 4}
    assert result["mode=minor"] == {"follows": 1.0, "changed": 0.5, "stated": 4}
    assert result["drums=present"]["follows"] == 1.0 and result["drums=present"]["changed"] == 0.5
    assert result["tempo=170"] == {"follows": 0.0, "changed": 0.0, "stated": 4}
    assert result["tempo=60"]["follows"] == 0.0
    assert result["tempo=100"]["follows"] == 1.0  # medium: what it always says
