"""RGMC on tiny random components: a tiny embedded CLAP, a toy caption set, a 1-layer GPT-2."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from musiccap.clip import AUDIO_FEATURES, REFERENCE_CAPTION
from musiccap.decoding import DecodingConfig
from musiccap.encoders.embedded_clap import EmbeddedClap
from musiccap.metrics.diversity import copying
from musiccap.models.base import Clip, config_from_dict, load_captioner
from musiccap.models.blocks import gpt2_cached_step
from musiccap.models.rgmc import RGMCCaptioner, RGMCConfig
from musiccap.training import BuildContext
from tests.toy import TEMPLATES, save_tiny_clap, toy_item
from train.data import FeatureItem

CONFIGS = Path(__file__).resolve().parents[1] / "train" / "configs"
FRAME_DIM, POOLED_DIM = 8, 6
TINY_LM = {"vocab_size": 300, "n_layer": 1, "n_head": 2, "n_embd": 32, "dropout": 0.0, "n_prefix": 4}


def make_item(index: int, rng: np.random.Generator) -> FeatureItem:
    return toy_item(index, rng, frame_dim=FRAME_DIM, pooled_dim=POOLED_DIM)


@pytest.fixture(scope="module")
def clap_dir(tmp_path_factory) -> Path:
    return save_tiny_clap(tmp_path_factory.mktemp("clap"), FRAME_DIM, POOLED_DIM)


@pytest.fixture(scope="module")
def items() -> list[FeatureItem]:
    rng = np.random.default_rng(0)
    return [make_item(i, rng) for i in range(16)]


def build(clap_dir: Path, items, **overrides) -> RGMCCaptioner:
    torch.manual_seed(0)
    context = BuildContext(clap_path=str(clap_dir), feature_dims=(FRAME_DIM, POOLED_DIM, 200), corpus_dir="")
    return RGMCCaptioner.build({**TINY_LM, **overrides}, items, context)


def clip_of(item: FeatureItem, **extra) -> Clip:
    return Clip(None, clip_id=item.id, features={AUDIO_FEATURES: item.features, **extra})


def train_steps(model: RGMCCaptioner, items, steps: int, lr: float = 3e-3) -> list[float]:
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    batch = model.collate(items)
    model.train()
    losses = []
    for _ in range(steps):
        loss = model(batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    return losses


@pytest.fixture(scope="module")
def trained(clap_dir, items) -> RGMCCaptioner:
    model = build(clap_dir, items)
    train_steps(model, items, 150)
    return model


def test_loss_falls_and_frozen_clap_stays_out_of_the_state(clap_dir, items):
    model = build(clap_dir, items)
    losses = train_steps(model, items, 40)
    assert losses[-1] < 0.5 * losses[0]
    assert not any(key.startswith(("clap.", "_frozen")) for key in model.state_dict())
    assert all(not p.requires_grad for p in model.encoder.parameters())


def test_loss_is_on_caption_tokens_only(clap_dir, items):
    model = build(clap_dir, items)
    batch = model.collate(items[:3])
    for row in range(3):
        labelled = batch["labels"][row][batch["labels"][row] != -100].tolist()
        caption = model.tokenizer.encode(items[row].caption).ids + [model.eos_id]
        assert labelled == caption
        first = int((batch["labels"][row] != -100).nonzero()[0])
        assert int(batch["input_ids"][row, first - 1]) == model.sep_id  # the separator precedes the caption


def test_neighbour_never_equals_the_query_clip(clap_dir, items):
    model = build(clap_dir, items)
    embeddings = torch.as_tensor(model.encoder.embed_audio([item.features for item in items]))
    neighbours = model.nearest_neighbours(embeddings, [item.id for item in items])
    assert all(n.id != item.id for n, item in zip(neighbours, items))
    # the whole index ranks the clip itself first (dot product with itself is 1): exclusion is what removes it
    assert model.index.search(embeddings[0].numpy(), 1, exclude_ids=set())[0].id == items[0].id
    results = model.caption_batch([clip_of(item) for item in items[:4]], DecodingConfig(max_new_tokens=5))
    assert all(r.neighbour.id != item.id for r, item in zip(results, items))
    assert all(r.neighbour.text for r in results)


def test_piece_exclusion_keeps_a_clips_own_composition_out_of_its_training_neighbours(clap_dir, items):
    # Clips of one composition look alike; with "piece" none of them can be a training clip's neighbour.
    pieces = [replace(item, piece=f"piece-{index % 4}") for index, item in enumerate(items)]
    embeddings = torch.as_tensor(
        build(clap_dir, pieces).encoder.embed_audio([item.features for item in pieces])
    )
    by_id = {item.id: item for item in pieces}
    for exclude, expect_shared in (("clip", True), ("piece", False)):
        model = build(clap_dir, pieces, training_neighbours_exclude=exclude)
        excluded = [model._same_piece_ids(item) for item in pieces]
        neighbours = model.nearest_neighbours(embeddings, [item.id for item in pieces], excluded)
        shared = [by_id[n.id].piece == item.piece for n, item in zip(neighbours, pieces)]
        assert not any(n.id == item.id for n, item in zip(neighbours, pieces))
        assert any(shared) == expect_shared, exclude
    with pytest.raises(ValueError):
        RGMCConfig(training_neighbours_exclude="song")


def test_copy_rate_ignores_case_and_punctuation():
    assert copying(["A piano, slowly.", "drums"], ["a piano slowly", "bass"]).copy_rate == 0.5
    with pytest.raises(ValueError):
        copying(["a"], [])


def reference_greedy(model: RGMCCaptioner, clip: Clip, max_new_tokens: int) -> list[int]:
    """Greedy decoding by full forward passes without a cache (the definition beam 1 must match)."""
    item_features = clip.features[AUDIO_FEATURES]
    embedding = torch.as_tensor(model.encoder.embed_audio([item_features]))
    neighbour = model.candidates([clip], embedding)[0]
    prompt = torch.cat(
        [
            model.mapper(embedding)[0],
            model.lm.get_input_embeddings()(torch.tensor(model._encode(neighbour.text, 72))),
        ]
    )
    generated = [model.sep_id]
    with torch.no_grad():
        for _ in range(max_new_tokens):
            tokens = model.lm.get_input_embeddings()(torch.tensor(generated))
            logits = model.lm(inputs_embeds=torch.cat([prompt, tokens])[None]).logits[0, -1]
            token = int(logits.argmax())
            if token == model.eos_id:
                break
            generated.append(token)
    return generated[1:]


def test_cached_step_equals_the_transformers_forward():
    """The decoding step computes what GPT2LMHeadModel's forward does, on left-padded prompts."""
    from transformers import DynamicCache, GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=50, n_positions=32, n_embd=32, n_layer=2, n_head=4)
    config._attn_implementation = "eager"  # as RGMC builds it: the attention weights are returned
    lm = GPT2LMHeadModel(config).eval()
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[0, :4] = 0
    mask[2, :2] = 0
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    with torch.no_grad():
        prompt = lm(
            inputs_embeds=torch.randn(3, 9, 32), attention_mask=mask, position_ids=positions, use_cache=True
        )
        past = tuple((layer.keys, layer.values) for layer in prompt.past_key_values.layers)
        tokens, grown = (
            torch.tensor([[5], [17], [3]]),
            torch.cat([mask, torch.ones(3, 1, dtype=torch.long)], 1),
        )
        step_positions = mask.sum(1, keepdim=True)
        expected = lm(
            input_ids=tokens,
            past_key_values=DynamicCache(ddp_cache_data=past),
            attention_mask=grown,
            position_ids=step_positions,
            use_cache=True,
            output_attentions=True,
        )
        logits, cache, attentions = gpt2_cached_step(lm, tokens, past, grown, step_positions)
    torch.testing.assert_close(logits, expected.logits[:, -1])
    for (keys, values), layer in zip(cache, expected.past_key_values.layers, strict=True):
        torch.testing.assert_close(keys, layer.keys)
        torch.testing.assert_close(values, layer.values)
    for ours, theirs in zip(attentions, expected.attentions, strict=True):
        torch.testing.assert_close(ours, theirs)
    assert float(attentions[0][0, :, 0, :4].sum()) == 0.0  # padding gets no attention
    # The prompt's cache kept apart as a prefix (as RGMC's beams keep it): the very same numbers
    split = tuple((keys[:, :, :6], values[:, :, :6]) for keys, values in past)
    rest = tuple((keys[:, :, 6:], values[:, :, 6:]) for keys, values in past)
    with torch.no_grad():
        apart_logits, apart_cache, apart_attentions = gpt2_cached_step(
            lm, tokens, rest, grown, step_positions, prefix=split
        )
    assert torch.equal(apart_logits, logits)
    assert all(torch.equal(a, b) for a, b in zip(apart_attentions, attentions, strict=True))
    for (keys, values), (whole_keys, whole_values) in zip(apart_cache, cache, strict=True):
        assert torch.equal(keys, whole_keys[:, :, 6:]) and torch.equal(values, whole_values[:, :, 6:])
    with pytest.raises(RuntimeError, match="eval"):
        gpt2_cached_step(lm.train(), tokens, past, grown, step_positions)


def test_beam_one_equals_greedy_in_a_batch(trained, items):
    clips = [clip_of(item) for item in items[:4]]  # neighbours of different lengths: left padding
    results = trained.caption_batch(clips, DecodingConfig(num_beams=1, max_new_tokens=20))
    for clip, result in zip(clips, results):
        expected = reference_greedy(trained, clip, 20)
        assert (
            trained.tokenizer.encode(result.text).ids == expected
            or result.text == trained.tokenizer.decode(expected).strip()
        )
        assert len(result.tokens) == len(expected)


def test_beam_search_and_attention(trained, items):
    result = trained.caption(clip_of(items[1]))  # default: beam 5, no repeated trigram
    assert result.decoding["num_beams"] == 5 and result.decoding["no_repeat_ngram_size"] == 3
    assert result.text == items[1].caption  # the toy set is learnt
    n_tokens = len(result.tokens)
    n_frames = items[1].features.frames.shape[0]
    assert result.attention.shape == (n_tokens, n_frames)
    assert np.allclose(result.attention.sum(1), 1.0, atol=1e-5)
    assert np.allclose(result.attention_times, items[1].features.frame_times)
    prefix = result.attention_views["audio prefix (all layers)"]
    neighbour = result.attention_views["neighbour caption (all layers)"]
    assert prefix.shape == (n_tokens, TINY_LM["n_prefix"])
    assert neighbour.shape == (n_tokens, len(trained.tokenizer.encode(result.neighbour.text).ids))
    assert np.allclose(neighbour.sum(1), 1.0, atol=1e-5)
    assert "neighbour caption, layer 1" in result.attention_views
    assert result.audio_embedding.shape == (16,)


def test_save_load_identical(trained, items, tmp_path):
    trained.save_pretrained(tmp_path)
    loaded = load_captioner(tmp_path)
    assert isinstance(loaded, RGMCCaptioner)
    original, restored = trained.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    assert all(torch.equal(original[key], restored[key]) for key in original)
    assert loaded.lm.lm_head.weight.data_ptr() == loaded.lm.transformer.wte.weight.data_ptr()
    clips = [clip_of(item) for item in items[:3]]
    before = [r.text for r in trained.caption_batch(clips)]
    after = [r.text for r in loaded.caption_batch(clips)]
    assert before == after


def test_retrained_clap_is_refused(trained, clap_dir, tmp_path):
    trained.save_pretrained(tmp_path / "rgmc")
    other = EmbeddedClap.from_pretrained(clap_dir)
    with torch.no_grad():
        other.audio.input_proj.weight.add_(1.0)
    other.save_pretrained(tmp_path / "clap")
    config_file = tmp_path / "rgmc" / "config.json"
    document = json.loads(config_file.read_text())
    document["config"]["clap_path"] = (
        "../clap"  # saved relative to the checkpoint: the retrained one beside it
    )
    config_file.write_text(json.dumps(document))
    with pytest.raises(ValueError, match="retrain RGMC"):
        load_captioner(tmp_path / "rgmc")


def test_candidate_modes(trained, items):
    clips = [clip_of(item, **{REFERENCE_CAPTION: f"gold caption {i}"}) for i, item in enumerate(items[:3])]
    decoding = DecodingConfig(max_new_tokens=4)
    trained.config.candidate = "gold"
    try:
        gold = trained.caption_batch(clips, decoding)
        trained.config.candidate = "random"
        first = trained.caption_batch(clips, decoding)
        again = trained.caption_batch(clips, decoding)
    finally:
        trained.config.candidate = "nearest"
    assert [r.neighbour.text for r in gold] == ["gold caption 0", "gold caption 1", "gold caption 2"]
    assert [r.neighbour.id for r in first] == [r.neighbour.id for r in again]  # seeded by the clip
    assert all(r.neighbour.id != clip.id for r, clip in zip(first, clips))
    assert first[0].decoding["candidate"] == "random"
    with pytest.raises(ValueError, match="candidate"):
        RGMCConfig(candidate="best")


def test_ablations_audio_only_and_text_only(clap_dir, items):
    audio_only = build(clap_dir, items, use_text=False)
    result = audio_only.caption(clip_of(items[0]), DecodingConfig(max_new_tokens=3))
    assert result.neighbour is None and "neighbour caption (all layers)" not in result.attention_views
    assert not any("neighbour" in key for key in result.attention_views)
    text_only = build(clap_dir, items, use_audio=False)
    assert text_only.mapper is None
    result = text_only.caption(clip_of(items[0]), DecodingConfig(max_new_tokens=3))
    assert result.attention is None and result.neighbour is not None
    assert train_steps(text_only, items, 2)[0] > 0


def test_full_profile_from_a_local_gpt2_folder(clap_dir, items, tmp_path):
    """lm_name_or_path: a GPT-2 folder (weights + tokenizer.json) initialises the LM; nothing downloads."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=280, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(TEMPLATES, trainer)
    torch.manual_seed(1)
    gpt2 = GPT2LMHeadModel(
        GPT2Config(vocab_size=tokenizer.get_vocab_size(), n_positions=128, n_embd=24, n_layer=2, n_head=2)
    )
    gpt2.save_pretrained(tmp_path / "gpt2")
    tokenizer.save(str(tmp_path / "gpt2" / "tokenizer.json"))

    model = build(clap_dir, items, lm_name_or_path=str(tmp_path / "gpt2"))
    assert (model.config.n_layer, model.config.n_embd, model.config.n_positions) == (2, 24, 128)
    assert model.config.vocab_size == tokenizer.get_vocab_size() + 1  # + the separator
    original_rows = gpt2.transformer.wte.weight
    assert torch.equal(model.lm.transformer.wte.weight[: original_rows.shape[0]], original_rows)
    model.save_pretrained(tmp_path / "rgmc")
    reloaded = load_captioner(tmp_path / "rgmc")
    clip = clip_of(items[0])
    assert reloaded.caption(clip).text == model.caption(clip).text


def test_text_neighbours_are_the_most_similar_other_caption(clap_dir, items):
    model = build(clap_dir, items)
    texts = [item.caption for item in items[:6]] + ["a slow piano piece", "a slow piano piece"]
    neighbours = model.text_neighbours(texts)
    embeddings = model.encoder.embed_text(texts)
    for row, neighbour in enumerate(neighbours):
        similarity = embeddings @ embeddings[row]
        similarity[row] = -np.inf
        assert neighbour == texts[int(np.argmax(similarity))]
    assert neighbours[-1] == neighbours[-2] == "a slow piano piece"  # the twin, never the text itself


def test_text_pretraining_lowers_the_captioning_loss(clap_dir, items):
    """Pretraining uses the captioning layout, so it lowers the loss of the captioning batch itself."""
    model = build(clap_dir, items)
    batch = model.collate(items)
    with torch.no_grad():
        before = model(batch)["loss"].item()
    losses = model.pretrain_on_text([item.caption for item in items], epochs=15, batch_size=8, lr=3e-3)
    with torch.no_grad():
        after = model(batch)["loss"].item()
    assert losses[-1] < 0.5 * losses[0]
    assert after < 0.5 * before


def test_text_pretraining_is_kept_epoch_by_epoch_for_an_interrupted_run(
    clap_dir, items, tmp_path, monkeypatch
):
    """A run cut off during its text pretraining continues from the last finished epoch; one started
    again after it reloads it whole; other settings pretrain afresh."""
    context = BuildContext(
        clap_path=str(clap_dir),
        feature_dims=(FRAME_DIM, POOLED_DIM, 200),
        corpus_dir="",
        build_dir=str(tmp_path),
    )
    config = {**TINY_LM, "pretrain_epochs": 3}
    batches_per_epoch = -(-len(items) // 32)
    pad = RGMCCaptioner._pad
    batches = []

    def count_batches(self, layouts, cut_after=None):
        batches.append(len(layouts))
        if cut_after is not None and len(batches) > cut_after:
            raise KeyboardInterrupt  # the session ends in the middle of the second epoch
        return pad(self, layouts)

    monkeypatch.setattr(
        RGMCCaptioner, "_pad", lambda self, layouts: count_batches(self, layouts, batches_per_epoch)
    )
    with pytest.raises(KeyboardInterrupt):
        RGMCCaptioner.build(config, items, context)
    monkeypatch.setattr(RGMCCaptioner, "_pad", lambda self, layouts: count_batches(self, layouts))
    batches.clear()
    finished = RGMCCaptioner.build(config, items, context)
    assert len(batches) == 2 * batches_per_epoch  # epochs 2 and 3 only

    batches.clear()
    again = RGMCCaptioner.build(config, items, context)
    assert batches == []
    for name, tensor in finished.lm.state_dict().items():
        assert torch.equal(tensor, again.lm.state_dict()[name]), name
    RGMCCaptioner.build({**config, "pretrain_epochs": 1}, items, context)
    assert len(batches) == batches_per_epoch


def test_runs_that_differ_only_after_the_text_pretraining_share_it(clap_dir, items, tmp_path, monkeypatch):
    """With a shared folder, a run whose pretraining inputs match an earlier run's reloads its pretraining
    (even when it weights attribute words or skips other neighbours in captioning); a run whose sequences
    differ (no neighbour caption) pretrains its own, and nothing shared is removed when a run's build is."""
    batches = []
    pad = RGMCCaptioner._pad
    monkeypatch.setattr(RGMCCaptioner, "_pad", lambda self, layouts: batches.append(1) or pad(self, layouts))

    def context(run: str) -> BuildContext:
        return BuildContext(
            clap_path=str(clap_dir),
            feature_dims=(FRAME_DIM, POOLED_DIM, 200),
            corpus_dir="",
            build_dir=str(tmp_path / run / "build"),
            shared_dir=str(tmp_path / "shared"),
        )

    config = {**TINY_LM, "pretrain_epochs": 2}
    paper = RGMCCaptioner.build(config, items, context("paper"))
    assert batches
    batches.clear()
    variant_config = {**config, "attribute_word_weight": 3.0, "training_neighbours_exclude": "piece"}
    variant = RGMCCaptioner.build(variant_config, items, context("variant"))
    assert batches == []
    for name, tensor in paper.lm.state_dict().items():
        assert torch.equal(tensor, variant.lm.state_dict()[name]), name
    assert not (tmp_path / "variant" / "build").exists()  # kept in the shared folder, not the run's

    RGMCCaptioner.build({**config, "use_text": False}, items, context("audio_only"))
    assert batches
    assert len(list((tmp_path / "shared" / "rgmc_text_pretraining").iterdir())) == 2


@pytest.mark.parametrize("name", ["rgmc", "rgmc_audio_only", "rgmc_text_only", "rgmc_no_pretraining"])
def test_configs_are_valid(name):
    document = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    config = config_from_dict(RGMCConfig, document["model"])
    assert config.n_prefix == 10 and config.candidate == "nearest"
    decoding = DecodingConfig.from_dict(document["decoding"])
    assert decoding.num_beams == 5 and decoding.no_repeat_ngram_size == 3
    assert (config.use_audio, config.use_text) == {
        "rgmc": (True, True),
        "rgmc_audio_only": (True, False),
        "rgmc_text_only": (False, True),
        "rgmc_no_pretraining": (True, True),
    }[name]
    assert config.pretrain_epochs == (0 if name == "rgmc_no_pretraining" else 4)
