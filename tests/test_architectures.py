"""Every registered architecture through the same life: build -> a training step -> save -> reload -> caption.

Tiny configs on toy features; the components (a tiny embedded CLAP, a tiny T5 for BLAP) sit beside
the checkpoints under their registry names, as in checkpoints/.
"""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer

from musiccap.checkpoint import read_config
from musiccap.clip import ANALYSIS, AUDIO_FEATURES, Clip
from musiccap.decoding import DecodingConfig
from musiccap.encoders.caption_lm import TOKENIZER_NAME, build_t5, train_caption_tokenizer
from musiccap.models.base import load_captioner, registry
from musiccap.models.blap import INSTRUCTION
from musiccap.registry import REPO, captioner_names
from musiccap.text import clean_caption
from musiccap.training import BuildContext, Trainable, train_collate
from tests.test_alcap import TINY as ALCAP_TINY
from tests.test_blap import TINY as BLAP_TINY
from tests.test_conditioning import heard as heard_analysis
from tests.toy import TEMPLATES, save_tiny_clap, toy_item

FRAME_DIM, POOLED_DIM, CHUNK_DIM = 8 + 12 + 24 + 24, 6, 200  # the embedded layout's pitch-class blocks fit
TINY = {
    "muscaps": {
        "hidden_dim": 32,
        "attention_dim": 16,
        "word_embedding_dim": 12,
        "word_embedding_init": "scratch",
        "min_word_count": 1,
    },
    "alcap": ALCAP_TINY,
    "rgmc": {"vocab_size": 300, "n_layer": 1, "n_head": 2, "n_embd": 32, "dropout": 0.0, "n_prefix": 4},
    "blap": BLAP_TINY,
    "csa": {"n_layers": 2, "n_heads": 2, "width": 32, "ff_dim": 64, "dropout": 0.0, "max_positions": 40},
    "nearest": {},  # an index, not a network: no training step
}
DECODING = DecodingConfig(num_beams=2, max_new_tokens=12, clean_text=True, dedupe_sentences=True)


def test_every_registered_captioner_is_covered():
    assert set(TINY) | {"random"} == set(captioner_names()) == set(registry()) - {"tiny-test"}


@pytest.fixture(scope="module")
def items():
    rng = np.random.default_rng(0)
    return [toy_item(i, rng, frame_dim=FRAME_DIM, pooled_dim=POOLED_DIM) for i in range(8)]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> Path:
    """A checkpoints folder with the two components: the embedded CLAP and BLAP's frozen LM."""
    root = tmp_path_factory.mktemp("checkpoints")
    save_tiny_clap(root / "clap", FRAME_DIM, POOLED_DIM)
    torch.manual_seed(0)
    tokenizer = train_caption_tokenizer(TEMPLATES + [INSTRUCTION], vocab_size=60)
    lm = build_t5(tokenizer.get_vocab_size(), d_model=32, d_ff=48, n_layers=1, n_heads=2, dropout=0.0)
    lm.save_pretrained(str(root / "blap_lm"))
    tokenizer.save(str(root / "blap_lm" / TOKENIZER_NAME))
    return root


@pytest.mark.parametrize("name", sorted(TINY))
def test_build_train_save_reload_caption(name, items, checkpoints):
    torch.manual_seed(0)
    context = BuildContext(
        clap_path=str(checkpoints / "clap"), feature_dims=(FRAME_DIM, POOLED_DIM, CHUNK_DIM), corpus_dir=""
    )
    config = {**TINY[name], **({"lm_path": str(checkpoints / "blap_lm")} if name == "blap" else {})}
    model = registry()[name].build(config, items, context)

    if isinstance(model, torch.nn.Module):
        assert isinstance(model, Trainable)
        model.train()
        trainable = [p for p in model.parameters() if p.requires_grad]
        before = [p.detach().clone() for p in trainable]
        optimizer = torch.optim.Adam(trainable, lr=1e-2)
        losses = model(train_collate(model)(items[:4]))
        assert torch.isfinite(losses["loss"])
        losses["loss"].backward()
        optimizer.step()
        assert any(not torch.equal(b, p) for b, p in zip(before, trainable))
        model.eval()

    model.save_pretrained(checkpoints / name)
    loaded = load_captioner(checkpoints / name)
    assert type(loaded) is type(model) and loaded.checkpoint_hash
    if "clap_path" in read_config(checkpoints / name)["config"]:  # components by registry name
        assert read_config(checkpoints / name)["config"]["clap_path"] in ("clap", str(checkpoints / "clap"))

    clips = [Clip(None, clip_id=item.id, features={AUDIO_FEATURES: item.features}) for item in items[:3]]
    before, after = model.caption_batch(clips, DECODING), loaded.caption_batch(clips, DECODING)
    assert [(r.text, r.tokens) for r in after] == [(r.text, r.tokens) for r in before]
    # grouping the numbers: the toy captions hold none, so it changes nothing (RGMC's byte-level BPE
    # keeps the ten digits, which an untrained decoder spreads as much mass over as over any word)
    grouped = loaded.caption_batch(clips, DECODING.replace(group_numbers=True))
    if name != "rgmc":
        assert [(r.text, r.tokens) for r in grouped] == [(r.text, r.tokens) for r in after]
    for result in after:
        assert result.model == name and result.window == (0.0, 10.0)
        if result.decoded_text:  # the clean-up ran: the text is the decoded one, cleaned
            assert result.text == clean_caption(
                result.decoded_text, hit_length_limit=len(result.tokens) >= DECODING.max_new_tokens
            )


@pytest.mark.parametrize("name", sorted(set(TINY) - {"nearest"}))
def test_attribute_word_weight_is_a_variant_of_the_plain_nll(name, items, checkpoints, tmp_path):
    """Weight 1 (every paper's row) optimises the plain NLL; a weight > 1 moves the optimised loss
    while the reported NLL stays the plain one, and the weighted ids are attribute words."""
    context = BuildContext(
        clap_path=str(checkpoints / "clap"), feature_dims=(FRAME_DIM, POOLED_DIM, CHUNK_DIM), corpus_dir=""
    )
    # Vocabularies where the toy captions' words are whole tokens: RGMC's BPE trained bigger; for BLAP a
    # tiny T5 on the shipped LM's caption tokenizer (a unigram model needs more text than the toy one).
    config = dict(TINY[name])
    if name == "rgmc":
        config["vocab_size"] = 1000
    if name == "blap":
        tokenizer = Tokenizer.from_file(str(REPO / "checkpoints" / "blap_lm" / TOKENIZER_NAME))
        lm = build_t5(tokenizer.get_vocab_size(), d_model=32, d_ff=48, n_layers=1, n_heads=2, dropout=0.0)
        lm.save_pretrained(str(tmp_path / "blap_lm"))
        tokenizer.save(str(tmp_path / "blap_lm" / TOKENIZER_NAME))
        config["lm_path"] = str(tmp_path / "blap_lm")
    losses = {}
    for weight in (1.0, 4.0):
        torch.manual_seed(0)
        model = registry()[name].build({**config, "attribute_word_weight": weight}, items, context).eval()
        with torch.no_grad():
            losses[weight] = model(model.collate(items[:4]))
    assert torch.allclose(losses[4.0]["nll"], losses[1.0]["nll"])
    assert not torch.allclose(losses[4.0]["loss"], losses[1.0]["loss"])
    weighted = model._attribute_ids.tolist()
    assert model.caption_token_ids("piano")[0] in weighted or model.caption_token_ids(" piano")[0] in weighted
    assert not set(model.caption_token_ids(" a")) & set(weighted)


def test_csa_musical_frames_variant_reads_the_unpooled_key_and_tempo_columns(items, checkpoints):
    """The variant's decoder attends to the frames' musical columns as well; the heatmap stays one row
    per frame; a paper config (musical_frames 0) has no such parameters."""
    context = BuildContext(
        clap_path=str(checkpoints / "clap"), feature_dims=(FRAME_DIM, POOLED_DIM, CHUNK_DIM), corpus_dir=""
    )
    torch.manual_seed(0)
    musical = FRAME_DIM - 8  # the toy frames: 8 musicnn columns, then chroma, key, tempogram
    model = registry()["csa"].build({**TINY["csa"], "musical_frames": musical}, items, context)
    losses = model(train_collate(model)(items[:4]))
    losses["loss"].backward()
    assert (
        model.musical_projection.weight.grad is not None
        and model.musical_projection.weight.grad.abs().sum() > 0
    )
    model.eval()
    model.save_pretrained(checkpoints / "csa_musical")
    loaded = load_captioner(checkpoints / "csa_musical")
    clip = Clip(None, clip_id=items[0].id, features={AUDIO_FEATURES: items[0].features})
    result = loaded.caption_batch([clip], DECODING)[0]
    assert result.text == model.caption_batch([clip], DECODING)[0].text
    assert result.attention.shape[1] == len(items[0].features.frames)

    def memory(features):
        audio = loaded.clap.audio_batch([features])
        return loaded.encode_audio(audio["frames"], audio["mask"], audio["pooled"]).memory

    features = items[0].features
    silenced = replace(features, frames=features.frames.copy())
    silenced.frames[:, -musical:] = 0.0  # only the musical columns change
    own, other = memory(features), memory(silenced)
    n = own.shape[1] // 2  # [CLAP tokens | musical frames]
    assert not torch.allclose(own[:, n:], other[:, n:])
    plain = registry()["csa"].build(TINY["csa"], items, context)
    assert not any(name.startswith("musical_") for name, _ in plain.named_parameters())


ANALYSES = [heard_analysis(60 + 20 * i, ("minor", "major")[i % 2], i % 2 * 0.9) for i in range(8)]


def conditioned_model(name, items, checkpoints):
    context = BuildContext(
        clap_path=str(checkpoints / "clap"), feature_dims=(FRAME_DIM, POOLED_DIM, CHUNK_DIM), corpus_dir=""
    )
    config = {**TINY[name], **({"lm_path": str(checkpoints / "blap_lm")} if name == "blap" else {})}
    torch.manual_seed(0)
    return registry()[name].build({**config, "analysis_conditioning": True}, items, context)


@pytest.mark.parametrize("name", sorted(set(TINY) - {"nearest"}))
def test_every_architecture_can_be_conditioned_on_the_analysis(name, items, checkpoints):
    """The analysis reaches the loss (another analysis, another loss; its parameters train), survives
    save and reload, and reaches captioning through the clip; the paper recipe has none of it."""
    items = [replace(item, analysis=analysis) for item, analysis in zip(items, ANALYSES)]
    model = conditioned_model(name, items, checkpoints).eval()
    batch = train_collate(model)(items[:4])
    with torch.no_grad():
        own = model(batch)["loss"]
        other = model({**batch, "analysis": batch["analysis"].flip(0)})["loss"]
    assert not torch.allclose(own, other)
    model.train()
    model(batch)["loss"].backward()
    analysis_parameters = [
        p for n, p in model.named_parameters() if n.startswith(("analysis_", "mapper.mlp.0"))
    ]
    assert analysis_parameters and all(
        p.grad is not None and p.grad.abs().sum() > 0 for p in analysis_parameters
    )
    model.eval()

    model.save_pretrained(checkpoints / f"{name}_analysis")
    loaded = load_captioner(checkpoints / f"{name}_analysis")
    clips = [
        Clip(None, clip_id=item.id, features={AUDIO_FEATURES: item.features, ANALYSIS: item.analysis})
        for item in items[:2]
    ]
    before, after = model.caption_batch(clips, DECODING), loaded.caption_batch(clips, DECODING)
    assert [r.text for r in after] == [r.text for r in before]
    if after[0].attention is not None and after[0].attention.size:  # a heatmap over audio time only
        assert after[0].attention.shape[1] == len(after[0].attention_times)
    with pytest.raises(ValueError, match="needs the clip's audio"):
        loaded.caption_batch(
            [Clip(None, clip_id="x", features={AUDIO_FEATURES: items[0].features})], DECODING
        )


def test_training_without_the_corpus_analyses_says_how_to_make_them(items, checkpoints):
    model = conditioned_model("csa", items, checkpoints)
    with pytest.raises(ValueError, match="train.analysis_vectors"):
        model.collate(items[:2])
