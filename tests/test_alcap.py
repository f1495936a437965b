"""ALCAP on tiny random components: a tiny music encoder/decoder, the real frozen MiniLM for the lyrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

import musiccap.models  # noqa: F401  (first: importing musiccap.features first is circular)
from musiccap.clip import AUDIO_FEATURES, LYRICS
from musiccap.decoding import DecodingConfig
from musiccap.models.alcap import (
    NEVER_GENERATED,
    PAPER_SAMPLING,
    VOCAB_NAME,
    AlcapCaptioner,
    AlcapConfig,
    lyrics_info_nce,
)
from musiccap.models.base import WEIGHTS_NAME, Clip, config_from_dict, load_captioner
from musiccap.models.vocab import BOS, EOS
from musiccap.training import BuildContext
from tests.toy import TEMPLATES, toy_item
from train.data import FeatureItem

CONFIGS = Path(__file__).resolve().parents[1] / "train" / "configs"
FRAME_DIM = 16
LYRIC_TEXTS = ["the river runs to the sea", "dance all night under neon lights", None, None]
TINY = {
    "width": 32,
    "n_heads": 2,
    "ff_dim": 64,
    "music_layers": 1,
    "decoder_layers": 2,
    "dropout": 0.0,
    "code_dim": 16,
    "max_positions": 32,
}


def make_item(index: int, rng: np.random.Generator) -> FeatureItem:
    return toy_item(index, rng, frame_dim=FRAME_DIM, pooled_dim=4, lyrics=LYRIC_TEXTS, random_pooled=False)


@pytest.fixture(scope="module")
def items() -> list[FeatureItem]:
    rng = np.random.default_rng(0)
    return [make_item(i, rng) for i in range(8)]


def build(items, **overrides) -> AlcapCaptioner:
    torch.manual_seed(0)
    context = BuildContext(clap_path="", feature_dims=(FRAME_DIM, 4, 200), corpus_dir="")
    return AlcapCaptioner.build({**TINY, **overrides}, items, context)


@pytest.fixture(scope="module")
def model(items) -> AlcapCaptioner:
    return build(items).eval()


def clip_of(item: FeatureItem, lyrics: str | None = None) -> Clip:
    features = {AUDIO_FEATURES: item.features}
    if lyrics is not None:
        features[LYRICS] = lyrics
    return Clip(None, clip_id=item.id, features=features)


def test_vocabulary_is_pruned_and_round_trips(model):
    n_words = len(set(" ".join(TEMPLATES).split()))
    assert model.config.vocab_size <= n_words + 4 < 100  # caption-sized, not MiniLM's 30,522
    ids = model.vocab.encode([TEMPLATES[1]])[0]
    assert min(ids) > EOS
    assert model.vocab.decode(ids)[0] == TEMPLATES[1]


def test_info_nce_is_the_papers_direction_and_skips_duplicates():
    torch.manual_seed(1)
    music, lyrics = F.normalize(torch.randn(4, 8), dim=-1), F.normalize(torch.randn(4, 8), dim=-1)
    everyone = torch.ones(4, dtype=torch.bool)
    distinct = torch.arange(4)
    logits = music @ lyrics.T / 0.1
    expected = -(logits.diag() - logits.logsumexp(dim=1)).mean()  # eq. 1: music anchors, lyrics candidates
    one_way = lyrics_info_nce(music, lyrics, everyone, distinct, 0.1)
    torch.testing.assert_close(one_way, expected)
    reverse = -(logits.diag() - logits.logsumexp(dim=0)).mean()
    torch.testing.assert_close(
        lyrics_info_nce(music, lyrics, everyone, distinct, 0.1, True), (expected + reverse) / 2
    )
    # rows 0 and 1 share a lyric text: neither is the other's negative
    shared = lyrics_info_nce(music, lyrics, everyone, torch.tensor([0, 0, 2, 3]), 0.1)
    masked = logits.clone()
    masked[0, 1] = masked[1, 0] = float("-inf")
    torch.testing.assert_close(shared, -(masked.diag() - masked.logsumexp(dim=1)).mean())
    one_row = torch.tensor([True, False, False, False])
    assert float(lyrics_info_nce(music, lyrics, one_row, distinct, 0.1)) == 0.0


def test_items_without_lyrics_add_nothing_to_info_nce(model, items):
    with_lyrics = [item for item in items if item.lyrics]
    assert 2 <= len(with_lyrics) < len(items)
    full = model(model.collate(items))["contrastive"]
    subset = model(model.collate(with_lyrics))["contrastive"]
    torch.testing.assert_close(full, subset, atol=1e-5, rtol=1e-5)
    assert float(full) > 0

    batch = model.collate(items)  # other music for the lyric-less rows changes nothing
    no_lyrics = ~batch["has_lyrics"]
    batch["frames"][no_lyrics] = torch.randn_like(batch["frames"][no_lyrics])
    torch.testing.assert_close(model(batch)["contrastive"], full, atol=1e-5, rtol=1e-5)

    trained = build(items, contrastive_weight=1.0).train()
    lyric_less = [item for item in items if not item.lyrics]
    losses = trained(trained.collate(lyric_less))
    assert float(losses["contrastive"]) == 0.0
    losses["loss"].backward()
    assert trained.lyrics_head.weight.grad is None or not trained.lyrics_head.weight.grad.any()
    assert trained.lyrics_placeholder.grad.abs().sum() > 0  # the placeholder still learns, through the NLL


def test_loss_falls_on_a_toy_set(items):
    model = build(items, contrastive_weight=0.2).train()
    batch = model.collate(items)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    history = []
    for _ in range(40):
        losses = model(batch)
        assert set(losses) == {"loss", "nll", "contrastive"}
        assert all(torch.isfinite(value) for value in losses.values())
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
        history.append(float(losses["loss"].detach()))
    assert np.mean(history[-5:]) < 0.5 * np.mean(history[:5])
    assert all(p.grad is None for p in model.lyrics_bert.parameters())  # MiniLM is frozen


def test_kv_cached_steps_equal_the_full_forward(model, items):
    batch = model.collate(items[:3])
    encoding = model.encode(batch)
    keys, values = model.decoder.memory_cache(encoding.memory)
    tokens = torch.randint(4, model.config.vocab_size, (3, 7))
    tokens[:, 0] = BOS
    with torch.no_grad():
        full = model.decoder(tokens, keys, values, encoding.memory_mask)
        past_keys, past_values = model.decoder.empty_cache(3)
        state = {"memory_keys": keys, "memory_values": values, "memory_mask": encoding.memory_mask}
        state.update(keys=past_keys, values=past_values)
        for position in range(tokens.shape[1]):
            logits, state, attention = model.decode_step(tokens[:, position], state)
            expected_logits = full.logits[:, position].clone()
            expected_logits[:, NEVER_GENERATED] = float("-inf")
            torch.testing.assert_close(logits, expected_logits, atol=1e-5, rtol=1e-5)
            expected = full.cross_attention[:, :, :, position].reshape(3, -1)
            torch.testing.assert_close(attention, expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("lyrics", [None, "the river runs to the sea"])
def test_beam_one_is_greedy_and_attention_is_tokens_by_time(model, items, lyrics):
    decoding = DecodingConfig(num_beams=1, max_new_tokens=12)
    item = items[1]
    result = model.caption(clip_of(item, lyrics), decoding)
    batch = {**model.frame_batch([item.features]), **model.lyric_token_states([lyrics])}
    encoding = model.encode(batch)
    keys, values = model.decoder.memory_cache(encoding.memory)
    greedy = [BOS]
    with torch.no_grad():
        while len(greedy) <= decoding.max_new_tokens:
            logits = model.decoder(torch.tensor([greedy]), keys, values, encoding.memory_mask).logits[0, -1]
            logits[NEVER_GENERATED] = float("-inf")
            greedy.append(int(logits.argmax()))
            if greedy[-1] == EOS:
                break
    expected = [t for t in greedy[1:] if t != EOS]
    assert result.text == model.vocab.decode(expected)[0]
    assert result.decoding["lyrics"] is (lyrics is not None)

    n_tokens, n_frames = len(expected), item.features.frames.shape[0]
    assert result.attention.shape == (n_tokens, n_frames) and len(result.tokens) == n_tokens
    np.testing.assert_allclose(result.attention.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(result.attention_times, item.features.frame_times)
    views = result.attention_views
    assert views["layer 2"].shape == (n_tokens, n_frames)
    queries = "lyric tokens" if lyrics else "placeholders"
    fusion = views[f"fusion: {queries} × music time"]
    n_queries = int(batch["lyrics_mask"].sum()) if lyrics else model.config.n_placeholders
    assert fusion.shape == (n_queries, n_frames)
    np.testing.assert_allclose(fusion.sum(1), 1.0, atol=1e-5)
    share = views["music share of decoder attention (tokens × layers)"]
    assert share.shape == (n_tokens, 2) and np.all((share > 0) & (share < 1))
    assert result.audio_embedding.shape == (TINY["code_dim"],)


def test_lyrics_change_the_memory_and_sampling_is_seeded(model, items):
    item = items[0]
    without = model.encode({**model.frame_batch([item.features]), **model.lyric_token_states([None])})
    with_lyrics = model.encode(
        {**model.frame_batch([item.features]), **model.lyric_token_states(["the river runs to the sea"])}
    )
    assert not with_lyrics.memory.shape == without.memory.shape or not torch.allclose(
        with_lyrics.memory, without.memory
    )
    torch.testing.assert_close(with_lyrics.memory[:, : without.n_music], without.memory[:, : without.n_music])
    sampling = PAPER_SAMPLING.replace(max_new_tokens=10, seed=3)
    assert sampling.do_sample and sampling.top_p == 0.92
    clip = clip_of(item, "the river runs to the sea")
    assert model.caption(clip, sampling).text == model.caption(clip, sampling).text


def test_batched_beam_search_equals_one_clip_at_a_time(model, items):
    decoding = DecodingConfig(num_beams=3, max_new_tokens=10, no_repeat_ngram_size=2)
    clips = [clip_of(item, item.lyrics) for item in items[:4]]  # uneven frames, lyrics and none
    batched = model.caption_batch(clips, decoding)
    for clip, result in zip(clips, batched, strict=True):
        alone = model.caption(clip, decoding)
        assert alone.text == result.text
        np.testing.assert_allclose(alone.attention, result.attention, atol=1e-5)


def test_save_load_gives_the_same_captions_and_keeps_minilm_out(model, items, tmp_path):
    model.save_pretrained(tmp_path)
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / WEIGHTS_NAME))
    assert not any(key.startswith("lyrics_bert.") for key in saved)
    assert (tmp_path / VOCAB_NAME).is_file()
    loaded = load_captioner(tmp_path)
    assert isinstance(loaded, AlcapCaptioner)
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    decoding = DecodingConfig(num_beams=2, max_new_tokens=8)
    for lyrics in (None, "dance all night under neon lights"):
        clip = clip_of(items[2], lyrics)
        assert loaded.caption(clip, decoding).text == model.caption(clip, decoding).text


def test_without_lyrics_ablation_ignores_lyrics(items):
    model = build(items, use_lyrics=False).eval()
    assert model.lyrics_bert is None
    losses = model(model.collate(items))
    assert set(losses) == {"loss", "nll"}
    decoding = DecodingConfig(num_beams=2, max_new_tokens=8)
    plain = model.caption(clip_of(items[0]), decoding)
    given = model.caption(clip_of(items[0], "the river runs to the sea"), decoding)
    assert plain.text == given.text and given.decoding["lyrics"] is False


def test_configs_differ_from_alcap_only_where_the_ablation_says():
    main = yaml.safe_load((CONFIGS / "alcap.yaml").read_text())
    assert main["model"]["contrastive_weight"] == 0.02
    expected = {
        "alcap_alpha0": {"contrastive_weight": 0.0},
        "alcap_alpha0002": {"contrastive_weight": 0.002},
        "alcap_alpha02": {"contrastive_weight": 0.2},
        "alcap_no_lyrics": {"use_lyrics": False},
    }
    for name, changes in expected.items():
        ablation = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
        assert ablation["decoding"] == main["decoding"], name
        assert ablation["train"] == main["train"], name  # every row of the α table gets the same budget
        differing = {k: v for k, v in ablation["model"].items() if main["model"].get(k) != v}
        assert differing == changes, name
        config_from_dict(AlcapConfig, ablation["model"])
