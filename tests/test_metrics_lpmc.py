"""LP-MusicCaps-compatible metrics reproduce the published numbers (BLEU-1..4, METEOR, ROUGE-L within 0.002)."""

import json
import math
from pathlib import Path

import pytest

from musiccap.metrics import lpmc

FIXTURE = Path(__file__).parent / "fixtures" / "metrics" / "lpmc_baseline_k2c"
SHARED_EVAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "lp-music-caps-eval"
TOLERANCE = 0.002
PUBLISHED_KEYS = {"bleu1": "bleu1", "bleu2": "bleu2", "bleu3": "bleu3", "bleu4": "bleu4",
                  "meteor": "meteor_1.0", "rouge_l": "rougeL"}  # fmt: skip


def assert_reproduces(system_dir: Path) -> None:
    pairs = json.loads((system_dir / "inference.json").read_text())
    published = json.loads((system_dir / "results.json").read_text())
    ours = lpmc.lpmc_scores(
        [p["prediction"] for p in pairs], [[p["ground_truth"]] for p in pairs], workers=2
    ).to_dict()
    for key, published_key in PUBLISHED_KEYS.items():
        assert abs(ours[key] - published[published_key]) < TOLERANCE, (system_dir.name, key, ours[key])


def test_fixture_system_reproduces_published_numbers():
    assert_reproduces(FIXTURE)


@pytest.mark.skipif(not SHARED_EVAL.is_dir(), reason="../shared/data/lp-music-caps-eval not present")
@pytest.mark.parametrize(
    "system",
    ["baseline_tagconcat", "baseline_template", "caption_attribute_prediction", "caption_paraphrase",
     "caption_summary", "caption_writing"],
)  # fmt: skip
def test_shared_system_reproduces_published_numbers(system):
    assert_reproduces(SHARED_EVAL / system)


def test_corpus_bleu_hand_computed():
    # Candidate "the cat sat on the mat" vs reference "the cat is on the mat":
    # 1-gram 5/6, 2-gram 3/5, equal lengths -> no brevity penalty.
    prediction = [["the", "cat", "sat", "on", "the", "mat"]]
    reference = [[["the", "cat", "is", "on", "the", "mat"]]]
    bleu1, bleu2, bleu3, _ = lpmc.corpus_bleu(prediction, reference)
    assert bleu1 == pytest.approx(5 / 6)
    assert bleu2 == pytest.approx(math.sqrt(5 / 6 * 3 / 5))
    assert bleu3 == pytest.approx((5 / 6 * 3 / 5 * 1 / 4) ** (1 / 3))
    # A shorter candidate is penalized: 3 tokens against 6 -> exp(1 - 2).
    assert lpmc.corpus_bleu([["the", "cat", "is"]], reference)[0] == pytest.approx(math.exp(-1))


def test_word_tokenize_splits_sentences_first():
    assert lpmc.word_tokenize("A slow piano. Drums, e.g. a snare.") == [
        "A", "slow", "piano", ".", "Drums", ",", "e.g.", "a", "snare", ".",
    ]  # fmt: skip


def test_wordnet_folder_is_built_and_readable(tmp_path):
    nltk_data = lpmc.build_wordnet_data(tmp_path)
    lines = (nltk_data / "corpora" / "wordnet" / "lexnames").read_text().splitlines()
    assert len(lines) == 45 and lines[29] == "29\tverb.body\t2"
    wordnet = lpmc.wordnet_reader(tmp_path)
    assert "vocal" in {lemma.name() for synset in wordnet.synsets("song") for lemma in synset.lemmas()}


def test_meteor_credits_stems_and_synonyms_like_exact_matches():
    # nltk's METEOR 1.0 weighs exact, Porter-stem and WordNet-synonym matches alike.
    exact, stem, synonym, unrelated, nothing = lpmc.per_caption_scores(
        ["a guitar plays", "a guitar playing", "a guitar plays a song", "a guitar plays a chair", "drums"],
        [["a guitar plays"], ["a guitar plays"], ["a guitar plays a vocal"], ["a guitar plays a vocal"],
         ["a guitar plays"]],
    )  # fmt: skip
    assert exact[0] == pytest.approx(stem[0]) and exact[0] > 0.9
    assert synonym[0] > unrelated[0] > 0
    assert nothing[0] == 0.0
    assert exact[1] == pytest.approx(1.0)
