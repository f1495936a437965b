"""The HTSAT-CLAP backend (full profile) on a tiny LAION-style ClapModel folder the test saves itself:
the embedded CLAP's contract, deterministic unit embeddings, the log-mel memo and the training cache."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from musiccap.audio import Window
from musiccap.clip import Clip
from musiccap.encoders.clap import ClapMel, ClapMelFeatures, tokens_inside
from musiccap.encoders.clap_loader import EMBEDDED, HTSAT, clap_kind, feature_encoder, load_clap
from musiccap.encoders.embedded_clap import EmbeddedClap
from musiccap.encoders.htsat_clap import HtsatClap, htsat_time_tokens
from tests.toy import TEMPLATES, save_tiny_clap, save_tiny_htsat_clap, toy_waveform
from train.data import load_items

RATE = 16000


@pytest.fixture(scope="module")
def htsat_dir(tmp_path_factory):
    return save_tiny_htsat_clap(tmp_path_factory.mktemp("htsat"))


@pytest.fixture(scope="module")
def clap(htsat_dir) -> HtsatClap:
    return load_clap(htsat_dir)


def window_clip(index: int) -> Clip:
    samples = toy_waveform(index, RATE)
    return Clip(Window(samples=samples, sample_rate=RATE, start_s=0.0, end_s=len(samples) / RATE))


def test_load_clap_picks_the_backend_from_the_folder(htsat_dir, tmp_path):
    assert clap_kind(htsat_dir) == HTSAT and isinstance(load_clap(htsat_dir), HtsatClap)
    embedded = save_tiny_clap(tmp_path / "embedded", frame_dim=8, pooled_dim=4)
    assert clap_kind(embedded) == EMBEDDED and isinstance(load_clap(embedded), EmbeddedClap)
    assert isinstance(feature_encoder(htsat_dir), ClapMel)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text(json.dumps({"model_type": "t5"}))
    with pytest.raises(ValueError, match="neither"):
        load_clap(tmp_path / "other")


def test_embeddings_are_unit_vectors_and_deterministic(clap):
    clips = [window_clip(i) for i in range(3)]
    features = [clap.audio_inputs(clip) for clip in clips]
    assert clips[0].features[clap.feature_name] is features[0]  # memoised on the clip
    assert features[0].input_features.shape == (1, 1001, 64) and features[0].duration_s == 3.0
    audio = clap.embed_audio(features)
    assert audio.shape == (3, clap.embed_dim) == (3, 16)
    np.testing.assert_allclose(np.linalg.norm(audio, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(audio, clap.embed_audio(features))
    np.testing.assert_array_equal(audio[1:2], clap.embed_audio(features[1:2]))  # alone = with others
    assert not np.allclose(audio[0], audio[1])
    again = clap.audio_inputs(window_clip(0))  # a fresh clip of the same audio: same log-mel
    np.testing.assert_array_equal(again.input_features, features[0].input_features)

    text = clap.embed_text(TEMPLATES[:2])
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(text, clap.embed_text(TEMPLATES[:2]))


def test_frame_tokens_mask_and_times(clap):
    features = [clap.audio_inputs(window_clip(i)) for i in range(3)]  # 3, 4 and 5 s
    batch = clap.audio_batch(features)
    tokens, embedding = clap.audio_tokens(batch["frames"], batch["mask"], batch["pooled"])
    assert clap.n_tokens == htsat_time_tokens(clap.encoder.model.config.audio_config) == 32
    assert tokens.shape == (3, clap.n_tokens, clap.audio_dim) == (3, 32, 128)
    np.testing.assert_allclose(embedding.detach().numpy(), clap.embed_audio(features), atol=1e-5)
    assert batch["mask"].sum(1).tolist() == [10, 13, 16]  # tokens of 0.3125 s inside the real audio
    times = clap.token_times(features[0])
    assert len(times) == 10 and times[-1] < 3.0
    seconds, keep = tokens_inside(32, 0.01)
    assert keep.sum() == 1 and seconds[0] == pytest.approx(10 / 64)  # however short, one token stays


def test_text_path_from_inputs_embeds_is_differentiable_and_matches(clap):
    encoded = clap.tokenizer([TEMPLATES[0]], return_tensors="pt")
    weight = clap.text_input_embeddings.weight
    one_hot = torch.nn.functional.one_hot(encoded["input_ids"], weight.shape[0]).float().requires_grad_()
    text = clap.text_embedding_from_inputs_embeds(one_hot @ weight, encoded["attention_mask"])
    np.testing.assert_allclose(text.detach().numpy(), clap.embed_text([TEMPLATES[0]]), atol=1e-5)
    text.sum().backward()
    assert one_hot.grad is not None and one_hot.grad.abs().sum() > 0


def test_training_cache_holds_log_mels_keyed_by_the_extractor(htsat_dir, tmp_path):
    corpus = tmp_path / "corpus"
    (corpus / "audio").mkdir(parents=True)
    rows = []
    for index in range(4):
        sf.write(corpus / "audio" / f"c{index}.flac", toy_waveform(index, RATE), RATE)
        rows.append({"id": f"c{index}", "audio": f"audio/c{index}.flac", "caption": TEMPLATES[index]})
    (corpus / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    encoder = feature_encoder(htsat_dir)
    items = load_items(corpus, "train", encoder=encoder, cache_dir=tmp_path / "cache")
    assert all(isinstance(item.features, ClapMelFeatures) for item in items)
    assert len(list((tmp_path / "cache" / encoder.version).glob("*.safetensors"))) == 4
    cached = load_items(corpus, "train", encoder=encoder, cache_dir=tmp_path / "cache")
    for first, second in zip(items, cached, strict=True):
        np.testing.assert_array_equal(first.features.input_features, second.features.input_features)
        assert first.features.duration_s == second.features.duration_s


def test_the_scorer_loads_an_htsat_clap_and_memoises_its_clip_embedding(htsat_dir):
    from musiccap.scoring import ClapScorer

    scorer = ClapScorer.from_pretrained(htsat_dir)
    clip = window_clip(1)
    embedding = scorer.embed_clip(clip)
    np.testing.assert_array_equal(embedding, scorer.embed_clip(window_clip(1)))
    assert scorer.model.feature_name in clip.features  # the log-mel, shared with the captioners
    similarities = scorer.audio_text(embedding, TEMPLATES)
    assert len(similarities) == 4 and all(-1.0 <= s <= 1.0 for s in similarities)


def test_a_hub_id_is_fetched_with_huggingface_hub_safetensors_only(htsat_dir, tmp_path, monkeypatch):
    import huggingface_hub

    calls = []

    def snapshot_download(repo_id, allow_patterns=None, **kwargs):
        calls.append((repo_id, allow_patterns))
        if repo_id == "someone/pickled-clap":
            return str(tmp_path)  # a repository without safetensors weights
        if repo_id != "laion/larger_clap_music":
            raise huggingface_hub.errors.RepositoryNotFoundError("no such repository")
        return str(htsat_dir)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    assert isinstance(load_clap("laion/larger_clap_music"), HtsatClap)
    assert calls[0][0] == "laion/larger_clap_music" and "*.safetensors" in calls[0][1]
    assert not any(pattern.endswith((".bin", ".pt", ".ckpt")) for pattern in calls[0][1])
    with pytest.raises(FileNotFoundError, match="safetensors"):
        load_clap("someone/pickled-clap")
    with pytest.raises(FileNotFoundError, match="neither a local folder nor a Hub repository"):
        load_clap("nobody/nothing")
