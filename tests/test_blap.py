"""BLAP on tiny random components: a tiny embedded CLAP, a tiny T5 built and saved here, a toy caption set;
and the full profile: a tiny LAION-style HTSAT CLAP and a tiny Flan-T5-shaped LM (its own tokenizer)."""

from __future__ import annotations

import json
import math
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from musiccap.clip import AUDIO_FEATURES
from musiccap.decoding import DecodingConfig
from musiccap.encoders.caption_lm import (
    EOS,
    MASK,
    SPECIAL_TOKENS,
    TOKENIZER_NAME,
    build_t5,
    lm_fingerprint,
    train_caption_tokenizer,
)
from musiccap.models.base import Clip, config_from_dict, load_captioner, read_config
from musiccap.models.blap import (
    INSTRUCTION,
    BLAPCaptioner,
    BLAPConfig,
    combine_attention,
)
from musiccap.models.qformer import self_attention_blocked
from musiccap.training import BuildContext
from tests.toy import (
    TEMPLATES,
    save_tiny_clap,
    save_tiny_flan_t5,
    save_tiny_htsat_clap,
    toy_item,
    toy_mel_items,
)
from train.blap_lm import corrupt, diagnose, encoder_use, pretrain
from train.data import FeatureItem
from train.diagnostics.blap_matching import matching
from train.diagnostics.blap_prompt_use import prompt_use
from train.trainer import TrainConfig, fit

torch.set_num_threads(1)
CONFIGS = Path(__file__).resolve().parents[1] / "train" / "configs"
FRAME_DIM, POOLED_DIM = 8, 6
TINY = {
    "n_queries": 4,
    "width": 32,
    "n_layers": 2,
    "n_heads": 2,
    "ff_dim": 64,
    "embed_dim": 16,
    "dropout": 0.0,
}


def make_item(index: int, rng: np.random.Generator) -> FeatureItem:
    return toy_item(index, rng, frame_dim=FRAME_DIM, pooled_dim=POOLED_DIM)


@pytest.fixture(scope="module")
def items() -> list[FeatureItem]:
    rng = np.random.default_rng(0)
    return [make_item(i, rng) for i in range(16)]


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """checkpoints/{clap, blap_lm} side by side, as shipped: a tiny CLAP and a tiny T5 (pre-trained on the
    toy captions by train.blap_lm's loop, as the real one is) with its tokenizer."""
    root = tmp_path_factory.mktemp("checkpoints")
    save_tiny_clap(root / "clap", FRAME_DIM, POOLED_DIM)
    torch.manual_seed(0)
    tokenizer = train_caption_tokenizer(TEMPLATES + [INSTRUCTION], vocab_size=60)
    lm = build_t5(tokenizer.get_vocab_size(), d_model=32, d_ff=48, n_layers=1, n_heads=2, dropout=0.0)
    pretrain(lm, tokenizer, TEMPLATES * 4, max_minutes=0, max_steps=150, batch_size=8, lr=1e-2, log_every=0)
    lm.save_pretrained(str(root / "blap_lm"))
    tokenizer.save(str(root / "blap_lm" / TOKENIZER_NAME))
    return {"root": root, "clap": root / "clap", "lm": root / "blap_lm"}


def build(folders, items, **overrides) -> BLAPCaptioner:
    torch.manual_seed(0)
    context = BuildContext(
        clap_path=str(folders["clap"]), feature_dims=(FRAME_DIM, POOLED_DIM, 200), corpus_dir=""
    )
    return BLAPCaptioner.build({**TINY, "lm_path": str(folders["lm"]), **overrides}, items, context)


def clip_of(item: FeatureItem) -> Clip:
    return Clip(None, clip_id=item.id, features={AUDIO_FEATURES: item.features})


def train_steps(model: BLAPCaptioner, items, steps: int, lr: float = 3e-3) -> list[dict[str, float]]:
    torch.manual_seed(0)  # hard-negative sampling draws from the global RNG: independent of test order
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    batch = model.collate(items)
    model.train()
    history = []
    for _ in range(steps):
        losses = model(batch)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
        history.append({name: float(value.detach()) for name, value in losses.items()})
    model.eval()
    return history


@pytest.fixture(scope="module")
def stage_one(folders, items) -> Path:
    model = build(folders, items, stage=1)
    train_steps(model, items, 30)
    model.save_pretrained(folders["root"] / "blap_stage1")
    return folders["root"] / "blap_stage1"


@pytest.fixture(scope="module")
def trained(folders, items, stage_one) -> BLAPCaptioner:
    model = build(folders, items, stage=2, init_from=str(stage_one))
    train_steps(model, items, 150)
    return model


def test_attention_masks():
    text_mask = torch.tensor([[1, 1, 0]])
    unimodal = self_attention_blocked(2, text_mask, "unimodal", 1)[0]
    assert unimodal[:2, 2:].all() and unimodal[2:, :2].all() and not unimodal[:2, :2].any()
    causal = self_attention_blocked(2, text_mask, "causal", 1)[0]
    assert causal[:2, 2:].all() and not causal[2:, :2].any()  # queries never see text; text sees queries
    assert causal[2, 3] and not causal[3, 2]  # text is causal
    assert causal[3, 4] and not causal[4, 4]  # the padding key is blocked, but a row always sees itself
    assert not self_attention_blocked(2, text_mask, "bidirectional", 1)[0, :, :4].any()


def test_stage_one_losses_finite_and_falling(folders, items):
    model = build(folders, items, stage=1)
    history = train_steps(model, items, 30)
    for name in ("atc", "atm", "lm"):
        assert all(np.isfinite(step[name]) for step in history)
    # an untrained LM head guesses near-uniformly; N(0, 1) text embeddings once made it ~10x worse
    assert history[0]["lm"] < 1.5 * math.log(model.config.vocab_size)
    assert history[-1]["loss"] < 0.6 * history[0]["loss"]
    assert history[-1]["atc"] < 0.1 * history[0]["atc"]  # 16 clips: the contrastive term memorises them
    assert history[-1]["lm"] < 0.9 * history[0]["lm"]
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert "qformer.text_embed.weight" in trainable and "itm_head.weight" in trainable
    assert not any(name.startswith("prompt_proj") for name in trainable)


def test_hard_negatives_never_draw_the_pair_itself_or_a_same_caption_row():
    inf = float("-inf")
    # clips 0 and 1 share a caption (-inf between them); row 2 is free; clip 3's every other text is the same caption
    logits = torch.tensor(
        [[5.0, inf, 0.0, inf], [inf, 5.0, 0.0, inf], [9.0, 0.0, 5.0, inf], [inf, inf, inf, 5.0]]
    )
    for seed in range(20):
        torch.manual_seed(seed)
        text_for_clip, clip_for_text = BLAPCaptioner.hard_negatives(logits)
        assert text_for_clip[0] == 2 and text_for_clip[1] == 2 and 3 not in text_for_clip
        assert text_for_clip[2] in (0, 1) and clip_for_text[2] in (0, 1) and 3 not in clip_for_text


def test_matching_diagnostic_scores_own_random_and_hard_negative_texts(folders, items, stage_one):
    model = load_captioner(stage_one)
    result = matching(model, items)
    assert result["pairs"] == len(items)
    for key in ("own_text", "random_text", "hard_negative_text"):
        assert 0.0 < result[f"match_probability_{key}"] < 1.0
    assert 0.0 <= result["own_beats_random"] <= 1.0 and 0.0 <= result["own_beats_hard_negative"] <= 1.0
    assert matching(model, items) == result  # seeded: the same numbers on a re-run


def test_stage_two_trains_only_qformer_queries_and_projection(folders, items, stage_one):
    model = build(folders, items, stage=2, init_from=str(stage_one))
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert "qformer.queries" in trainable and "prompt_proj.weight" in trainable
    assert all(name.startswith(("qformer.", "prompt_proj.")) for name in trainable)
    assert "qformer.text_embed.weight" not in trainable and "itm_head.weight" not in trainable
    assert not any(key.startswith(("_frozen", "lm.", "clap.")) for key in model.state_dict())
    counts = model.parameter_counts()
    assert counts["trainable"] == sum(model.state_dict()[name].numel() for name in trainable)
    assert counts["frozen_lm"] == sum(p.numel() for p in model.lm.parameters())
    history = train_steps(model, items, 80)  # a margin over run-to-run noise in the frozen tiny LM
    assert all(np.isfinite(step["loss"]) for step in history)
    first, last = (np.mean([step["loss"] for step in part]) for part in (history[:10], history[-10:]))
    # 10-step means; the toy loss starts near its floor (runs fell 37-50 %): the bar is a clear fall, not a halving
    assert last < 0.8 * first


def test_stage_two_starts_from_stage_one(folders, items, stage_one):
    from safetensors.torch import load_file

    saved = load_file(str(stage_one / "model.safetensors"))
    model = build(folders, items, stage=2, init_from=str(stage_one))
    assert torch.equal(model.qformer.queries, saved["qformer.queries"])
    fresh = build(folders, items, stage=2, seed=1)  # the stage-2-only ablation starts elsewhere
    assert not torch.equal(fresh.qformer.queries, saved["qformer.queries"])
    with pytest.raises(ValueError, match="stage-1"):
        build(folders, items, stage=2, init_from=str(stage_one), width=64)


def test_frozen_lm_is_byte_identical_after_stage_two(folders, items, stage_one, tmp_path):
    model = build(folders, items, stage=2, init_from=str(stage_one))
    before = {name: tensor.clone() for name, tensor in model.lm.state_dict().items()}
    files_before = lm_fingerprint(folders["lm"])
    config = TrainConfig(epochs=2, batch_size=8, lr=1e-2, max_steps=4, patience=5)
    log, _ = fit(model, items, items[:4], config, tmp_path / "run")
    assert log and np.isfinite(log[-1]["train"]["loss"])
    trained_queries = model.qformer.queries.detach().clone()
    assert not torch.equal(trained_queries, load_captioner(stage_one).qformer.queries)  # something did train
    after = model.lm.state_dict()
    assert before.keys() == after.keys()
    for name, tensor in before.items():
        assert tensor.numpy().tobytes() == after[name].numpy().tobytes(), name
    assert lm_fingerprint(folders["lm"]) == files_before


def reference_greedy(model: BLAPCaptioner, item: FeatureItem, max_new_tokens: int) -> list[int]:
    """Greedy decoding by full forward passes of the T5, without a cache (what beam 1 must equal)."""
    audio, mask = model.audio_tokens([item.features])
    embeds = model.encoder_inputs(model.query_outputs(audio, mask))
    generated = [model.lm.config.decoder_start_token_id]
    with torch.no_grad():
        for _ in range(max_new_tokens):
            logits = model.lm(inputs_embeds=embeds, decoder_input_ids=torch.tensor([generated])).logits[0, -1]
            token = int(logits.argmax())
            if token == model.eos_id:
                break
            generated.append(token)
    return generated[1:]


def test_beam_one_equals_greedy_in_a_batch(trained, items):
    clips = [clip_of(item) for item in items[:4]]  # different frame counts: padded audio in one batch
    results = trained.caption_batch(clips, DecodingConfig(num_beams=1, max_new_tokens=15))
    for item, result in zip(items[:4], results):
        expected = reference_greedy(trained, item, 15)
        assert result.text == trained.tokenizer.decode(expected).strip()
        assert len(result.tokens) == len(expected)


def test_beam_search_caption_and_attention(trained, items):
    result = trained.caption(clip_of(items[1]))
    assert result.decoding["num_beams"] == 5 and result.decoding["min_new_tokens"] == 5
    assert result.text == items[1].caption  # the toy set is learnt through the frozen LM
    n_tokens, n_frames = len(result.tokens), items[1].features.frames.shape[0]
    assert result.attention.shape == (n_tokens, n_frames)
    assert np.allclose(result.attention.sum(1), 1.0, atol=1e-5)
    assert np.allclose(result.attention_times, items[1].features.frame_times)
    assert set(result.attention_views) == {
        "Q-Former layer 1 (LM decoder mean)",
        "Q-Former layer 2 (LM decoder mean)",
        "LM decoder layer 1 (Q-Former mean)",
    }
    for view in result.attention_views.values():
        assert view.shape == (n_tokens, n_frames) and np.allclose(view.sum(1), 1.0, atol=1e-5)
    assert result.audio_embedding.shape == (16,)
    long = trained.caption(
        clip_of(items[1]), DecodingConfig(num_beams=3, min_new_tokens=12, max_new_tokens=14)
    )
    assert 12 <= len(long.tokens) <= 14


def test_prompt_use_scores_own_rolled_and_no_prompt(trained, items):
    nll = prompt_use(trained, items)
    assert set(nll) == {"own_prompt", "rolled_prompt", "no_prompt"}
    assert all(np.isfinite(v) and v > 0 for v in nll.values())
    # trained on these 16 clips, each clip's own prompt explains its caption better than another's
    assert nll["own_prompt"] < nll["rolled_prompt"]


def test_combined_attention_is_the_product_over_the_soft_prompt():
    decoder = np.array([[[0.2, 0.2, 0.6]]], dtype=np.float32)  # 1 token, 1 layer, 2 queries + 1 instruction
    qformer = np.array([[[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]]], dtype=np.float32)  # 1 layer, 2 queries, 3 frames
    attention, _ = combine_attention(decoder, qformer, n_queries=2)
    assert np.allclose(attention, [[0.5, 0.25, 0.25]])


def test_save_load_identical_and_paths_relative(trained, folders, items):
    path = folders["root"] / "blap"
    trained.save_pretrained(path)
    config = read_config(path)["config"]
    assert config["lm_path"] == "blap_lm" and config["clap_path"] == "clap"  # registry names, found beside it
    loaded = load_captioner(path)
    assert isinstance(loaded, BLAPCaptioner)
    original, restored = trained.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    assert all(torch.equal(original[key], restored[key]) for key in original)
    clips = [clip_of(item) for item in items[:3]]
    assert [r.text for r in trained.caption_batch(clips)] == [r.text for r in loaded.caption_batch(clips)]


def test_changed_lm_is_refused(trained, folders, tmp_path):
    shutil.copytree(folders["lm"], tmp_path / "blap_lm")
    shutil.copytree(folders["clap"], tmp_path / "clap")
    trained.config.lm_path = str(tmp_path / "blap_lm")
    trained.save_pretrained(tmp_path / "blap")
    trained.config.lm_path = str(folders["lm"])
    assert load_captioner(tmp_path / "blap").config.lm_path == str((tmp_path / "blap_lm").resolve())
    (tmp_path / "blap_lm" / "tokenizer.json").write_text(
        (tmp_path / "blap_lm" / "tokenizer.json").read_text() + " "
    )
    with pytest.raises(ValueError, match="frozen LM"):
        load_captioner(tmp_path / "blap")


def test_lm_pretraining_corruption_and_loss(folders):
    rng = random.Random(0)
    mask_id = SPECIAL_TOKENS.index(MASK)
    assert corrupt([7, 8, 9], 0.0, rng) == [7, 8, 9]
    assert corrupt([7, 8, 9], 1.0, rng) == [mask_id]  # one mask per dropped run
    tokenizer = train_caption_tokenizer(TEMPLATES + [INSTRUCTION], vocab_size=60)
    assert tokenizer.token_to_id(EOS) == 1 and tokenizer.get_vocab_size() <= 60
    torch.manual_seed(0)
    lm = build_t5(tokenizer.get_vocab_size(), d_model=24, d_ff=48, n_layers=1, n_heads=2, dropout=0.0)
    record = pretrain(
        lm, tokenizer, TEMPLATES * 4, max_minutes=0, max_steps=60, batch_size=8, lr=3e-3, log_every=0
    )
    assert record["steps"] == 60
    assert record["last_loss_mean"] < 0.5 * float(np.mean(record["first_losses"]))


def test_encoder_use_measures_what_the_lm_reads_from_its_encoder(folders, tmp_path):
    """Held-out loss by noise: it moves with the encoder input when the decoder can see it (cross-attention
    on), and not at all with every cross-attention output zeroed. ``--diagnose`` files it for a saved LM."""
    tokenizer = train_caption_tokenizer(TEMPLATES + [INSTRUCTION], vocab_size=60)
    held = [tokenizer.encode(text).ids for text in TEMPLATES]
    instruction = tokenizer.encode(INSTRUCTION).ids
    torch.manual_seed(0)
    lm = build_t5(tokenizer.get_vocab_size(), d_model=24, d_ff=48, n_layers=1, n_heads=2, dropout=0.0)
    reading = encoder_use(lm, held, instruction)
    assert set(reading) == {"0", "0.5", "1"} and abs(reading["0"] - reading["1"]) > 1e-4
    with torch.no_grad():
        for block in lm.decoder.block:
            block.layer[1].EncDecAttention.o.weight.zero_()
    blind = encoder_use(lm, held, instruction)
    assert abs(blind["0"] - blind["1"]) < 1e-5
    shutil.copytree(folders["lm"], tmp_path / "lm")
    assert diagnose(tmp_path / "lm", TEMPLATES * 8, seed=0) == 0  # > 20 texts: one is held out
    filed = json.loads((tmp_path / "lm" / "pretraining.json").read_text())["held_out_loss_by_noise"]
    assert set(filed) == {"0", "0.5", "1"} and all(np.isfinite(list(filed.values())))


@pytest.mark.parametrize("name", ["blap_stage1", "blap", "blap_stage2_only"])
def test_configs_are_valid(name):
    document = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    config = config_from_dict(BLAPConfig, document["model"])
    assert config.stage == (1 if name == "blap_stage1" else 2)
    assert bool(config.init_from) == (name == "blap")
    DecodingConfig.from_dict(document.get("decoding"))


def test_stage_ablation_differs_from_blap_only_in_its_start():
    shipped, ablation = (
        yaml.safe_load((CONFIGS / f"{n}.yaml").read_text()) for n in ("blap", "blap_stage2_only")
    )
    assert ablation["train"] == shipped["train"] and ablation["decoding"] == shipped["decoding"]
    assert {k: v for k, v in ablation["model"].items() if shipped["model"][k] != v} == {"init_from": ""}


# ---- the full profile: HTSAT CLAP + a Flan-T5 folder or Hub id ------------------------------------


@pytest.fixture(scope="module")
def full_folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("full")
    return {
        "root": root,
        "clap": save_tiny_htsat_clap(root / "htsat_clap"),
        "lm": save_tiny_flan_t5(root / "flan_t5", [INSTRUCTION]),
    }


@pytest.fixture(scope="module")
def mel_items(full_folders) -> list[FeatureItem]:
    return toy_mel_items(full_folders["clap"], 8)


def build_full(full_folders, items, **overrides) -> BLAPCaptioner:
    torch.manual_seed(0)
    context = BuildContext(clap_path=str(full_folders["clap"]), feature_dims=(0, 0, 0), corpus_dir="")
    settings = {**TINY, "lm_path": str(full_folders["lm"]), **overrides}
    return BLAPCaptioner.build(settings, items, context)


def test_full_profile_tokenizer_roles_come_from_the_flan_t5_tokenizer(full_folders, mel_items):
    model = build_full(full_folders, mel_items, stage=1)
    tokenizer = model.tokenizer
    assert (model.pad_id, model.eos_id) == (0, 1)
    assert (model.cls_id, model.dec_id) == (
        tokenizer.token_to_id("<extra_id_0>"),
        tokenizer.token_to_id("<extra_id_1>"),
    )
    assert (
        model.instruction_ids.tolist().count(model.eos_id) == 1
    )  # the tokenizer's own </s> is not added twice
    assert model.eos_id not in model._caption_ids(TEMPLATES[0])
    assert model.config.audio_dim == 128 and model.config.vocab_size == tokenizer.get_vocab_size()
    losses = train_steps(model, mel_items, 2)
    assert all(np.isfinite(value) for step in losses for value in step.values())


def test_full_profile_stage_two_keeps_the_lm_byte_identical_saves_reloads_and_captions(
    full_folders, mel_items, tmp_path
):
    model = build_full(full_folders, mel_items, stage=2)
    before = {name: tensor.numpy().tobytes() for name, tensor in model.lm.state_dict().items()}
    files_before = lm_fingerprint(full_folders["lm"])
    history = train_steps(model, mel_items, 20, lr=1e-2)
    assert history[-1]["loss"] < history[0]["loss"]
    after = model.lm.state_dict()
    assert before.keys() == after.keys()
    assert all(after[name].numpy().tobytes() == raw for name, raw in before.items())
    assert lm_fingerprint(full_folders["lm"]) == files_before

    model.save_pretrained(tmp_path / "blap")
    loaded = load_captioner(tmp_path / "blap")
    original, restored = model.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys() and all(torch.equal(original[k], restored[k]) for k in original)
    decoding = DecodingConfig(num_beams=2, max_new_tokens=8)
    item = mel_items[2]  # 5 s of audio: 16 of the window's 32 HTSAT tokens
    clip = Clip(None, clip_id=item.id, features={loaded.clap.feature_name: item.features})
    result = loaded.caption(clip, decoding)
    assert result.attention.shape == (len(result.tokens), 16)
    np.testing.assert_allclose(result.attention.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(result.attention_times, loaded.clap.token_times(item.features))
    fresh = Clip(None, clip_id=item.id, features={model.clap.feature_name: item.features})
    assert model.caption(fresh, decoding).text == result.text


def test_full_profile_names_its_clap_and_lm_by_hub_id(full_folders, mel_items, tmp_path, monkeypatch):
    """Hub ids stay ids in the config and resolve through huggingface_hub (faked here: no network)."""
    import huggingface_hub

    hub = {"laion/larger_clap_music": full_folders["clap"], "google/flan-t5-base": full_folders["lm"]}
    fetched = []

    def snapshot_download(repo_id, allow_patterns=None, **kwargs):
        fetched.append(repo_id)
        assert "*.safetensors" in allow_patterns and not any("bin" in p for p in allow_patterns)
        return str(hub[repo_id])

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    model = build_full(
        full_folders, mel_items, stage=2, clap_path="laion/larger_clap_music", lm_path="google/flan-t5-base"
    )
    assert set(fetched) == set(hub)
    model.save_pretrained(tmp_path / "blap")
    config = read_config(tmp_path / "blap")["config"]
    assert (config["clap_path"], config["lm_path"]) == ("laion/larger_clap_music", "google/flan-t5-base")
    loaded = load_captioner(tmp_path / "blap")
    assert loaded.config.lm_path == "google/flan-t5-base"
    assert all(torch.equal(value, loaded.state_dict()[key]) for key, value in model.state_dict().items())


@pytest.mark.parametrize("name", ["blap_full_stage1", "blap_full"])
def test_full_profile_configs_name_flan_t5_and_the_music_clap(name):
    document = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    config = config_from_dict(BLAPConfig, document["model"])
    assert config.stage == (1 if name == "blap_full_stage1" else 2)
    assert config.lm_path == "google/flan-t5-base" and config.clap_path == "laion/larger_clap_music"
    assert (config.n_queries, config.width) == (16, 768)  # the paper's 16 queries of BERT-base width
    DecodingConfig.from_dict(document.get("decoding"))


def test_an_interrupted_lm_pretraining_ends_where_an_uninterrupted_one_does(tmp_path, monkeypatch):
    """Cut off after a kept state, the same pretraining started again continues from it: LM, optimiser,
    schedule and both generators restored, so it ends bit for bit where one that was never cut off does."""
    import train.blap_lm as blap_lm

    monkeypatch.setattr(blap_lm, "KEEP_EVERY", 5)
    tokenizer = train_caption_tokenizer(TEMPLATES + [INSTRUCTION], vocab_size=60)

    def run(keep=None):
        torch.manual_seed(1)
        lm = build_t5(tokenizer.get_vocab_size(), d_model=32, d_ff=48, n_layers=1, n_heads=2, dropout=0.1)
        settings = {"max_minutes": 0, "max_steps": 12, "batch_size": 8, "lr": 1e-2, "log_every": 0}
        record = pretrain(lm, tokenizer, TEMPLATES * 4, keep=keep, **settings)
        return lm, record

    whole, whole_record = run()
    keep = blap_lm.PretrainingProgress(tmp_path, {"command": "the same"})
    clip = torch.nn.utils.clip_grad_norm_
    calls = []

    def cut_off_at_step_8(*args, **kwargs):
        calls.append(1)
        if len(calls) == 8:
            raise KeyboardInterrupt
        return clip(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(torch.nn.utils, "clip_grad_norm_", cut_off_at_step_8)
        with pytest.raises(KeyboardInterrupt):
            run(keep)
    assert json.loads((tmp_path / "pretraining_progress.json").read_text())["step"] == 5
    continued, record = run(keep)
    assert record["steps"] == 12 and record["held_out_loss"] == whole_record["held_out_loss"]
    for name, tensor in whole.state_dict().items():
        assert torch.equal(tensor, continued.state_dict()[name]), name
    other = blap_lm.PretrainingProgress(tmp_path, {"command": "another"})
    assert other.reload(whole, torch.optim.AdamW(whole.parameters()), None, random.Random(0)) is None
