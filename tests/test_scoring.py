"""CLAP A-T and T-T scores: the same input gives the same score, every time and in any batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from musiccap.clip import AUDIO_FEATURES, Clip
from musiccap.encoders.embedded_clap import EmbeddedClap
from musiccap.scoring import ClapScorer, load_clap
from tests.test_clap import tiny_config, toy_items


@pytest.fixture(scope="module")
def scorer(tmp_path_factory) -> ClapScorer:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("clap")
    EmbeddedClap(tiny_config()).save_pretrained(path)
    return ClapScorer.embedded(path)


@pytest.fixture(scope="module")
def items():
    return toy_items()


def test_same_clip_same_caption_same_score(scorer, items):
    captions = [item.caption for item in items[:4]]
    clip = Clip(None, clip_id=items[0].id, features={AUDIO_FEATURES: items[0].features})
    first = scorer.audio_text(scorer.embed_clip(clip), captions)
    fresh = Clip(None, clip_id=items[0].id, features={AUDIO_FEATURES: items[0].features})
    second = scorer.audio_text(scorer.embed_clip(fresh), list(reversed(captions)))
    assert first == list(reversed(second))  # exact, whatever order or company the captions come in
    alone = [scorer.audio_text(scorer.embed_clip(clip), [c])[0] for c in captions]
    assert first == alone
    assert all(-1.0 <= s <= 1.0 for s in first)


def test_pairwise_audio_text_matches_one_by_one(scorer, items):
    audio = scorer.embed_audio([item.features for item in items[:5]])
    captions = [item.caption for item in items[:5]]
    pairwise = scorer.audio_text(audio, captions)
    assert pairwise == [scorer.audio_text(audio[i], [captions[i]])[0] for i in range(5)]
    with pytest.raises(ValueError):
        scorer.audio_text(audio, captions[:3])


def test_text_text(scorer):
    scores = scorer.text_text(
        ["a slow calm piano piece", "a fast energetic drum solo", "a slow calm piano piece"],
        [
            "a slow calm piano piece",
            "a slow calm piano piece",
            ["a slow calm piano piece", "a fast energetic drum solo"],
        ],
    )
    assert scores[0] == pytest.approx(1.0, abs=1e-6)  # a caption against itself
    assert scores[1] < scores[0]
    single = scorer.text_text(
        ["a slow calm piano piece"] * 2, ["a slow calm piano piece", "a fast energetic drum solo"]
    )
    assert scores[2] == pytest.approx(np.mean(single), abs=1e-6)  # several references: the mean


def test_clip_embedding_is_memoised_per_clip(scorer, items):
    clip = Clip(None, clip_id=items[3].id, features={AUDIO_FEATURES: items[3].features})
    first = scorer.embed_clip(clip)
    assert any(key.startswith("clap_audio_embedding") for key in clip.features)
    np.testing.assert_array_equal(first, scorer.embed_clip(clip))
    np.testing.assert_array_equal(first, scorer.embed_audio([items[3].features])[0])


def test_load_clap_recognises_an_embedded_checkpoint(tmp_path):
    EmbeddedClap(tiny_config()).save_pretrained(tmp_path)
    assert isinstance(load_clap(tmp_path), EmbeddedClap)


def test_kept_text_embeddings_are_the_models_own(scorer, monkeypatch):
    captions = ["a slow calm piano piece", "a fast energetic drum solo", "a slow calm piano piece"]
    expected = scorer.model.embed_text(captions)
    fresh = ClapScorer(scorer.model)  # nothing kept yet
    embedded = []
    embed = scorer.model.embed_text
    monkeypatch.setattr(
        scorer.model, "embed_text", lambda texts: embedded.append(list(texts)) or embed(texts)
    )
    assert np.array_equal(fresh.embed_text(captions), expected)  # bit for bit
    assert np.array_equal(fresh.embed_text(list(reversed(captions))), expected[::-1])
    assert embedded == [captions[:2]]  # each caption once, the second call from what was kept
    assert fresh.embed_text([]).shape == (0, expected.shape[1])


def test_text_embeddings_kept_are_the_last_used(scorer, monkeypatch):
    monkeypatch.setattr("musiccap.scoring.TEXT_CACHE_SIZE", 2)
    fresh = ClapScorer(scorer.model)
    embedded = []
    embed = scorer.model.embed_text
    monkeypatch.setattr(
        scorer.model, "embed_text", lambda texts: embedded.append(list(texts)) or embed(texts)
    )
    for caption in ["piano", "drums", "piano", "strings"]:  # "drums" is the least recently used
        fresh.embed_text([caption])
    fresh.embed_text(["piano", "strings"])
    fresh.embed_text(["drums"])
    assert embedded == [["piano"], ["drums"], ["strings"], ["drums"]]


def test_embedding_in_training_mode_is_the_eval_one_and_keeps_the_mode(scorer):
    model = scorer.model
    captions = ["a slow calm piano piece"]
    in_eval = model.embed_text(captions)
    model.train()
    try:
        assert np.array_equal(model.embed_text(captions), in_eval)  # no dropout
        assert model.training and model.audio.training
    finally:
        model.eval()
    assert not any(module.training for module in model.modules())
