"""Caption metrics on hand-computed cases: coco-caption, diversity, attributes, semantic, tables, `musiccap eval`."""

import json

import pytest

from musiccap.metrics import UNAVAILABLE, coco, compute_metrics, diversity
from musiccap.metrics.attributes import attribute_accuracy, read_caption
from musiccap.metrics.cli import main as eval_main
from musiccap.metrics.tables import json_tables, markdown_tables

needs_java = pytest.mark.skipif(not coco.java_available(), reason="Java is not installed")


@needs_java
def test_ptb_tokenizer_lowercases_and_drops_punctuation():
    assert coco.ptb_tokenize(["A man's guitar, playing FAST.", "", "two\nlines!"]) == [
        "a man 's guitar playing fast", "", "two lines",
    ]  # fmt: skip


@needs_java
def test_coco_scores_identical_and_disjoint_captions():
    same = coco.coco_scores(["a slow piano melody plays", "loud drums and a bass"],
                            [["a slow piano melody plays"], ["loud drums and a bass", "drums"]])  # fmt: skip
    assert same.bleu4 == pytest.approx(1.0, abs=1e-6) and same.rouge_l == pytest.approx(1.0)
    assert same.meteor > 0.9
    assert same.cider_d > 0
    apart = coco.coco_scores(["violin"], [["a loud drum solo"]], with_meteor=False)
    assert apart.bleu1 == pytest.approx(0.0, abs=1e-6) and apart.rouge_l == 0 and apart.meteor is None


def test_diversity_hand_computed():
    predictions = ["A piano plays.", "a piano plays", "Loud drums!"]
    result = diversity.diversity(predictions, train_captions=["a piano plays", "soft drums"])
    assert result.vocab == 5  # a, piano, plays, loud, drums
    assert result.novel_v == pytest.approx(1 / 5)  # "loud"
    assert result.novel_c == pytest.approx(1 / 3)  # only "loud drums" is not a training caption
    assert result.len_mean == pytest.approx(8 / 3)
    copy = diversity.copying(predictions, ["a piano plays", "a violin plays", "loud drums"])
    assert copy.copy_rate == pytest.approx(2 / 3)


def test_unk_and_repetition_counts():
    """MusCaps' greedy-vs-beam statistics: <unk> tokens and immediately repeated n-grams."""
    predictions = [
        "upbeat acoustic guitar guitar",
        "bass bass and bass",
        "and strings and strings <unk>",
        "calm",
    ]
    result = diversity.diversity(predictions)
    assert result.unk == 1
    assert result.repeats == 3  # "guitar guitar", "bass bass", "and strings and strings"
    assert diversity.immediate_repeats("a b c a b c".split()) == 1
    assert diversity.immediate_repeats("a b a c".split()) == 0


HAND_WRITTEN = [
    # (caption, what it states)
    ("A slow melancholic piano piece in a minor key with no drums.",
     dict(families={"piano"}, drums=False, tempo_class="slow", mode="minor", mood="melancholic")),
    ("Fast energetic rock with electric guitar, bass guitar, a drum kit and male vocals.",
     dict(families={"guitar", "bass", "voice"}, drums=True, tempo_class="fast", mode=None, mood="energetic")),
    ("A bassoon over a bass drum.",
     dict(families={"reed"}, drums=True, tempo_class=None, mode=None, mood=None)),
    ("There is no percussion. Moderate tempo, C major, calm strings and a flute.",
     dict(families={"strings", "pipe"}, drums=False, tempo_class="medium", mode="major", mood="calm")),
    ("Without any vocals, a happy synth pad and organ.",
     dict(families={"synth", "organ"}, drums=None, tempo_class=None, mode=None, mood="happy")),
]  # fmt: skip


@pytest.mark.parametrize("caption,expected", HAND_WRITTEN)
def test_read_caption(caption, expected):
    assert read_caption(caption).__dict__ == expected


def test_attribute_accuracy_counts_silence_as_wrong():
    truth = [
        dict(families=["piano"], drums=False, tempo_class="slow", mode="minor", mood="melancholic"),
        dict(
            families=["guitar", "bass", "drums"],
            drums=True,
            tempo_class="fast",
            mode="major",
            mood="energetic",
        ),
    ]
    accuracy = attribute_accuracy([HAND_WRITTEN[0][0], HAND_WRITTEN[1][0]], truth)
    # Families: stated {piano}, {guitar, bass, voice}; true {piano}, {guitar, bass}: TP 3, FP 1, FN 0.
    assert accuracy.instrument_precision == pytest.approx(3 / 4)
    assert accuracy.instrument_recall == pytest.approx(1.0)
    assert accuracy.instrument_f1 == pytest.approx(6 / 7)
    assert accuracy.mode_acc == pytest.approx(1 / 2)  # the second caption names no mode
    assert accuracy.tempo_acc == accuracy.drums_acc == accuracy.mood_acc == 1.0


def test_semantic_scores_identity_and_order():
    from musiccap.metrics.semantic import semantic_scores

    same = semantic_scores(["a slow piano melody"], [["a slow piano melody"]])
    assert same.bertscore_minilm == pytest.approx(1.0, abs=1e-5) and same.sbert_sim == pytest.approx(
        1.0, abs=1e-5
    )
    near = semantic_scores(["a gentle piano tune"], [["a slow piano melody"]])
    far = semantic_scores(["heavy metal with screaming vocals"], [["a slow piano melody"]])
    assert near.bertscore_minilm > far.bertscore_minilm and near.sbert_sim > far.sbert_sim


def test_compute_metrics_keys_and_tables():
    metrics = compute_metrics(
        ["a slow piano melody", "fast drums"], [["a slow piano melody"], ["fast loud drums", "drums"]],
        train_captions=["a slow piano melody"], clap_at=[0.2, 0.4], semantic=False,
    )  # fmt: skip
    assert metrics["clap_at"] == pytest.approx(0.3) and "clap_tt" not in metrics
    assert metrics["novel_c"] == pytest.approx(0.5) and "bertscore_minilm" not in metrics
    assert not set(UNAVAILABLE) & set(metrics)
    table = markdown_tables({"ours": metrics})
    assert "| ours |" in table and "n/a" in table and "Attribute accuracy" not in table
    rows = json.loads(json_tables({"ours": metrics}))["RGMC Table 3"]["rows"]["ours"]
    assert (
        rows["SPICE"] == "unavailable" and rows["CLAP A-T"] == pytest.approx(0.3) and rows["CLAP T-T"] is None
    )


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def test_eval_cli_json(tmp_path, capsys):
    pred = write_jsonl(
        tmp_path / "p.jsonl", [{"id": 1, "caption": "a slow piano"}, {"id": 2, "caption": "drums"}]
    )
    ref = write_jsonl(tmp_path / "r.jsonl", [{"id": 1, "captions": ["a slow piano", "piano"]},
                                             {"id": 2, "caption": "loud drums"}])  # fmt: skip
    assert eval_main(["--pred", pred, "--ref", ref, "--json", "--no-semantic", "--compat", "lpmc"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["vocab"] == 4 and 0 < metrics["bleu1"] <= 1 and "novel_v" not in metrics


@pytest.mark.parametrize(
    "pred_rows,ref_rows,extra",
    [
        ([{"id": 1, "caption": "x"}], [{"id": 2, "caption": "y"}], []),  # id without reference
        ([{"id": 1}], [{"id": 1, "caption": "y"}], []),  # no caption
        ([{"id": 1, "caption": "x"}], [{"id": 1, "captions": []}], []),  # empty reference list
        ([{"id": 1, "caption": "x"}], [{"id": 1, "caption": "y"}], ["--compat", "bleurt"]),
    ],
)
def test_eval_cli_bad_input_exits_2(tmp_path, capsys, pred_rows, ref_rows, extra):
    pred = write_jsonl(tmp_path / "p.jsonl", pred_rows)
    ref = write_jsonl(tmp_path / "r.jsonl", ref_rows)
    assert eval_main(["--pred", pred, "--ref", ref, "--no-semantic", *extra]) == 2
    assert capsys.readouterr().err.strip()


def test_eval_cli_missing_and_malformed_files(tmp_path, capsys):
    assert eval_main(["--pred", str(tmp_path / "none.jsonl"), "--ref", str(tmp_path / "none.jsonl")]) == 2
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    assert eval_main(["--pred", str(tmp_path / "bad.jsonl"), "--ref", str(tmp_path / "bad.jsonl")]) == 2
    assert "not JSON" in capsys.readouterr().err
