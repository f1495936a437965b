"""The embedded CLAP on tiny random configs: it learns a shared signal, saves only what it trained,
loads back bit-identical, and embeds the same input the same way whatever it is batched with."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from musiccap.encoders.embedded_clap import EmbeddedClap, EmbeddedClapConfig
from musiccap.retrieval import retrieval_metrics
from train.trainer import TrainConfig, fit

FRAME_DIM, POOLED_DIM, N_FRAMES = 24, 10, 40
INSTRUMENTS = ["piano", "electric guitar", "drums", "violin"]
TEMPOS = ["slow", "fast"]
MODES = ["major", "minor"]
MOODS = ["calm", "energetic"]


@dataclass
class Features:  # the two AudioFeatures fields the CLAP reads
    frames: np.ndarray
    pooled: np.ndarray


@dataclass
class Item:  # the FeatureItem fields the CLAP reads
    id: str
    caption: str
    features: Features


def tiny_config(**overrides) -> EmbeddedClapConfig:
    values = dict(
        frame_dim=FRAME_DIM, pooled_dim=POOLED_DIM, d_audio=32, n_layers=1, n_heads=2, ff_dim=64, embed_dim=16,
        head_hidden=32, dropout=0.0,
    )  # fmt: skip
    return EmbeddedClapConfig(**{**values, **overrides})


def toy_items(seed: int = 0, noise: float = 0.5) -> list[Item]:
    """32 clips, one per attribute combination: each attribute adds its own pattern to the frames
    and the pooled vector, and the caption names the attributes, so audio and text share a signal."""
    rng = np.random.default_rng(seed)
    words = [INSTRUMENTS, TEMPOS, MODES, MOODS]
    frame_patterns = [rng.standard_normal((len(values), FRAME_DIM)) for values in words]
    pooled_patterns = [rng.standard_normal((len(values), POOLED_DIM)) for values in words]
    items = []
    for n, choice in enumerate(itertools.product(*[range(len(values)) for values in words])):
        frame_signal = sum(patterns[c] for patterns, c in zip(frame_patterns, choice))
        pooled_signal = sum(patterns[c] for patterns, c in zip(pooled_patterns, choice))
        frames = frame_signal + noise * rng.standard_normal((N_FRAMES, FRAME_DIM))
        pooled = pooled_signal + noise * rng.standard_normal(POOLED_DIM)
        instrument, tempo, mode, mood = (values[c] for values, c in zip(words, choice))
        caption = f"a {tempo} {mood} {instrument} piece in a {mode} key"
        items.append(
            Item(f"clip{n:02d}", caption, Features(frames.astype(np.float32), pooled.astype(np.float32)))
        )
    return items


@pytest.fixture(scope="module")
def items() -> list[Item]:
    return toy_items()


def test_infonce_falls_and_aligns_audio_with_text(items, tmp_path):
    torch.manual_seed(0)
    model = EmbeddedClap.build(
        {"d_audio": 32, "n_layers": 1, "n_heads": 2, "ff_dim": 64, "embed_dim": 16, "head_hidden": 32},
        items,
    )
    assert (model.config.frame_dim, model.config.pooled_dim) == (FRAME_DIM, POOLED_DIM)  # taken from the data
    before = retrieval_metrics(
        model.embed_audio([i.features for i in items]), model.embed_text([i.caption for i in items])
    )
    config = TrainConfig(epochs=25, batch_size=16, lr=3e-3, optimizer="adamw", patience=100, seed=0)
    log, _ = fit(model, items, items, config, tmp_path / "clap")
    first, last = log[0]["train"]["loss"], log[-1]["train"]["loss"]
    assert last < 0.5 * first, (first, last)
    trained = EmbeddedClap.from_pretrained(tmp_path / "clap")  # the trainer kept the best epoch
    after = retrieval_metrics(
        trained.embed_audio([i.features for i in items]), trained.embed_text([i.caption for i in items])
    )
    chance = after["baseline_random"]["t2a_r5"]
    assert after["metrics"]["t2a_r5"] >= 3 * chance and after["metrics"]["a2t_r5"] >= 3 * chance, after
    assert after["metrics"]["t2a_r5"] > before["metrics"]["t2a_r5"]


def test_training_batch_masks_duplicate_captions_as_negatives(items):
    model = EmbeddedClap(tiny_config())
    batch = model.collate([items[0], items[1], items[0]])
    assert batch["caption_group"].tolist() == [0, 1, 0]
    logits = model.contrastive(batch).logits
    assert torch.isinf(logits[0, 2]) and torch.isinf(logits[2, 0]) and torch.isfinite(logits.diagonal()).all()


@pytest.mark.parametrize("tuned", [0, 1])
def test_round_trip_saves_only_trained_weights_and_embeds_identically(items, tmp_path, tuned):
    torch.manual_seed(1)
    model = EmbeddedClap(tiny_config(text_tuned_layers=tuned)).eval()
    with torch.no_grad():  # move the tuned MiniLM layer off its packaged weights, so loading must restore it
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(0.01 * torch.randn_like(parameter))
    model.save_pretrained(tmp_path)
    saved = load_file(str(tmp_path / "model.safetensors"))
    bert_keys = {key for key in saved if key.startswith("text.bert.")}
    if tuned:
        assert bert_keys and all(key.startswith("text.bert.encoder.layer.5.") for key in bert_keys)
    else:
        assert not bert_keys  # frozen MiniLM is rebuilt from the package, never stored
    assert json.loads((tmp_path / "config.json").read_text())["architecture"] == "clap"

    loaded = EmbeddedClap.from_pretrained(tmp_path)
    features = [i.features for i in items[:5]]
    captions = [i.caption for i in items[:5]]
    np.testing.assert_array_equal(model.embed_audio(features), loaded.embed_audio(features))
    np.testing.assert_array_equal(model.embed_text(captions), loaded.embed_text(captions))


def test_load_refuses_weights_that_do_not_match_the_config(tmp_path):
    EmbeddedClap(tiny_config()).save_pretrained(tmp_path)
    config_file = tmp_path / "config.json"
    document = json.loads(config_file.read_text())
    document["config"]["text_tuned_layers"] = 1
    config_file.write_text(json.dumps(document))
    with pytest.raises(ValueError, match="do not match"):
        EmbeddedClap.from_pretrained(tmp_path)


def test_embeddings_are_unit_and_batch_invariant(items):
    model = EmbeddedClap(tiny_config()).eval()
    captions = ["a piano", "a fast energetic electric guitar piece with drums in a minor key", "violin"]
    together = model.embed_text(captions)
    alone = np.concatenate([model.embed_text([c]) for c in captions])
    np.testing.assert_array_equal(together, alone)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, rtol=1e-5)
    short = Features(items[1].features.frames[:30], items[1].features.pooled)  # a shorter window
    features = [items[0].features, short, items[2].features]
    np.testing.assert_array_equal(
        model.embed_audio(features), np.concatenate([model.embed_audio([f]) for f in features])
    )


def test_audio_tokens_and_differentiable_text_path(items):
    model = EmbeddedClap(tiny_config()).eval()
    batch = model.audio_batch([i.features for i in items[:3]])
    tokens, embedding = model.audio_tokens(batch["frames"], batch["mask"], batch["pooled"])
    assert tokens.shape == (3, N_FRAMES, model.audio_dim) and embedding.shape == (3, model.embed_dim)
    np.testing.assert_allclose(
        embedding.detach().numpy(), model.embed_audio([i.features for i in items[:3]]), atol=1e-5
    )

    # One-hot "expected embeddings" reproduce the caption's embedding, and gradients reach the inputs.
    encoded = model.tokenizer(["a slow calm piano piece"], return_tensors="pt")
    weight = model.text_input_embeddings.weight
    one_hot = torch.nn.functional.one_hot(encoded["input_ids"], weight.shape[0]).float().requires_grad_()
    text = model.text_embedding_from_inputs_embeds(one_hot @ weight, encoded["attention_mask"])
    np.testing.assert_allclose(
        text.detach().numpy(), model.embed_text(["a slow calm piano piece"]), atol=1e-5
    )
    text.sum().backward()
    assert one_hot.grad is not None and one_hot.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.text.bert.parameters())  # the frozen tower stays frozen
