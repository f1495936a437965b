"""docs/RESULTS.md tables: each paper's rows say which model made them and how long it trained."""

from __future__ import annotations

import json

from train.evaluate import ablation_run
from train.tables import against_random_table, curve_cell, goals_table, render, runs_table


def _write(path, document):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))


def test_runs_table_names_the_model_epochs_and_switches_of_every_row(tmp_path):
    shipped = tmp_path / "muscaps"
    _write(shipped / "training.json", {"epochs_run": 10, "train_time_s": 600.0, "git_commit": "abcdef123"})
    late = tmp_path / "runs" / "muscaps_late"
    _write(late / "training.json", {"epochs_run": 9, "train_time_s": 540.0, "git_commit": "1234567aa"})
    epochs = [
        {"epoch": 1, "validation": {"loss": 3.0, "nll": 2.0}},
        {"epoch": 2, "validation": {"loss": 2.5, "nll": 1.25}},
    ]
    (late / "train_log.jsonl").write_text("".join(json.dumps(epoch) + "\n" for epoch in epochs))
    (shipped / "train_log.jsonl").write_text(json.dumps({"epoch": 1, "validation": {"loss": 0.75}}) + "\n")
    metrics = {"cider_d": 0.3}
    results = {
        "metrics": metrics,
        "ablations": {"muscaps_late": metrics, "muscaps_greedy": metrics, "muscaps_old": metrics},
        "ablation_runs": {
            "muscaps_late": ablation_run(late, {}, {}),
            "muscaps_greedy": ablation_run(shipped, {"num_beams": 1}, {}),
        },
    }
    _write(shipped / "results.json", results)
    rows = {
        line.split(" | ")[0].strip("| "): line
        for line in runs_table(tmp_path, "muscaps", results).splitlines()
    }
    assert "| 10 | 10.0 | 0.750 | 0.750 | defaults | abcdef1 |" in rows["muscaps (shipped)"]
    # a run's last epoch, not its first; the caption NLL beside a loss with other terms; the NLL by epoch
    assert (
        "| muscaps_late | 9 | 9.0 | 2.500 (NLL 1.250) | 2.000 → 1.250: still falling (37.5% in the last epoch) "
        "| defaults | 1234567 |"
    ) in rows["muscaps_late"]
    # an evaluation-time variant of the shipped model carries the shipped model's training
    assert "| muscaps | 10 | 10.0 | 0.750 | 0.750 | num_beams=1 | abcdef1 |" in rows["muscaps_greedy"]
    assert rows["muscaps_old"].endswith("| filed before runs were recorded |")
    assert "muscaps_late" in render(tmp_path)


def test_against_random_lists_every_column_a_captioner_does_not_beat_strictly():
    main = {
        "random": {"cider_d": 0.16, "vocab": 462, "attr_mode_acc": 0.34, "meteor": 0.16},
        "csa": {"cider_d": 0.38, "vocab": 305, "attr_mode_acc": 0.34, "meteor": 0.19},
    }
    row = against_random_table(main).splitlines()[-1]
    assert row.startswith("| csa | 2 of 3 |")  # Vocab is structural: not compared
    assert "Vocab" not in row and "Mode (34.0 vs 34.0)" in row  # a tie does not beat
    assert "CIDEr-D" not in row and "METEOR" not in row


def test_a_row_this_cpu_cannot_train_is_shown_with_its_reason(tmp_path):
    from train.tables import NOT_RUN

    (tmp_path / "muscaps").mkdir()
    (tmp_path / "muscaps" / "results.json").write_text(json.dumps({"metrics": {"cider_d": 0.3}, "n": 3}))
    text = render(tmp_path)
    (note,) = NOT_RUN["muscaps"].values()
    assert note.startswith("not run: needs a GPU") and note in text
    assert "| muscaps_scratch | – | – | – |" in text


def test_goals_table_marks_each_attribute_gap_and_shows_the_levers_beside_the_paper_recipe():
    def block(caption: float) -> dict:
        scores = {"floor": 0.4, "ceiling": 0.9, "caption": caption}
        attributes = ("instrument_f1", "tempo", "mode", "drums", "mood")
        swap = {"swap_changed": {"overall": 0.7}}
        return {"attributes": dict.fromkeys(attributes, scores), "audio_sensitivity": swap}

    metrics = {"cider_d": 0.30, "meteor": 0.2}
    results = {
        "random": {"metrics": {"cider_d": 0.05, "meteor": 0.1}},
        "nearest": {"metrics": {"cider_d": 0.32, "meteor": 0.2}, "listening": block(0.8)},
        "csa": {
            "metrics": metrics,
            "listening": block(0.6),  # closes 0.4 of the gap
            "ablations": {"csa_analysis": {"cider_d": 0.40, "meteor": 0.3}, "csa_m1": metrics},
            "ablation_listening": {"csa_analysis": block(0.85), "csa_m1": block(0.5)},
        },
    }
    rows = {line.split(" | ")[0].strip("| "): line for line in goals_table(results, "listening").splitlines()}
    assert {name for name in rows if not name.startswith(("model", "---"))} == {
        "csa",
        "csa_analysis",
    }  # baselines and paper ablations left out
    assert rows["csa"].count("0.40 ✗") == 4 and "30.0 vs 32.0 ✗" in rows["csa"]
    assert rows["csa_analysis"].count("0.90 ✓") == 4 and "40.0 vs 32.0 ✓" in rows["csa_analysis"]
    assert "| 0.70 | 2 of 2 |" in rows["csa_analysis"]


def test_the_validation_curve_says_where_it_flattens():
    assert curve_cell([1.0, 0.8, 0.795, 0.796]) == "1.000 → 0.800 → 0.795 → 0.796: flat from epoch 2"
    assert curve_cell([1.0, 0.9, 0.89, 0.85]).endswith("still falling (4.5% in the last epoch)")
    assert curve_cell([0.7]) == "0.700" and curve_cell(None) == "–"


def test_the_listening_section_names_rows_whose_mood_an_older_reader_read():
    """Rows evaluated before the reader stopped taking "bright"/"dark" about the sound for moods carry no
    reader version: the table says which, so a mood column read two ways is never compared silently."""
    from musiccap.metrics.attributes import READER_VERSION
    from train.tables import listening_section

    scores = {"floor": 0.4, "ceiling": 0.9, "caption": 0.6}
    attributes = dict.fromkeys(("instrument_f1", "tempo", "mode", "drums", "mood"), scores)
    current = {"attributes": attributes, "attribute_reader": READER_VERSION}
    results = {
        "csa": {"listening": current, "ablation_listening": {"csa_m1": {"attributes": attributes}}},
        "alcap": {"listening": current},
    }
    section = "\n".join(listening_section(results))
    (note,) = [line for line in section.splitlines() if line.startswith("Mood of")]
    assert "csa: csa_m1" in note and "alcap" not in note
    results["csa"]["ablation_listening"]["csa_m1"]["attribute_reader"] = READER_VERSION
    assert "Mood of" not in "\n".join(listening_section(results))


def test_a_row_trained_on_a_subset_elsewhere_says_where_and_on_how_many_clips(tmp_path):
    scratch = tmp_path / "runs" / "muscaps_scratch"
    training = {"epochs_run": 36, "train_time_s": 330.0, "git_commit": "168977c", "n_train": 900}
    _write(scratch / "training.json", {**training, "device": "NVIDIA H200"})
    cpu_row = tmp_path / "runs" / "muscaps_late"
    _write(cpu_row / "training.json", {**training, "n_train": 10000})
    metrics = {"cider_d": 0.2}
    results = {
        "metrics": metrics,
        "ablations": {"muscaps_scratch": metrics, "muscaps_late": metrics},
        "ablation_runs": {
            "muscaps_scratch": ablation_run(scratch, {}, {}),
            "muscaps_late": ablation_run(cpu_row, {}, {}),
        },
    }
    rows = {
        line.split(" | ")[0].strip("| "): line
        for line in runs_table(tmp_path, "muscaps", results).splitlines()
    }
    assert rows["muscaps_scratch"].endswith(
        "| trained on NVIDIA H200 on 900 training clips (python -m train.muscaps_scratch) |"
    )
    assert rows["muscaps_late"].endswith("| 168977c |  |")  # a row of the corpus' own machine has no note
    # the reason a row was not run is shown only while it has no numbers
    _write(tmp_path / "muscaps" / "results.json", {**results, "n": 3})
    assert "| muscaps_scratch |" in render(tmp_path) and "not run: needs a GPU" not in render(tmp_path)
