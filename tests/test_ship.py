"""``python -m train.ship``: the README's rule chooses what ships, a winning variant is served from the
paper checkpoint's folder (its CLAP still found), the paper recipe stays a row, and a rerun changes nothing.

Tiny untrained models throughout: MusCaps on a corpus of tones (the real validation sweep), Kim & Park on a
tiny CLAP (its config names the CLAP by a path relative to itself) with sweep records made here, so that
which candidate wins is set by the test."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from musiccap.models.base import load_captioner
from musiccap.models.csa import CsaCaptioner
from musiccap.training import BuildContext
from musiccap.ui.about import which_ships
from tests.test_listening import tiny_tone_muscaps, write_tone_corpus
from tests.toy import save_tiny_clap, toy_item
from train import evaluate, ship, tables
from train.diagnostics import choose_shipped, decoding_sweep
from train.model_card import write_model_card

FLOOR = {"instrument_f1": 0.35, "tempo": 0.40, "mode": 0.50, "drums": 0.55, "mood": 0.3}
FRAME_DIM, POOLED_DIM = 8 + 12 + 24 + 24, 6  # the embedded layout in miniature (tests/test_csa.py)


def metrics(cider_d: float) -> dict:
    return {"cider_d": cider_d, "bleu4": cider_d / 2, "attr_tempo_acc": 0.5}


def listening(caption: float) -> dict:
    """A listening block as train.evaluate files it (every attribute scoring ``caption``)."""
    scores = {"floor": 0.4, "ceiling": 0.9, "caption": caption}
    attributes = ("instrument_f1", "tempo", "mode", "drums", "mood")
    return {"attributes": dict.fromkeys(attributes, scores)}


def file_rows(checkpoint: Path, variants: list[str]) -> dict:
    """results.json as the pipeline leaves it before shipping: the paper's evaluation on top, each
    variant's row and a row evaluated on the paper's own model (another decoding) filed beside it."""
    arch = checkpoint.name
    rows = {name: metrics(0.2 + 0.01 * i) for i, name in enumerate(variants)} | {
        f"{arch}_beam5": metrics(0.1)
    }
    runs = {name: {"checkpoint": name, "decoding": {}, "set": {}, "epochs_run": 4} for name in variants}
    runs[f"{arch}_beam5"] = {"checkpoint": arch, "decoding": {"num_beams": 5}, "set": {}, "epochs_run": 4}
    document = {
        "split": "test",
        "n": 6,
        "metrics": metrics(0.3),
        "listening": listening(0.5),
        "samples": [{"id": "x", "prediction": "the paper's caption"}],
        "checkpoint": arch,
        "ablations": rows,
        "ablation_runs": runs,
        "ablation_listening": {name: listening(0.8) for name in variants},
    }
    (checkpoint / "results.json").write_text(json.dumps(document, indent=2) + "\n")
    return document


def snapshot(*folders: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under the folders with its bytes and modification time."""
    return {
        str(path): (path.read_bytes(), path.stat().st_mtime_ns)
        for folder in folders
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_captioner(folder).state_dict()


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---- Kim & Park, sweeps recorded by the test ------------------------------------------------------------


@pytest.fixture
def csa_folders(tmp_path):
    """checkpoints/{clap,csa} and runs/csa_analysis as the pipeline leaves them: the variant trained in the
    runs folder names the CLAP as ``../checkpoints/clap``, the paper checkpoint as ``clap``."""
    checkpoints, runs = tmp_path / "checkpoints", tmp_path / "runs"
    clap = save_tiny_clap(checkpoints / "clap", FRAME_DIM, POOLED_DIM)
    rng = np.random.default_rng(0)
    items = [toy_item(i, rng, frame_dim=FRAME_DIM, pooled_dim=POOLED_DIM) for i in range(8)]
    tiny = {"n_layers": 1, "n_heads": 2, "width": 16, "ff_dim": 32, "dropout": 0.0, "semantic_steps": 2}
    context = BuildContext(clap_path=str(clap), feature_dims=(FRAME_DIM, POOLED_DIM, 200), corpus_dir="")
    for width, folder in ((16, checkpoints / "csa"), (8, runs / "csa_analysis")):  # two different models
        CsaCaptioner.build(tiny | {"width": width}, items, context).save_pretrained(folder)
    file_rows(checkpoints / "csa", ["csa_analysis"])
    return SimpleNamespace(checkpoints=checkpoints, runs=runs, corpus=tmp_path / "corpus")


BEAM5 = {"num_beams": 5}


def recorded_sweeps(margins: dict[str, float], cider: dict[str, float]):
    """A stand-in for the validation sweep: each candidate's tempo score sits ``margins[name]`` above the
    floor, with CIDEr-D ``cider[name]``, the name being its model's folder (the paper's kept copy counts
    as the paper's), ``_beam5`` added under BEAM5; it counts its calls."""
    calls = []

    def sweep(checkpoint, corpus, settings, *, split, limit, clap_path=None):
        (overrides,) = settings
        name = Path(checkpoint).name.removesuffix("_paper") + ("_beam5" if overrides == BEAM5 else "")
        calls.append(name)
        setting = {"overrides": overrides, "listening": {**FLOOR, "tempo": FLOOR["tempo"] + margins[name]}}
        return {"split": split, "n": 6, "floor": FLOOR, "settings": [setting | {"cider_d": cider[name]}]}

    return sweep, calls


def ship_csa(folders, *decoding: str) -> int:
    argv = ["--arch", "csa", "--checkpoints", str(folders.checkpoints), "--runs", str(folders.runs)]
    argv += ["--corpus", str(folders.corpus), "--variant", f"csa_analysis={folders.runs / 'csa_analysis'}"]
    return ship.main(argv + (["--decoding", *decoding] if decoding else []))


def test_a_winning_variant_is_served_and_the_paper_recipe_stays_a_row(csa_folders, monkeypatch):
    checkpoints, runs = csa_folders.checkpoints, csa_folders.runs
    served, variant = checkpoints / "csa", runs / "csa_analysis"
    paper_weights, variant_weights = weights(served), weights(variant)
    assert not same_weights(paper_weights, variant_weights)
    paper_results = json.loads((served / "results.json").read_text())
    sweep, calls = recorded_sweeps({"csa": 0.05, "csa_analysis": 0.20}, {"csa": 0.30, "csa_analysis": 0.29})
    monkeypatch.setattr(decoding_sweep, "sweep", sweep)

    assert ship_csa(csa_folders) == 0
    assert sorted(calls) == ["csa", "csa_analysis"]

    # the app loads the variant from the paper's folder, and it still reads the pipeline's CLAP
    loaded = load_captioner(served)
    assert same_weights(loaded.state_dict(), variant_weights)
    assert Path(loaded.config.clap_path) == (checkpoints / "clap").resolve()
    assert json.loads((served / "config.json").read_text())["config"]["clap_path"] == "clap"
    # the paper recipe's model is kept, and finds the same CLAP from where it is kept
    kept = load_captioner(runs / "csa_paper")
    assert same_weights(kept.state_dict(), paper_weights)
    assert Path(kept.config.clap_path) == (checkpoints / "clap").resolve()

    results = json.loads((served / "results.json").read_text())
    assert results["shipped_row"] == "csa_analysis"
    assert results["metrics"] == results["ablations"]["csa_analysis"]  # the top level is what is served
    assert results["listening"] == paper_results["ablation_listening"]["csa_analysis"]
    assert "samples" not in results  # the paper model's captions are not the served model's
    assert results["ablations"]["csa_paper"] == paper_results["metrics"]
    assert results["ablation_listening"]["csa_paper"] == paper_results["listening"]
    assert results["ablation_runs"]["csa_beam5"]["checkpoint"] == "csa_paper"  # evaluated on the paper model
    assert (
        json.loads((runs / "csa_paper" / "results.json").read_text())["metrics"] == paper_results["metrics"]
    )

    shipped = json.loads((served / "shipped.json").read_text())
    assert shipped["ships"] == "csa_analysis" and shipped["paper_row"] == "csa_paper"
    assert shipped["candidates"]["csa_analysis"]["margins"]["tempo"] == pytest.approx(0.20)
    assert shipped["candidates"]["csa"]["cider_d"] == pytest.approx(0.30)
    assert "mean margin +0.050" in shipped["why"] and "installing" not in shipped
    card = (served / "README.md").read_text()
    assert (
        "**Which ships and why**: the variant `csa_analysis`" in card and "| csa_analysis (ships) |" in card
    )
    # the About tab says it too
    assert which_ships(checkpoints, "csa").startswith(
        "Serves the variant `csa_analysis` in place of the paper's"
    )

    # the table keeps both rows, each labelled
    text = tables.render(checkpoints)
    assert "| csa_paper (the paper's recipe) |" in text and "| csa_analysis (shipped) |" in text
    assert "| csa (ships csa_analysis) |" in text and "| csa (shipped) |" not in text
    assert "**Ships**: the variant `csa_analysis`" in text

    # a paper ablation trained as a run of its own may finish after the install: its row joins the table
    # and the served top level stays the variant's (the pipeline ships without waiting for such rows)
    late_run = {"checkpoint": "csa_m1", "decoding": {}, "set": {}, "epochs_run": 4}
    evaluate.file_row(served, "csa_m1", {"metrics": metrics(0.15), "listening": listening(0.6)}, late_run)
    write_model_card(served)  # as train.evaluate does after filing
    results_with_row = json.loads((served / "results.json").read_text())
    assert results_with_row["ablations"]["csa_m1"] == metrics(0.15)
    assert results_with_row["ablation_listening"]["csa_m1"] == listening(0.6)
    assert {k: v for k, v in results_with_row.items() if k not in ship.ROW_KEYS} == {
        k: v for k, v in results.items() if k not in ship.ROW_KEYS
    }
    assert "| csa_m1 |" in tables.render(checkpoints)
    paper_results["ablations"]["csa_m1"] = metrics(0.15)  # what the paper's model is served with, below
    paper_results["ablation_runs"]["csa_m1"] = late_run
    paper_results["ablation_listening"]["csa_m1"] = listening(0.6)

    # a second run reuses the sweeps, finds the winner served and changes nothing
    before = snapshot(checkpoints, runs)
    assert ship_csa(csa_folders) == 0
    assert sorted(calls) == ["csa", "csa_analysis"]
    assert snapshot(checkpoints, runs) == before

    # when the paper row wins after all (here: the variant's recorded CIDEr-D falls), its model comes back
    sweeps_file = runs / ship.SWEEPS_FILE
    records = json.loads(sweeps_file.read_text())
    records["csa_analysis"]["settings"][0]["cider_d"] = 0.1
    sweeps_file.write_text(json.dumps(records))
    assert ship_csa(csa_folders) == 0
    assert sorted(calls) == ["csa", "csa_analysis"]  # the paper's record is reused from its kept copy
    assert same_weights(weights(served), paper_weights)
    restored = json.loads((served / "results.json").read_text())
    assert restored == {**paper_results, "ablation_runs": restored["ablation_runs"]}
    assert restored["ablation_runs"] == paper_results["ablation_runs"]
    assert json.loads((served / "shipped.json").read_text())["ships"] == "csa"


def test_a_model_under_another_decoding_may_ship_and_is_served_with_it(csa_folders, monkeypatch):
    """``--decoding beam5 num_beams=5``: each model is a candidate under beam 5 too. The variant decoded so
    wins: the folder serves its weights with beam 5, its row is evaluated on test and becomes the top
    level, the variant's own row stays; when its own decoding wins later, only the decoding changes back."""
    checkpoints, runs = csa_folders.checkpoints, csa_folders.runs
    served, variant = checkpoints / "csa", runs / "csa_analysis"
    margins = {"csa": 0.05, "csa_analysis": 0.20, "csa_beam5": 0.10, "csa_analysis_beam5": 0.30}
    sweep, calls = recorded_sweeps(margins, dict.fromkeys(margins, 0.3))
    monkeypatch.setattr(decoding_sweep, "sweep", sweep)
    evaluations = []

    def evaluate_captioner(checkpoint, corpus, split, clap_path, decoding_overrides, *args, **kwargs):
        evaluations.append((Path(checkpoint).name, decoding_overrides))
        return {"split": split, "n": 6, "metrics": metrics(0.33), "listening": listening(0.9)}

    monkeypatch.setattr(evaluate, "evaluate_captioner", evaluate_captioner)
    own_decoding = load_captioner(variant).default_decoding

    assert ship_csa(csa_folders, "beam5", "num_beams=5") == 0
    assert sorted(calls) == sorted(margins)
    loaded = load_captioner(served)
    assert same_weights(loaded.state_dict(), weights(variant))
    assert loaded.default_decoding == own_decoding.replace(num_beams=5)
    assert ship.model_identity(served) == ship.model_identity(variant)  # the decoding is not the model
    assert evaluations == [("csa_analysis", BEAM5)]
    results = json.loads((served / "results.json").read_text())
    assert results["shipped_row"] == "csa_analysis_beam5" and results["metrics"] == metrics(0.33)
    assert results["decoding"]["num_beams"] == 5 and results["listening"] == listening(0.9)
    assert results["ablation_runs"]["csa_analysis_beam5"]["checkpoint"] == "csa_analysis"
    assert results["ablation_runs"]["csa_analysis_beam5"]["decoding"] == BEAM5
    assert results["ablations"]["csa_analysis"] == metrics(0.2)  # its own decoding's row stays
    shipped = json.loads((served / "shipped.json").read_text())
    assert shipped["ships"] == "csa_analysis_beam5" and len(shipped["candidates"]) == 4
    assert shipped["candidates"]["csa_analysis_beam5"]["decoded_with"] == BEAM5
    assert shipped["candidates"]["csa_beam5"]["checkpoint"] == str((runs / "csa_paper").resolve())
    assert "decoded with `num_beams=5`" in (served / "README.md").read_text()
    assert which_ships(checkpoints, "csa").startswith(
        "Serves the variant `csa_analysis_beam5`, decoded with `num_beams=5`, in place of the paper's"
    )
    records = json.loads((runs / ship.SWEEPS_FILE).read_text())
    assert records["csa_analysis_beam5"]["decoding"] == BEAM5 and records["csa_analysis"]["decoding"] == {}

    # a rerun reuses every sweep and the filed row
    before = snapshot(checkpoints, runs)
    assert ship_csa(csa_folders, "beam5", "num_beams=5") == 0
    assert len(calls) == 4 and len(evaluations) == 1
    assert snapshot(checkpoints, runs) == before

    # the served folder evaluated again keeps naming its row
    evaluate.evaluate_checkpoint(served, str(csa_folders.corpus))
    assert json.loads((served / "results.json").read_text())["shipped_row"] == "csa_analysis_beam5"
    assert evaluations[-1] == ("csa", {})  # the folder's own decoding: beam 5

    # the variant under its own decoding wins after all: the weights stay, the decoding goes back
    records["csa_analysis_beam5"]["settings"][0]["cider_d"] = 0.1
    (runs / ship.SWEEPS_FILE).write_text(json.dumps(records))
    assert ship_csa(csa_folders, "beam5", "num_beams=5") == 0
    assert load_captioner(served).default_decoding == own_decoding and len(evaluations) == 2
    results = json.loads((served / "results.json").read_text())
    assert results["shipped_row"] == "csa_analysis" and results["metrics"] == metrics(0.2)


@pytest.mark.parametrize(
    "decoding, refusal",
    [(["beam5"], "KEY=VALUE"), (["beam5", "beams=5"], "not DecodingConfig fields"), (["b=5"], "label")],
)
def test_a_malformed_decoding_is_refused_before_any_sweep(csa_folders, capsys, decoding, refusal):
    with pytest.raises(SystemExit):
        ship_csa(csa_folders, *decoding)
    assert refusal in capsys.readouterr().err
    assert not (csa_folders.runs / ship.SWEEPS_FILE).exists()


def test_evaluating_the_served_folder_again_refreshes_the_served_variants_row(csa_folders, monkeypatch):
    """``python -m train.evaluate <checkpoints>/<arch>`` after a variant shipped (e.g. to read its captions
    with a new attribute reader): the top level still names the served variant and its row holds the same
    new numbers. Once a paper run is trained there again, the folder no longer names the variant."""
    sweep, _ = recorded_sweeps({"csa": 0.05, "csa_analysis": 0.20}, {"csa": 0.30, "csa_analysis": 0.29})
    monkeypatch.setattr(decoding_sweep, "sweep", sweep)
    assert ship_csa(csa_folders) == 0
    served = csa_folders.checkpoints / "csa"
    fresh = {"split": "test", "n": 6, "metrics": metrics(0.42), "listening": listening(0.7)}
    monkeypatch.setattr(evaluate, "evaluate_captioner", lambda *args, **kwargs: dict(fresh))

    evaluate.evaluate_checkpoint(served, str(csa_folders.corpus))
    document = json.loads((served / "results.json").read_text())
    assert document["shipped_row"] == "csa_analysis" and document["metrics"] == metrics(0.42)
    assert document["ablations"]["csa_analysis"] == metrics(0.42)
    assert document["ablation_listening"]["csa_analysis"] == listening(0.7)
    assert {"csa_paper", "csa_beam5"} <= set(document["ablations"])

    retrained = load_captioner(served)
    with torch.no_grad():
        next(retrained.parameters()).add_(1.0)
    retrained.save_pretrained(served)
    evaluate.evaluate_checkpoint(served, str(csa_folders.corpus))
    document = json.loads((served / "results.json").read_text())
    assert "shipped_row" not in document and document["ablations"]["csa_analysis"] == metrics(0.42)


def test_a_row_filed_while_the_candidates_are_swept_is_kept(csa_folders, monkeypatch):
    """The pipeline ships without waiting for the rows trained as runs of their own: one filed by an
    evaluation running beside the ship step, between its reading results.json and its rewriting it."""
    served = csa_folders.checkpoints / "csa"
    sweep, calls = recorded_sweeps({"csa": 0.05, "csa_analysis": 0.20}, {"csa": 0.30, "csa_analysis": 0.29})

    def sweep_beside_an_evaluation(checkpoint, *args, **kwargs):
        if not calls:
            run = {"checkpoint": "csa_m2", "decoding": {}, "set": {}, "epochs_run": 4}
            evaluate.file_row(served, "csa_m2", {"metrics": metrics(0.12), "listening": listening(0.7)}, run)
        return sweep(checkpoint, *args, **kwargs)

    monkeypatch.setattr(decoding_sweep, "sweep", sweep_beside_an_evaluation)
    assert ship_csa(csa_folders) == 0
    results = json.loads((served / "results.json").read_text())
    assert results["shipped_row"] == "csa_analysis"
    assert results["ablations"]["csa_m2"] == metrics(0.12)
    assert results["ablation_listening"]["csa_m2"] == listening(0.7)
    assert results["ablation_runs"]["csa_m2"]["checkpoint"] == "csa_m2"


def test_an_install_cut_off_midway_is_finished_by_the_next_run(csa_folders, monkeypatch):
    served = csa_folders.checkpoints / "csa"
    paper_weights = weights(served)
    sweep, _ = recorded_sweeps({"csa": 0.0, "csa_analysis": 0.2}, {"csa": 0.3, "csa_analysis": 0.3})
    monkeypatch.setattr(decoding_sweep, "sweep", sweep)
    copy_model = ship.copy_model

    def cut_off(source, destination):
        if destination == served:
            (destination / "model.safetensors").write_bytes(b"half a file")
            raise KeyboardInterrupt
        copy_model(source, destination)

    monkeypatch.setattr(ship, "copy_model", cut_off)
    with pytest.raises(KeyboardInterrupt):
        ship_csa(csa_folders)
    monkeypatch.setattr(ship, "copy_model", copy_model)
    assert ship_csa(csa_folders) == 0
    assert same_weights(weights(served), weights(csa_folders.runs / "csa_analysis"))
    assert same_weights(weights(csa_folders.runs / "csa_paper"), paper_weights)


# ---- MusCaps on tones, with the real validation sweep ------------------------------------------------------


@pytest.fixture
def muscaps_folders(tmp_path, monkeypatch):
    (tmp_path / "corpus").mkdir()
    corpus = write_tone_corpus(tmp_path / "corpus", {"train": 16, "validation": 6})
    checkpoints, runs = tmp_path / "checkpoints", tmp_path / "runs"
    for hidden, folder in ((16, checkpoints / "muscaps"), (12, runs / "muscaps_attribute_words")):
        model = tiny_tone_muscaps(corpus, monkeypatch, tmp_path / "cache", hidden_dim=hidden)
        model.save_pretrained(folder)
    file_rows(checkpoints / "muscaps", ["muscaps_attribute_words"])
    return SimpleNamespace(checkpoints=checkpoints, runs=runs, corpus=corpus)


def ship_muscaps(folders) -> int:
    argv = ["--arch", "muscaps", "--checkpoints", str(folders.checkpoints), "--runs", str(folders.runs)]
    argv += ["--corpus", str(folders.corpus), "--limit", "6"]
    argv += ["--variant", f"muscaps_attribute_words={folders.runs / 'muscaps_attribute_words'}"]
    return ship.main(argv)


def test_the_validation_sweeps_are_recorded_once_and_the_rule_decides(muscaps_folders, monkeypatch):
    sweep, calls = decoding_sweep.sweep, []
    monkeypatch.setattr(decoding_sweep, "sweep", lambda *a, **k: calls.append(a[0]) or sweep(*a, **k))
    assert ship_muscaps(muscaps_folders) == 0
    assert len(calls) == 2
    records = json.loads((muscaps_folders.runs / ship.SWEEPS_FILE).read_text())
    assert {records[name]["n"] for name in ("muscaps", "muscaps_attribute_words")} == {6}
    paper, _ = choose_shipped.candidate(records, "muscaps")
    variant, _ = choose_shipped.candidate(records, "muscaps_attribute_words")
    winner, _ = choose_shipped.choose(paper, [variant])
    served = muscaps_folders.checkpoints / "muscaps"
    assert json.loads((served / "shipped.json").read_text())["ships"] == winner.name
    winner_folder = served if winner is paper else muscaps_folders.runs / "muscaps_attribute_words"
    if winner is paper:
        assert not (muscaps_folders.runs / "muscaps_paper").exists()
    else:
        assert same_weights(weights(served), weights(winner_folder))

    before = snapshot(muscaps_folders.checkpoints, muscaps_folders.runs)
    assert ship_muscaps(muscaps_folders) == 0
    assert len(calls) == 2  # both records reused
    assert snapshot(muscaps_folders.checkpoints, muscaps_folders.runs) == before


def test_the_real_sweep_weighs_each_model_under_each_decoding(muscaps_folders, monkeypatch):
    def evaluate_captioner(checkpoint, corpus, split, *args, **kwargs):  # the tone corpus has no test split
        return {"split": split, "n": 6, "metrics": metrics(0.3), "listening": listening(0.6)}

    monkeypatch.setattr(evaluate, "evaluate_captioner", evaluate_captioner)
    argv = ["--arch", "muscaps", "--checkpoints", str(muscaps_folders.checkpoints)]
    argv += ["--runs", str(muscaps_folders.runs), "--corpus", str(muscaps_folders.corpus), "--limit", "6"]
    argv += ["--variant", f"muscaps_attribute_words={muscaps_folders.runs / 'muscaps_attribute_words'}"]
    assert ship.main(argv + ["--decoding", "beam2", "num_beams=2"]) == 0
    records = json.loads((muscaps_folders.runs / ship.SWEEPS_FILE).read_text())
    for name in ("muscaps_beam2", "muscaps_attribute_words_beam2"):
        assert records[name]["decoding"] == {"num_beams": 2}
        assert records[name]["settings"][0]["overrides"] == {"num_beams": 2}
    assert records["muscaps"]["decoding"] == {} and records["muscaps"]["settings"][0]["overrides"] == {}
    served = muscaps_folders.checkpoints / "muscaps"
    ships = json.loads((served / "shipped.json").read_text())["ships"]
    assert (load_captioner(served).default_decoding.num_beams == 2) == ships.endswith("_beam2")


def test_when_the_paper_row_wins_only_shipped_json_and_the_card_are_written(muscaps_folders, monkeypatch):
    sweep, _ = recorded_sweeps(
        {"muscaps": 0.10, "muscaps_attribute_words": 0.30}, {"muscaps": 0.30, "muscaps_attribute_words": 0.20}
    )
    monkeypatch.setattr(decoding_sweep, "sweep", sweep)
    before = snapshot(muscaps_folders.checkpoints, muscaps_folders.runs)
    assert ship_muscaps(muscaps_folders) == 0
    after = snapshot(muscaps_folders.checkpoints, muscaps_folders.runs)
    served = muscaps_folders.checkpoints / "muscaps"
    changed = {Path(path).relative_to(muscaps_folders.checkpoints.parent).as_posix() for path in after}
    changed -= {Path(p).relative_to(muscaps_folders.checkpoints.parent).as_posix() for p in before}
    assert changed == {
        "checkpoints/muscaps/shipped.json",
        "checkpoints/muscaps/README.md",
        "runs/ship_sweeps.json",
    }
    assert all(after[path] == state for path, state in before.items())
    shipped = json.loads((served / "shipped.json").read_text())
    assert (
        shipped["ships"] == "muscaps"
        and not shipped["candidates"]["muscaps_attribute_words"]["cider_d_allowed"]
    )
    assert "**Which ships and why**: the paper's recipe" in (served / "README.md").read_text()
    text = tables.render(muscaps_folders.checkpoints)
    assert "| muscaps (shipped) |" in text and "**Ships**: the paper's recipe" in text


def test_a_variant_without_its_row_is_refused(muscaps_folders):
    document = json.loads((muscaps_folders.checkpoints / "muscaps" / "results.json").read_text())
    del document["ablations"]["muscaps_attribute_words"]
    (muscaps_folders.checkpoints / "muscaps" / "results.json").write_text(json.dumps(document))
    with pytest.raises(SystemExit, match="no row"):
        ship_muscaps(muscaps_folders)
