"""Caption index search and exclusions, retrieval metrics on hand-made cases, and the
Nearest-neighbour captioner built on a tiny CLAP."""

from __future__ import annotations

import json

import numpy as np
import pytest

from musiccap.clip import AUDIO_FEATURES, Clip
from musiccap.encoders.embedded_clap import EmbeddedClap
from musiccap.models.nearest import NearestCaptioner
from musiccap.retrieval import CaptionIndex, random_retrieval_metrics, retrieval_metrics
from tests.test_clap import tiny_config, toy_items


def random_index(n: int = 50, dim: int = 8, seed: int = 0) -> CaptionIndex:
    rng = np.random.default_rng(seed)
    captions = [f"caption number {i}" for i in range(n)]
    return CaptionIndex([f"id{i}" for i in range(n)], captions, rng.standard_normal((n, dim)))


def test_search_never_returns_the_query_clip():
    index = random_index()
    for row in range(len(index)):
        query = index.embeddings[row]
        assert index.search(query, 1)[0].id == index.ids[row]  # without the exclusion it would
        hits = index.search(query, 5, exclude_ids=[index.ids[row]])
        assert len(hits) == 5 and index.ids[row] not in {h.id for h in hits}
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_search_skips_identical_captions_even_beyond_the_first_candidates():
    rng = np.random.default_rng(1)
    query = rng.standard_normal(8)
    near = query + 0.01 * rng.standard_normal((6, 8))  # six clips closer than anything else ...
    far = rng.standard_normal((20, 8))
    captions = ["A calm  piano piece"] * 6 + [
        f"other {i}" for i in range(20)
    ]  # ... all with the query's caption
    index = CaptionIndex([f"c{i}" for i in range(26)], captions, np.concatenate([near, far]))
    hits = index.search(query, 3, exclude_captions=["a calm piano piece"])
    assert len(hits) == 3 and all(h.caption.startswith("other") for h in hits)
    batch = index.search_batch(
        np.stack([query, query]), 2, exclude_ids=[[], ["c0"]], exclude_captions=[[], []]
    )
    assert batch[0][0].id == "c0" and "c0" not in {h.id for h in batch[1]}


def test_index_round_trip(tmp_path):
    index = random_index()
    index.save(tmp_path)
    loaded = CaptionIndex.load(tmp_path)
    query = np.random.default_rng(2).standard_normal(8)
    assert [(h.id, h.caption, h.score) for h in index.search(query, 4)] == [
        (h.id, h.caption, h.score) for h in loaded.search(query, 4)
    ]


def unit_vectors(degrees: list[float]) -> np.ndarray:
    radians = np.deg2rad(degrees)
    return np.stack([np.cos(radians), np.sin(radians)], axis=1)


def test_retrieval_metrics_on_a_hand_made_case():
    # Unit vectors on a circle: similarity falls with the angle between them; clip i matches caption i.
    audio = unit_vectors([0, 60, 200, 290])
    text = unit_vectors([0, 100, 200, 40])
    # audio->text: a0 ranks t0 1st; a1 (60) sees t3 (20 away) before t1 (40): 2nd; a2: 1st;
    # a3 (290) sees t0 (70), t2 (90) before t3 (110): 3rd.  text->audio: t0, t1, t2 1st; t3 (40)
    # sees a1 (20), a0 (40) before a3 (110): 3rd.
    result = retrieval_metrics(audio, text)
    assert result["metrics"] == {
        "t2a_r1": 0.75, "t2a_r5": 1.0, "t2a_r10": 1.0, "t2a_medr": 1.0,
        "a2t_r1": 0.5, "a2t_r5": 1.0, "a2t_r10": 1.0, "a2t_medr": 1.5,
    }  # fmt: skip
    assert result["baseline_random"] == {
        "t2a_r1": 0.25, "t2a_r5": 1.0, "t2a_r10": 1.0, "t2a_medr": 2.5,
        "a2t_r1": 0.25, "a2t_r5": 1.0, "a2t_r10": 1.0, "a2t_medr": 2.5,
    }  # fmt: skip


def test_perfect_and_random_retrieval():
    rng = np.random.default_rng(3)
    embeddings = rng.standard_normal((200, 32))
    perfect = retrieval_metrics(embeddings, embeddings)["metrics"]
    assert perfect["t2a_r1"] == perfect["a2t_r1"] == 1.0 and perfect["t2a_medr"] == 1.0
    baseline = random_retrieval_metrics(200)
    assert baseline["t2a_r10"] == 0.05 and baseline["a2t_medr"] == 100.5
    unrelated = retrieval_metrics(embeddings, rng.standard_normal((200, 32)))["metrics"]
    assert abs(unrelated["t2a_r10"] - 0.05) < 0.05 and 60 < unrelated["t2a_medr"] < 140


@pytest.fixture()
def clap_dir(tmp_path):
    path = tmp_path / "checkpoints" / "clap"
    EmbeddedClap(tiny_config()).save_pretrained(path)
    return path


def clip_of(item) -> Clip:
    return Clip(None, clip_id=item.id, features={AUDIO_FEATURES: item.features})


def test_nearest_captioner_returns_a_neighbour_never_itself(clap_dir, tmp_path):
    items = toy_items()
    captioner = NearestCaptioner.from_items(clap_dir, items)
    out = tmp_path / "checkpoints" / "nearest"
    captioner.save_pretrained(out)
    assert (
        json.loads((out / "config.json").read_text())["config"]["clap_path"] == "clap"
    )  # the registry name, found beside it

    loaded = NearestCaptioner.from_pretrained(out)
    results = loaded.caption_batch([clip_of(item) for item in items[:6]])
    for item, result in zip(items[:6], results):
        assert result.neighbour.id != item.id and result.text == result.neighbour.text
        assert result.text in {i.caption for i in items}
        assert result.audio_embedding.shape == (loaded.clap.embed_dim,)
    again = loaded.caption(clip_of(items[0]))
    assert (again.text, again.neighbour.score) == (results[0].text, results[0].neighbour.score)


def test_nearest_refuses_an_index_from_other_clap_weights(clap_dir, tmp_path):
    out = tmp_path / "checkpoints" / "nearest"
    NearestCaptioner.from_items(clap_dir, toy_items()).save_pretrained(out)
    EmbeddedClap(tiny_config(embed_dim=8)).save_pretrained(clap_dir)  # the CLAP was retrained since
    with pytest.raises(ValueError, match="rebuild"):
        NearestCaptioner.from_pretrained(out)
