"""Kim & Park (csa) on tiny random components: a tiny embedded CLAP (real MiniLM text tower), toy captions;
and the full profile on a tiny LAION-style HTSAT CLAP (RoBERTa-style BPE) the tests save themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from musiccap.clip import AUDIO_FEATURES
from musiccap.decoding import DecodingConfig
from musiccap.models.base import WEIGHTS_NAME, Clip, config_from_dict, load_captioner
from musiccap.models.csa import BOS, EOS, NEVER_GENERATED, CsaCaptioner, CsaConfig
from musiccap.models.pitch_shift import (
    TONIC_SPELLINGS,
    embedded_pitch_class_blocks,
    pitch_shift_frames,
    transpose_key_names,
)
from musiccap.training import BuildContext
from tests.toy import TEMPLATES, save_tiny_clap, save_tiny_htsat_clap, toy_item, toy_mel_items, toy_waveform
from train.data import FeatureItem
from train.diagnostics.csa_gradient_probe import probe_checkpoint

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


def test_transposing_a_caption_moves_its_key_names_only():
    caption = "It is in Ab major. The piece is in a major key, played by A. B. and a Bb-major brass band."
    assert transpose_key_names(caption, 3) == (
        "It is in B major. The piece is in a major key, played by A. B. and a C#-major brass band."
    )
    assert transpose_key_names("The harmony is in a minor key, F# minor.", -7) == (
        "The harmony is in a minor key, B minor."
    )
    assert transpose_key_names("The key is D# minor.", 1) == "The key is E minor."  # other spellings read
    assert transpose_key_names("It is in C major.", 12) == "It is in C major."


def test_training_batches_shift_the_chroma_and_the_caption_key_together(clap_dir):
    rng = np.random.default_rng(1)
    keyed = []
    for index in range(12):
        item = make_item(index, rng)
        item.features.frames[:, 8 + index] += 10.0  # chroma block starts at column 8: tonic = index
        item.caption = f"a calm piano piece in {TONIC_SPELLINGS[index]} major"
        keyed.append(item)
    model = build(clap_dir, keyed[:1])  # one training caption: the vocabulary must still hold every tonic
    read_back = {name.lower(): pc for pc, name in enumerate(TONIC_SPELLINGS)}

    def keys_of(batch) -> tuple[list[int], list[int]]:
        stated, heard = [], []
        for row, length in enumerate(batch["caption_lengths"].tolist()):
            text, _ = model.detokenize(batch["input_ids"][row, 1 : length + 1].tolist())
            stated.append(read_back[text.split(" in ")[1].removesuffix(" major").replace(" ", "")])
            heard.append(int(batch["frames"][row, :, 8:20].mean(0).argmax()))
        return stated, heard

    torch.manual_seed(0)
    stated, heard = keys_of(model.train_collate(keyed))
    assert stated == heard
    assert stated != list(range(12))  # the draw moved some rows: the check above was not vacuous
    assert keys_of(model.collate(keyed)) == (list(range(12)), list(range(12)))  # validation: unshifted


def test_vocabulary_is_pruned_and_round_trips(clap_dir, items):
    # without pitch shift: with it the twelve tonic names join the vocabulary (the batch test above)
    model = build(clap_dir, items, pitch_shift_semitones=0)
    n_words = len(set(" ".join(TEMPLATES).split()))
    assert model.config.vocab_size <= n_words + 4 < 100  # caption-sized, not MiniLM's 30,522
    ids = model.encode_captions([TEMPLATES[1]])[0]
    assert min(ids) > EOS
    assert model.detokenize(ids)[0] == TEMPLATES[1]


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


def test_gradient_probe_measures_each_weighted_term_on_every_nth_batch(clap_dir, items):
    model = build(clap_dir, items, gradient_probe_every=2)
    model.train()
    batch = model.collate(items)
    assert set(model(batch)) == {"loss", "nll", "contrastive", "semantic"}  # batch 1: not probed
    torch.manual_seed(0)
    probed = model(batch)
    assert {key for key in probed if key.startswith("grad_")} == {
        "grad_norm_nll",
        "grad_norm_contrastive",
        "grad_norm_semantic",
        "grad_cos_contrastive_nll",
        "grad_cos_semantic_nll",
    }
    assert all(p.grad is None for p in model.parameters())  # measuring leaves the update alone
    assert all(-1.0 <= float(probed[f"grad_cos_{term}_nll"]) <= 1.0 for term in ("contrastive", "semantic"))
    # grad_norm_nll is the norm of L_NLL's own gradient: the same weights trained on L_NLL alone, same dropout
    nll_only = build(clap_dir, items, contrastive_weight=0.0, semantic_weight=0.0)
    nll_only.load_state_dict(model.state_dict())
    nll_only.train()
    torch.manual_seed(0)
    nll_only(batch)["loss"].backward()
    expected = torch.cat(
        [
            (p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
            for p in nll_only.parameters()
            if p.requires_grad
        ]
    ).norm()
    assert torch.isclose(probed["grad_norm_nll"], expected, rtol=1e-4)
    model.eval()
    with torch.no_grad():
        assert not any(key.startswith("grad_") for key in model(batch))


def test_the_probe_tool_measures_a_model_under_m4s_weights(clap_dir, items):
    """An M2-style model (trained without L_C and L_S) is measured with both: where they would have pulled it."""
    model = build(clap_dir, items, contrastive_weight=0.0, semantic_weight=0.0)
    measured = probe_checkpoint(model, items, batches=2)
    assert measured["grad_norm_semantic"] > 0 and measured["grad_norm_contrastive"] > 0
    assert {"nll", "contrastive", "semantic", "grad_cos_semantic_nll"} <= set(measured)


def assert_semantic_loss_reaches_the_decoder_only(model, items):
    """L_S alone: its gradient reaches the decoder (through the text tower's inputs_embeds), not the CLAP."""
    batch, audio = memory_of(model, items)
    keys, values = model.decoder.memory_cache(audio.memory)
    logits = model.decoder(batch["input_ids"], keys, values, audio.memory_mask).logits
    loss = model.semantic_alignment_loss(logits, batch["caption_lengths"], batch["text_embedding"])
    loss.backward()
    assert 0.0 < float(loss.detach()) < 2.0
    for parameter in (model.decoder.token_embedding.weight, model.decoder.layers[0].mlp[0].weight):
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.clap.parameters())


def test_semantic_loss_gradient_reaches_the_decoder_not_the_frozen_towers(clap_dir, items):
    model = build(clap_dir, items, contrastive_weight=0.0)
    assert_semantic_loss_reaches_the_decoder_only(model, items)  # the CLAP is frozen (M2-M4)


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


def test_semantic_reference_prefix_is_met_by_a_perfect_prediction(clap_dir, items):
    """Logits that put all mass on the caption's own tokens: the reference-prefix target is met exactly
    (cos 1 at every t), the paper's whole-caption target is not (a short prefix is not the whole caption)."""
    losses = {}
    for reference in ("caption", "prefix"):
        model = build(clap_dir, items, semantic_reference=reference, semantic_steps=4).eval()
        batch = model.collate(items)
        targets = batch["targets"]
        logits = torch.full((*targets.shape, model.config.vocab_size), -1e4)
        logits.scatter_(2, targets.clamp(min=0)[..., None], 1e4)
        losses[reference] = float(
            model.semantic_alignment_loss(logits, batch["caption_lengths"], batch["text_embedding"], targets)
        )
    assert losses["prefix"] < 1e-5 and losses["caption"] > 1e-2
    with pytest.raises(ValueError, match="semantic_reference"):
        build(clap_dir, items, semantic_reference="future")


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
    assert result.text == model.detokenize(expected)[0]

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
    m4 = yaml.safe_load((CONFIGS / "csa_m4.yaml").read_text())
    assert m4["model"]["contrastive_weight"] == 0.5 and m4["model"]["semantic_weight"] == 1.0
    # the paper's batch and patience; lr 1e-3 (warm-up, cosine) instead of 1e-4 so 10 CPU epochs learn the captions
    assert m4["train"]["lr"] == 1e-3 and m4["train"]["batch_size"] == 32 and m4["train"]["patience"] == 10
    expected = {
        "csa_m1": {"train_encoder": True, "contrastive_weight": 0.0, "semantic_weight": 0.0},
        "csa_m2": {"contrastive_weight": 0.0, "semantic_weight": 0.0},
        "csa_m3": {"semantic_weight": 0.0},
        "csa_m4_prefix_reference": {"semantic_reference": "prefix"},
    }
    for name, changes in expected.items():
        ablation = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
        assert ablation["train"] == m4["train"] and ablation["decoding"] == m4["decoding"]
        differing = {k: v for k, v in ablation["model"].items() if m4["model"].get(k) != v}
        assert differing == changes, name
        config_from_dict(CsaConfig, {**ablation["model"], "clap_path": str(clap_dir)})
    # the shipped model: M4 with L_S weighted 0.1 (probe on, which never changes the update), decoded greedily
    shipped = yaml.safe_load((CONFIGS / "csa.yaml").read_text())
    assert shipped["train"] == m4["train"]
    assert {k: v for k, v in shipped["model"].items() if m4["model"].get(k) != v} == {
        "semantic_weight": 0.1,
        "gradient_probe_every": 25,
    }
    assert {k: v for k, v in shipped["decoding"].items() if m4["decoding"].get(k) != v} == {"num_beams": 1}
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


# ---- the full profile: an HTSAT CLAP --------------------------------------------------------------


@pytest.fixture(scope="module")
def htsat_dir(tmp_path_factory) -> Path:
    return save_tiny_htsat_clap(tmp_path_factory.mktemp("htsat_clap"))


@pytest.fixture(scope="module")
def htsat_items(htsat_dir) -> list[FeatureItem]:
    return toy_mel_items(htsat_dir, 8)


def build_full(htsat_dir: Path, items, **overrides) -> CsaCaptioner:
    torch.manual_seed(0)
    # log-mel features have no embedded frame layout: the model sizes itself from the CLAP
    context = BuildContext(clap_path=str(htsat_dir), feature_dims=(0, 0, 0), corpus_dir="")
    # attention narrower than the model, as Table I's (512 of 1024)
    settings = {**TINY, "attention_dim": 16, "pitch_shift_semitones": 0, **overrides}
    return CsaCaptioner.build(settings, items, context)


def test_full_profile_trains_saves_reloads_and_captions(htsat_dir, htsat_items, tmp_path):
    model = build_full(htsat_dir, htsat_items)
    tokenizer = model.tokenizer
    assert type(tokenizer).__name__.startswith(
        "RobertaTokenizer"
    )  # the decoder writes the CLAP text tokenizer's ids
    assert (model.config.audio_dim, model.config.embed_dim) == (128, 16)
    assert model.decoder.layers[0].self_attention.query.weight.shape == (16, 32)  # attention_dim x width
    specials = [
        tokenizer.pad_token_id,
        tokenizer.unk_token_id,
        tokenizer.cls_token_id,
        tokenizer.sep_token_id,
    ]
    assert model.minilm_ids[:4].tolist() == specials == [1, 3, 0, 2]
    assert model.detokenize(model.encode_captions([TEMPLATES[1]])[0])[0] == TEMPLATES[1]

    model.train()
    batch = model.collate(htsat_items)
    assert batch["frames"].shape == (8, 1, 1001, 64) and batch["frame_mask"].shape == (8, 32)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    for _ in range(3):
        losses = model(batch)
        assert set(losses) == {"loss", "nll", "contrastive", "semantic"}
        assert all(torch.isfinite(value) for value in losses.values())
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
    assert all(p.grad is None for p in model.clap.parameters())  # HTSAT and RoBERTa stay frozen (M4)

    # L_S alone: through RoBERTa's inputs_embeds back to the decoder
    model.zero_grad()
    assert_semantic_loss_reaches_the_decoder_only(model, htsat_items)

    model.save_pretrained(tmp_path)
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / WEIGHTS_NAME))
    assert "minilm_ids" in saved and not any(k.startswith(("clap.", "audio_tower.")) for k in saved)
    loaded = load_captioner(tmp_path)
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key

    decoding = DecodingConfig(num_beams=2, max_new_tokens=8)
    item = htsat_items[2]  # 5 s of audio: 16 of the window's 32 tokens
    result = loaded.caption(
        Clip(None, clip_id=item.id, features={loaded.clap.feature_name: item.features}), decoding
    )
    assert result.attention.shape == (len(result.tokens), 16)
    np.testing.assert_allclose(result.attention.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(result.attention_times, loaded.clap.token_times(item.features))
    assert result.audio_embedding.shape == (16,)
    fresh = Clip(None, clip_id=item.id, features={model.clap.feature_name: item.features})
    assert model.eval().caption(fresh, decoding).text == result.text


def test_full_profile_m1_trains_and_saves_htsat(htsat_dir, htsat_items, tmp_path):
    model = build_full(
        htsat_dir, htsat_items, train_encoder=True, contrastive_weight=0.0, semantic_weight=0.0
    )
    losses = model.train()(model.collate(htsat_items[:4]))
    assert set(losses) == {"loss", "nll"}
    losses["loss"].backward()
    patch_embedding = model.audio_tower.audio_model.audio_encoder.patch_embed.proj.weight
    assert patch_embedding.grad.abs().sum() > 0  # M1 trains the HTSAT blocks
    with torch.no_grad():
        patch_embedding.add_(0.5)
    model.save_pretrained(tmp_path)
    loaded = load_captioner(tmp_path)
    torch.testing.assert_close(
        loaded.audio_tower.audio_model.audio_encoder.patch_embed.proj.weight, patch_embedding
    )


def test_full_profile_refuses_pitch_shift_on_log_mels(htsat_dir, htsat_items):
    with pytest.raises(ValueError, match="pitch_shift_semitones"):
        build_full(htsat_dir, htsat_items, pitch_shift_semitones=6)


def test_full_profile_config_has_the_papers_sizes():
    full = yaml.safe_load((CONFIGS / "csa_full.yaml").read_text())
    model = full["model"]
    assert model["clap_path"] == "laion/larger_clap_music"
    sizes = {key: model[key] for key in ("n_layers", "width", "attention_dim", "n_heads", "dropout")}
    assert sizes == {"n_layers": 8, "width": 1024, "attention_dim": 512, "n_heads": 8, "dropout": 0.1}
    assert model["max_positions"] == 301  # BOS + 300 tokens
    assert full["decoding"]["max_new_tokens"] == 300  # Table I: 300 tokens
    assert (model["contrastive_weight"], model["semantic_weight"], model["pitch_shift_semitones"]) == (
        0.5,
        1.0,
        0,
    )
    assert (
        full["train"]["lr"] == 1e-4 and full["train"]["batch_size"] == 32 and full["train"]["patience"] == 10
    )
    config_from_dict(CsaConfig, model)


def test_full_profile_trains_from_its_config_on_a_corpus_of_audio(htsat_dir, tmp_path, monkeypatch):
    """``python -m train csa --config csa_full.yaml`` on flac files: the cache holds the CLAP's log-mels."""
    monkeypatch.setenv("MUSICCAP_CACHE", str(tmp_path / "cache"))
    import json

    import soundfile as sf

    from train.__main__ import main as train_main
    from train.data import load_items
    from train.evaluate import caption_items, captioner_features

    corpus = tmp_path / "corpus"
    (corpus / "audio").mkdir(parents=True)
    for split, indices in {"train": range(8), "validation": range(8, 10), "test": range(10, 12)}.items():
        rows = []
        for index in indices:
            sf.write(corpus / "audio" / f"c{index}.flac", toy_waveform(index), 16000)
            caption = TEMPLATES[index % len(TEMPLATES)]
            rows.append(
                {"id": f"c{index}", "audio": f"audio/c{index}.flac", "caption": caption, "piece": f"p{index}"}
            )
        (corpus / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    tiny = [
        f"model.{key}={value}" for key, value in {**TINY, "max_positions": 32, "semantic_steps": 1}.items()
    ]
    out = tmp_path / "csa_full"
    arguments = [
        "csa",
        "--config",
        str(CONFIGS / "csa_full.yaml"),
        "--corpus",
        str(corpus),
        "--out",
        str(out),
    ]
    overrides = [
        f"model.clap_path={htsat_dir}",
        *tiny,
        "train.epochs=1",
        "train.batch_size=4",
        "decoding.max_new_tokens=6",
    ]
    assert train_main([*arguments, "--no-eval", *overrides]) == 0

    captioner = load_captioner(out)
    encoder, feature_name = captioner_features(captioner)
    assert feature_name == captioner.clap.feature_name and encoder.version.startswith("clap-mel-")
    items = load_items(corpus, "test", encoder=encoder)
    results = caption_items(captioner, items)
    assert len(results) == 2 and all(r.attention.shape[1] == len(r.attention_times) for r in results)
    assert any((tmp_path / "cache" / "features" / encoder.version).iterdir())
