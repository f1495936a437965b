"""``python -m train.diagnostics.rgmc_candidate_use``: does RGMC's caption follow its retrieved candidate where
the candidate is wrong as well as where it is right?"""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.test_rgmc import build, clap_dir, items, trained  # noqa: F401  (fixtures)
from train.diagnostics.rgmc_candidate_use import candidate_use, captioned_with_candidates

TRUTH = {"families": ["piano"], "tempo_class": "fast", "mode": "major", "drums": True, "mood": "happy"}


def test_following_a_right_and_a_wrong_candidate_are_told_apart():
    captions = [
        "A piano plays at a fast tempo in a major key.",  # follows a right candidate
        "A piano plays at a fast tempo in a major key.",  # departs from a wrong one, and is right
        "A piano plays at a slow tempo in a minor key.",  # follows a wrong one
        "A guitar plays at a fast tempo in a major key.",  # departs from a right one
    ]
    candidates = [
        "A piano plays at a fast tempo in a major key.",
        "A guitar plays at a slow tempo in a minor key.",
        "A piano plays at a slow tempo in a minor key.",
        "A piano plays at a fast tempo in a major key.",
    ]
    report = candidate_use(captions, candidates, [TRUTH] * 4)
    assert report["clips"] == 4
    tempo = report["attributes"]["tempo_class"]
    assert tempo["candidate_right"] == 0.5 and tempo["caption_right"] == 0.75
    assert tempo["caption_right_where_candidate_right"] == 1.0
    assert tempo["caption_right_where_candidate_wrong"] == 0.5
    assert tempo["follows_candidate_where_right"] == 1.0 and tempo["follows_candidate_where_wrong"] == 0.5
    families = report["attributes"]["families"]
    assert families["candidate_right"] == 0.75 and families["caption_right"] == 0.75
    assert families["follows_candidate_where_right"] == pytest.approx(2 / 3, abs=1e-4)
    assert (
        families["follows_candidate_where_wrong"] == 0.0
    )  # clip 2: a piano where its candidate said a guitar
    drums = report["attributes"]["drums"]  # no caption states drums: never right, always "following"
    assert drums["caption_right"] == 0.0 and drums["follows_candidate"] == 1.0
    with pytest.raises(ValueError, match="3 captions, 4 candidates"):
        candidate_use(captions[:3], candidates, [TRUTH] * 4)


def test_a_trained_rgmc_is_read_against_its_own_candidates(trained, items, clap_dir):  # noqa: F811
    with_truth = [replace(item, attributes=TRUTH) for item in items[:6]]
    report = captioned_with_candidates(trained, with_truth, "nearest")
    assert report["candidate"] == "nearest" and report["clips"] == 6
    assert set(report["attributes"]) == {"families", "tempo_class", "mode", "drums", "mood"}
    assert trained.config.candidate == "nearest"
    audio_only = build(clap_dir, items, use_text=False)
    with pytest.raises(SystemExit, match="reads no candidate"):
        captioned_with_candidates(audio_only, with_truth)
