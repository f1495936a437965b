"""The analysis-conditioned variants (issue 30): the analysis as a vector, one memory token, its data path."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from musiccap.analysis import Analysis
from musiccap.attributes import FAMILIES
from musiccap.clip import ANALYSIS, AUDIO_FEATURES, Clip
from musiccap.conditioning import ANALYSIS_FIELDS, ANALYSIS_SIZE, analysis_vector, clip_analysis_batch
from musiccap.models.base import load_captioner, registry
from musiccap.training import BuildContext, train_collate
from tests.test_architectures import CHUNK_DIM, DECODING, FRAME_DIM, POOLED_DIM, TINY
from tests.toy import save_tiny_clap, toy_item, toy_waveform
from train.analysis_vectors import fold_of
from train.data import analysis_path, load_items


def heard(tempo_bpm=72.0, mode="minor", drums=0.9, families=("piano", "bass")) -> Analysis:
    from musiccap.attributes import tempo_class

    return Analysis(
        window=(0.0, 10.0), tempo_bpm=tempo_bpm, tempo_class=tempo_class(tempo_bpm), key=f"A {mode}", mode=mode,
        drums=drums, families={f: (0.9 if f in families else 0.1) for f in FAMILIES}, heard=list(families),
        tags={"piano": 0.5}, confidence={"tempo": 0.8, "key": 0.6, "mode": 0.7},
    )  # fmt: skip


def test_the_vector_holds_tempo_mode_drums_and_families_with_their_confidence():
    vector = dict(zip(ANALYSIS_FIELDS, analysis_vector(heard()).tolist()))
    assert len(vector) == ANALYSIS_SIZE
    assert vector["tempo_slow"] == 1.0 and vector["tempo_fast"] == 0.0
    assert vector["minor"] == pytest.approx(0.7) and vector["drums"] == pytest.approx(0.9)
    assert vector["family_piano"] == pytest.approx(0.9) and vector["family_organ"] == pytest.approx(0.1)
    major = dict(zip(ANALYSIS_FIELDS, analysis_vector(heard(mode="major", tempo_bpm=140)).tolist()))
    assert major["minor"] == pytest.approx(0.3) and major["tempo_fast"] == 1.0
    assert major["log2_bpm_over_100"] > 0 > vector["log2_bpm_over_100"]


def test_an_analysis_without_probes_cannot_condition():
    with pytest.raises(ValueError, match="no probes"):
        analysis_vector(replace(heard(), drums=None, families={}))


def test_an_analysis_survives_its_json_line():
    analysis = heard()
    assert Analysis.from_json(json.loads(json.dumps(analysis.to_json()))) == analysis


def test_a_clip_without_audio_or_analysis_is_refused_clearly():
    clip = Clip(None, clip_id="x")
    with pytest.raises(ValueError, match="needs the clip's audio"):
        clip_analysis_batch([clip])


def test_folds_go_by_composition_and_are_stable():
    assert fold_of("bach/bwv772", 3) == fold_of("bach/bwv772", 3)
    assert {fold_of(f"piece{i}", 3) for i in range(30)} == {0, 1, 2}


@pytest.fixture(scope="module")
def conditioned(tmp_path_factory):
    root = tmp_path_factory.mktemp("conditioned")
    save_tiny_clap(root / "clap", FRAME_DIM, POOLED_DIM)
    rng = np.random.default_rng(0)
    analyses = [heard(60 + 20 * i, ("minor", "major")[i % 2], i % 2 * 0.9) for i in range(8)]
    items = [
        replace(toy_item(i, rng, frame_dim=FRAME_DIM, pooled_dim=POOLED_DIM), analysis=analyses[i])
        for i in range(8)
    ]
    context = BuildContext(
        clap_path=str(root / "clap"), feature_dims=(FRAME_DIM, POOLED_DIM, CHUNK_DIM), corpus_dir=""
    )
    torch.manual_seed(0)
    model = registry()["csa"].build({**TINY["csa"], "analysis_conditioning": True}, items, context)
    return root, items, model


def test_csa_reads_the_analysis_as_one_more_memory_token(conditioned):
    root, items, model = conditioned
    losses = model(train_collate(model)(items[:4]))
    losses["loss"].backward()
    assert model.analysis_token.projection.weight.grad.abs().sum() > 0
    model.eval()
    model.save_pretrained(root / "csa_analysis")
    loaded = load_captioner(root / "csa_analysis")

    def clip(item, analysis):
        return Clip(None, clip_id=item.id, features={AUDIO_FEATURES: item.features, ANALYSIS: analysis})

    own = clip(items[0], items[0].analysis)
    result = loaded.caption_batch([own], DECODING)[0]
    assert result.text == model.caption_batch([own], DECODING)[0].text
    # the heatmap stays one column per frame (the analysis token has no time), rows a distribution
    assert result.attention.shape[1] == len(items[0].features.frames)
    np.testing.assert_allclose(result.attention.sum(1), 1.0, rtol=1e-4)
    with torch.no_grad():
        first, second = (
            loaded.encode_clips([c], loaded.clip_features([c]))
            for c in (clip(items[0], heard(60)), clip(items[0], heard(180, "major", 0.0)))
        )
    # same audio, another analysis: only the last memory position moves
    assert torch.allclose(first.memory[:, :-1], second.memory[:, :-1])
    assert not torch.allclose(first.memory[:, -1], second.memory[:, -1])


def test_training_without_the_corpus_analyses_says_how_to_make_them(conditioned):
    _, items, model = conditioned
    with pytest.raises(ValueError, match="train.analysis_vectors"):
        model.collate([replace(item, analysis=None) for item in items[:2]])


def test_load_items_attaches_the_corpus_analyses(tmp_path, monkeypatch):
    import soundfile

    monkeypatch.setenv("MUSICCAP_CACHE", str(tmp_path / "cache"))
    corpus, ids = tmp_path / "corpus", ["a", "b", "c"]
    (corpus / "audio").mkdir(parents=True)
    for index, clip_id in enumerate(ids):
        soundfile.write(corpus / "audio" / f"{clip_id}.wav", toy_waveform(index), 16000)
    rows = [{"id": i, "audio": f"audio/{i}.wav", "caption": "a piano.", "piece": i} for i in ids]
    (corpus / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    path = analysis_path(corpus, "train")
    path.parent.mkdir()
    path.write_text(
        "".join(json.dumps({"id": i, "fold": 0, "analysis": heard().to_json()}) + "\n" for i in ids[:2])
    )
    items = load_items(corpus, "train")
    assert [item.analysis for item in items] == [heard(), heard(), None]
