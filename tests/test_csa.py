"""Kim & Park (csa) on tiny random components: a tiny embedded CLAP (real MiniLM text tower), toy captions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from musiccap.decoding import DecodingConfig
from musiccap.features import AUDIO_FEATURES
from musiccap.models.base import WEIGHTS_NAME, Clip, config_from_dict, load_captioner
from musiccap.models.csa import (
    BOS,
    EOS,
    NEVER_GENERATED,
    CsaCaptioner,
    CsaConfig,
    embedded_pitch_class_blocks,
    pitch_shift_frames,
)
from tests.toy import TEMPLATES, save_tiny_clap, toy_item
from train.__main__ import BuildContext
from train.data import FeatureItem

CONFIGS = Path(__file__).resolve().parents[1] / "train" / "configs"
# The embedded layout in miniature: 8 "musicnn" columns | chroma 12 | key 24 | tempogram 24.
FRAME_DIM, POOLED_DIM = 8 + 12 + 24 + 24, 6
TINY = {"n_layers": 2, "n_heads": 2, "width": 32, "ff_dim": 64, "dropout": 0.0, "semantic_steps": 2}


def make_item(index: int, rng: np.random.Generator) -> FeatureItem:
    return toy_item(index, rng, frame_dim=FRAME_DIM, pooled_dim=POOLED_DIM)


@pytest.fixture(scope="module")
def clap_dir(tmp_path_factory) -> Path:
    return save_tiny_clap(tmp_path_factory.mktemp("clap"), FRAME_DIM, POOLED_DIM)


@pytest.fixture(scope="module")
def items() -> list[FeatureItem]:
    rng = np.random.default_rng(0)
    return [make_item(i, rng) for i in range(8)]


def build(clap_dir: Path, items, **overrides) -> CsaCaptioner:
    torch.manual_seed(0)
    context = BuildContext(clap_path=str(clap_dir), feature_dims=(FRAME_DIM, POOLED_DIM, 200), corpus_dir="")
    return CsaCaptioner.build({**TINY, **overrides}, items, context)


def clip_of(item: FeatureItem) -> Clip:
    return Clip(None, clip_id=item.id, features={AUDIO_FEATURES: item.features})


def memory_of(model: CsaCaptioner, items):
    batch = model.collate(items)
    audio = model.encode_audio(batch["frames"], batch["frame_mask"], batch["pooled"])
    return batch, audio


def test_pitch_shift_rotates_only_pitch_class_blocks():
    blocks = embedded_pitch_class_blocks(FRAME_DIM)
    assert blocks == [[8, 20], [20, 32], [32, 44]]
    frames = torch.randn(3, 5, FRAME_DIM)
    frames[0, :, 8:20] = 0.0
    frames[0, :, 8] = 1.0  # chroma energy on C
    shifted = pitch_shift_frames(frames, torch.tensor([2, 12, -5]), blocks)
    assert torch.equal(shifted[0, :, 8:20].argmax(-1), torch.full((5,), 2))  # C + 2 semitones = D
    assert torch.equal(shifted[0, :, 20:32], frames[0, :, 20:32].roll(2, dims=-1))  # C major -> D major
    assert torch.equal(shifted[1], frames[1])  # an octave is the identity
    untouched = list(range(8)) + list(range(44, FRAME_DIM))
    assert torch.equal(shifted[:, :, untouched], frames[:, :, untouched])
    back = pitch_shift_frames(shifted, torch.tensor([-2, 0, 5]), blocks)
    assert torch.equal(back, frames)


def test_vocabulary_is_pruned_and_round_trips(clap_dir, items):
    model = build(clap_dir, items)
    n_words = len(set(" ".join(TEMPLATES).split()))
    assert model.config.vocab_size <= n_words + 4 < 100  # caption-sized, not MiniLM's 30,522
    ids = model.encode_captions([TEMPLATES[1]])[0]
    assert min(ids) > EOS
    assert model.decode_ids(ids)[0] == TEMPLATES[1]


def test_loss_terms_are_finite_and_the_total_falls(clap_dir, items):
    model = build(clap_dir, items)
    model.train()
    batch = model.collate(items)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    history = []
    for _ in range(30):
        losses = model(batch)
        assert set(losses) == {"loss", "nll", "contrastive", "semantic"}
        assert all(torch.isfinite(value) for value in losses.values())
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
        history.append(float(losses["loss"].detach()))
    assert np.mean(history[-5:]) < 0.7 * np.mean(history[:5])


def test_semantic_loss_gradient_reaches_the_decoder_not_the_frozen_towers(clap_dir, items):
    model = build(clap_dir, items, contrastive_weight=0.0)
    batch, audio = memory_of(model, items)
    keys, values = model.decoder.memory_cache(audio.memory)
    logits = model.decoder(batch["input_ids"], keys, values, audio.memory_mask).logits
    loss = model.semantic_alignment_loss(logits, batch["caption_lengths"], batch["text_embedding"])
    loss.backward()
    assert 0.0 < float(loss.detach()) < 2.0
    for parameter in (model.decoder.token_embedding.weight, model.decoder.layers[0].mlp[0].weight):
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.clap.parameters())  # the CLAP is frozen (M2-M4)


def test_semantic_rows_subsample_the_batch(clap_dir, items):
    """With semantic_rows = k only k captions of the batch reach the text tower, and only their logits get gradient."""
    model = build(clap_dir, items, contrastive_weight=0.0, semantic_rows=2)
    batch, audio = memory_of(model, items)
    keys, values = model.decoder.memory_cache(audio.memory)
    logits = (
        model.decoder(batch["input_ids"], keys, values, audio.memory_mask).logits.detach().requires_grad_()
    )
    loss = model.semantic_alignment_loss(logits, batch["caption_lengths"], batch["text_embedding"])
    loss.backward()
    rows_with_gradient = int((logits.grad.abs().sum(dim=(1, 2)) > 0).sum())
    assert rows_with_gradient == 2 < logits.shape[0]
    assert 0.0 < float(loss.detach()) < 2.0


def test_kv_cached_steps_equal_the_full_forward(clap_dir, items):
    model = build(clap_dir, items).eval()
    batch, audio = memory_of(model, items[:3])
    keys, values = model.decoder.memory_cache(audio.memory)
    tokens = torch.randint(4, model.config.vocab_size, (3, 7))
    tokens[:, 0] = BOS
    with torch.no_grad():
        full = model.decoder(tokens, keys, values, audio.memory_mask)
        past_keys, past_values = model.decoder.empty_cache(3)
        state = {"memory_keys": keys, "memory_values": values, "memory_mask": audio.memory_mask}
        state.update(keys=past_keys, values=past_values)
        for position in range(tokens.shape[1]):
            logits, state, attention = model.decode_step(tokens[:, position], state)
            expected_logits = full.logits[:, position].clone()
            expected_logits[:, NEVER_GENERATED] = float("-inf")  # decoding never emits PAD, UNK, BOS
            torch.testing.assert_close(logits, expected_logits, atol=1e-5, rtol=1e-5)
            expected = full.cross_attention[:, :, :, position].reshape(3, -1)
            torch.testing.assert_close(attention, expected, atol=1e-6, rtol=1e-5)


def test_beam_one_is_greedy_and_attention_is_per_token_over_time(clap_dir, items):
    model = build(clap_dir, items).eval()
    decoding = DecodingConfig(num_beams=1, max_new_tokens=12)
    result = model.caption(clip_of(items[1]), decoding)
    _, audio = memory_of(model, items[1:2])
    keys, values = model.decoder.memory_cache(audio.memory)
    greedy = [BOS]
    with torch.no_grad():
        while len(greedy) <= decoding.max_new_tokens:
            logits = model.decoder(torch.tensor([greedy]), keys, values, audio.memory_mask).logits[0, -1]
            logits[NEVER_GENERATED] = float("-inf")
            greedy.append(int(logits.argmax()))
            if greedy[-1] == EOS:
                break
    expected = [t for t in greedy[1:] if t != EOS]
    assert result.text == model.decode_ids(expected)[0]

    n_tokens, n_frames = len(expected), items[1].features.frames.shape[0]
    assert result.attention.shape == (n_tokens, n_frames) and len(result.tokens) == n_tokens
    np.testing.assert_allclose(result.attention.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(result.attention_times, items[1].features.frame_times)
    views = result.attention_views
    assert len(views) == 2 + 2 * 2 and views["layer 2, head 1"].shape == (n_tokens, n_frames)
    mean_of_layers = np.mean([views["layer 1"], views["layer 2"]], axis=0)
    np.testing.assert_allclose(mean_of_layers, result.attention, atol=1e-6)
    assert result.audio_embedding.shape == (16,)


def test_batched_beam_search_equals_one_clip_at_a_time(clap_dir, items):
    model = build(clap_dir, items).eval()
    decoding = DecodingConfig(num_beams=3, max_new_tokens=10, no_repeat_ngram_size=2)
    clips = [clip_of(item) for item in items[:4]]  # uneven frame counts: padded in the batch
    batched = model.caption_batch(clips, decoding)
    for clip, result in zip(clips, batched, strict=True):
        alone = model.caption(clip, decoding)
        assert alone.text == result.text
        np.testing.assert_allclose(alone.attention, result.attention, atol=1e-5)


@pytest.mark.parametrize("train_encoder", [False, True])
def test_save_load_gives_the_same_model_and_keeps_the_clap_out(clap_dir, items, tmp_path, train_encoder):
    model = build(clap_dir, items, train_encoder=train_encoder)
    if train_encoder:  # make the trained tower differ from the CLAP checkpoint's
        with torch.no_grad():
            model.audio_tower.input_proj.weight.add_(0.5)
    model.save_pretrained(tmp_path)
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / WEIGHTS_NAME))
    assert "minilm_ids" in saved and not any("bert" in key or key.startswith("clap.") for key in saved)
    assert any(key.startswith("audio_tower.") for key in saved) == train_encoder

    loaded = load_captioner(tmp_path)
    assert isinstance(loaded, CsaCaptioner)
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    decoding = DecodingConfig(num_beams=2, max_new_tokens=8)
    clip = clip_of(items[2])
    assert loaded.caption(clip, decoding).text == model.eval().caption(clip, decoding).text


def test_ablation_configs_differ_from_m4_only_where_the_paper_says(clap_dir, items):
    m4 = yaml.safe_load((CONFIGS / "csa.yaml").read_text())
    assert m4["model"]["contrastive_weight"] == 0.5 and m4["model"]["semantic_weight"] == 1.0
    # the paper's batch and patience; lr 3e-4 instead of 1e-4 so a 6-minute CPU budget learns something
    assert m4["train"]["lr"] == 3e-4 and m4["train"]["batch_size"] == 32 and m4["train"]["patience"] == 10
    expected = {
        "csa_m1": {"train_encoder": True, "contrastive_weight": 0.0, "semantic_weight": 0.0},
        "csa_m2": {"contrastive_weight": 0.0, "semantic_weight": 0.0},
        "csa_m3": {"semantic_weight": 0.0},
    }
    for name, changes in expected.items():
        ablation = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
        assert ablation["train"] == m4["train"] and ablation["decoding"] == m4["decoding"]
        differing = {k: v for k, v in ablation["model"].items() if m4["model"].get(k) != v}
        assert differing == changes, name
        config_from_dict(CsaConfig, {**ablation["model"], "clap_path": str(clap_dir)})
    m1 = build(clap_dir, items, train_encoder=True, contrastive_weight=0.0, semantic_weight=0.0)
    losses = m1.train()(m1.collate(items))
    assert set(losses) == {"loss", "nll"}
    losses["loss"].backward()
    assert m1.audio_tower.input_proj.weight.grad.abs().sum() > 0  # M1 trains the CLAP audio tower


def test_a_retrained_clap_is_refused(clap_dir, items, tmp_path):
    model = build(clap_dir, items)
    model.config.clap_hash = "0" * 12
    model.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="retrain csa"):
        load_captioner(tmp_path)
