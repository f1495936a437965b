"""train.pipeline outlives a session: finished commands are skipped, an interrupted training resumes."""

from __future__ import annotations

import json
import shutil
import sys
import threading
import time
from pathlib import Path

import pytest

from train import pipeline
from train.pipeline import PipelineState, Step, resume_command


def _counting(path) -> list[str]:
    """A command that appends one line to ``path`` each time it runs."""
    return [sys.executable, "-c", f"open({str(path)!r}, 'a').write('ran\\n')"]


def _failing_until(flag) -> list[str]:
    """A command that fails until ``flag`` exists: a step cut off in the middle."""
    return [sys.executable, "-c", f"import os, sys; sys.exit(0 if os.path.exists({str(flag)!r}) else 3)"]


def test_a_stopped_pipeline_resumes_where_it_stopped(tmp_path, monkeypatch):
    first, second, later = tmp_path / "first", tmp_path / "second", tmp_path / "later"
    flag = tmp_path / "flag"
    checked = tmp_path / "checked"
    plan = [
        Step("check", [_counting(checked)], every_start=True),  # its work may be gone: run on every start
        Step("a", [_counting(first), _failing_until(flag), _counting(second)], after=["check"]),
        Step("b", [_counting(later)], after=["a"]),
    ]
    monkeypatch.setattr(pipeline, "steps", lambda *args, **kwargs: plan)
    runs = tmp_path / "runs"

    assert pipeline.main(["--runs", str(runs), "--jobs", "1"]) == 1  # stops at the failing command
    assert first.read_text() == "ran\n" and not second.exists() and not later.exists()

    flag.touch()
    assert pipeline.main(["--runs", str(runs), "--jobs", "1"]) == 0
    assert first.read_text() == "ran\n"  # finished before the stop: not run again
    assert second.read_text() == "ran\n" and later.read_text() == "ran\n"

    state = json.loads((runs / "pipeline_state.json").read_text())["finished"]
    assert len(state) == 5 and all(entry["seconds"] >= 0 for entry in state.values())

    assert pipeline.main(["--runs", str(runs), "--jobs", "1"]) == 0  # everything done: nothing runs
    assert first.read_text() == second.read_text() == later.read_text() == "ran\n"
    assert checked.read_text() == "ran\n" * 3  # but the check, on each of the three starts

    assert pipeline.main(["--runs", str(runs), "--jobs", "1", "--redo", "b"]) == 0
    assert later.read_text() == "ran\nran\n" and first.read_text() == "ran\n"


def _writing(out, count) -> list[str]:
    """A command that makes the folder ``out`` (its ``--out``) and appends one line to ``count``."""
    code = (
        f"import os, sys; os.makedirs(sys.argv[2], exist_ok=True); open({str(count)!r}, 'a').write('ran\\n')"
    )
    return [sys.executable, "-c", code, "--out", str(out)]


def test_a_pipeline_resumed_on_a_fresh_machine_redoes_what_it_lost_and_still_needs(tmp_path, monkeypatch):
    """The state kept (``--state``, e.g. committed beside the checkpoints) but the corpus and the runs
    folder gone: a finished command whose output folder is gone runs again when a command still to run
    reads it, and what read its old output runs again after it; an ablation run whose row is filed is not
    trained again."""
    corpus, runs, kept = tmp_path / "corpus", tmp_path / "runs", tmp_path / "kept"
    count = {
        name: tmp_path / f"{name}.count" for name in ("build", "run_a", "row_a", "run_b", "row_b", "ship")
    }
    flag = tmp_path / "flag"
    ship = [sys.executable, "-c", f"import os, sys; sys.exit(0 if os.path.exists({str(flag)!r}) else 3)"]
    plan = [
        Step("build", [_writing(corpus, count["build"])]),
        Step("run-a", [_writing(runs / "a", count["run_a"])]),
        Step("row-a", [[*_counting(count["row_a"]), str(runs / "a")]], after=["run-a"]),
        Step("run-b", [_writing(runs / "b", count["run_b"])]),
        Step("row-b", [[*_counting(count["row_b"]), str(runs / "b")]], after=["run-b"]),
        Step(
            "ship",
            [[*ship, "--variant", f"b={runs / 'b'}", "--corpus", str(corpus)], _counting(count["ship"])],
            after=["build", "run-b", "row-b"],
        ),
    ]
    monkeypatch.setattr(pipeline, "steps", lambda *args, **kwargs: plan)
    arguments = ["--runs", str(runs), "--state", str(kept / "state.json"), "--jobs", "1"]

    assert pipeline.main(arguments) == 1  # everything but the ship
    time.sleep(1.1)  # the state records whole seconds: the rerun of run-b must finish after row-b did
    for path in (corpus, runs):  # a fresh machine: only the state was kept
        shutil.rmtree(path)
    flag.touch()
    assert pipeline.main(arguments) == 0
    ran = {name: len(path.read_text().splitlines()) for name, path in count.items()}
    assert ran == {"build": 2, "run_a": 1, "row_a": 1, "run_b": 2, "row_b": 2, "ship": 1}
    assert corpus.is_dir() and (runs / "b").is_dir() and not (runs / "a").exists()
    assert (runs / pipeline.LOCKS_DIR).is_dir() and not (kept / pipeline.LOCKS_DIR).exists()

    assert pipeline.main(arguments) == 0  # nothing is lost any more: nothing runs
    assert len(count["run_b"].read_text().splitlines()) == 2


def test_the_analyses_in_the_corpus_folder_are_made_again_with_the_corpus():
    plan = {step.name: step for step in pipeline.steps("C", "full", "runs")}
    assert "corpus" in plan["analysis-vectors"].after


def test_a_resumed_training_records_the_time_of_the_attempts_before_it(tmp_path):
    """The step time of a training resumed after a stop counts the epochs trained before the stop
    (training.json's train_time_before_resume_s), or the whole training when only its evaluation was
    cut off; a fresh run or another command records its own time."""
    out = tmp_path / "run"
    command = [sys.executable, "-m", "train", "muscaps", "--out", str(out)]
    resumed = command + ["--resume"]
    out.mkdir()
    (out / "training.json").write_text(
        json.dumps({"wall_time_s": 4300.0, "train_time_before_resume_s": 3700.0})
    )
    written = (out / "training.json").stat().st_mtime
    assert (
        pipeline.earlier_attempts_s(command, resumed, started=written - 5) == 3700.0
    )  # trained epochs k..N now
    assert pipeline.earlier_attempts_s(command, resumed, started=written + 5) == 4300.0  # only evaluated now
    assert pipeline.earlier_attempts_s(command, command, started=written - 5) == 0.0  # a fresh run
    evaluate = [sys.executable, "-m", "train.evaluate", str(out), "--resume"]
    assert pipeline.earlier_attempts_s(evaluate, evaluate, started=written - 5) == 0.0

    state = PipelineState(tmp_path / "state.json")
    state.record(command, 600.0 + 3700.0, 3700.0)
    state.record(evaluate, 300.0)
    recorded = json.loads((tmp_path / "state.json").read_text())["finished"]
    assert recorded[PipelineState.key(command)]["seconds"] == 4300.0
    assert recorded[PipelineState.key(command)]["earlier_attempts_s"] == 3700.0
    assert "earlier_attempts_s" not in recorded[PipelineState.key(evaluate)]


def test_state_keys_ignore_the_interpreter_path(tmp_path):
    state = PipelineState(tmp_path / "state.json")
    state.record(["/usr/bin/python3", "-m", "train.features", "/data/corpus"], 1.0)
    reloaded = PipelineState(tmp_path / "state.json")
    assert reloaded.done(["/other/python", "-m", "train.features", "/data/corpus"])
    assert not reloaded.done(["/other/python", "-m", "train.features", "/data/other"])


def test_two_pipelines_sharing_a_runs_folder_keep_what_each_recorded(tmp_path):
    """A second process (``--only`` a step while the main one runs with ``--skip`` it) records into the
    same state file: neither write loses the other's commands."""
    main, second = PipelineState(tmp_path / "state.json"), PipelineState(tmp_path / "state.json")
    main.record([sys.executable, "-m", "train", "csa"], 1.0)
    second.record([sys.executable, "-m", "train.analysis_vectors"], 2.0)
    main.record([sys.executable, "-m", "train", "rgmc"], 3.0)
    reloaded = PipelineState(tmp_path / "state.json")
    assert len(reloaded.finished) == 3 and main.finished == reloaded.finished


def test_a_command_another_pipeline_is_running_is_waited_for_and_not_run_twice(tmp_path):
    """The main pipeline reaching a command a second one (``--only``) is running: it waits for the lock
    that pipeline holds, then finds the command finished and goes on, instead of a second training writing
    the same folder."""
    ran = tmp_path / "ran"
    command = _counting(ran)
    runs = tmp_path / "runs"
    state = PipelineState(runs / "pipeline_state.json")
    log_dir = runs / "logs"
    log_dir.mkdir(parents=True)
    outcome = []
    with pipeline.running_alone(command, runs / pipeline.LOCKS_DIR, "other"):  # the other pipeline
        waiting = threading.Thread(
            target=lambda: outcome.append(pipeline.run(Step("step", [command]), log_dir, state))
        )
        waiting.start()
        time.sleep(0.5)
        assert waiting.is_alive() and not ran.exists()
        PipelineState(runs / "pipeline_state.json").record(command, 1.0)  # the other one finishes it
    waiting.join(timeout=30)
    assert outcome and outcome[0][2] == 0 and not ran.exists()
    assert list((runs / pipeline.LOCKS_DIR).iterdir())  # the lock files stay, in the runs folder


def test_the_analysis_conditioned_variant_trains_on_the_analyses_and_files_its_row_after_the_paper_recipe(
    tmp_path,
):
    plan = {step.name: step for step in pipeline.steps("C", "full", str(tmp_path / "runs"))}
    run, row = plan["csa-analysis-run"], plan["csa-analysis"]
    assert (
        set(run.after) == {"clap", "analysis-vectors"}
        and "model.analysis_conditioning=true" in run.commands[0]
    )
    assert set(row.after) == {"csa", "csa-analysis-run"} and row.commands[0][-2:] == ["--as", "csa_analysis"]
    assert not run.shipped and run.lever and run.candidate and "csa-analysis" in plan["tables"].after
    order = list(plan)
    assert order.index("csa-analysis-run") < order.index("alcap") < order.index("csa-attribute-words")
    assert "blap" in plan["blap-analysis-run"].after  # it starts from BLAP's stage-1 run


def test_every_rgmc_run_shares_its_text_pretraining_and_no_other_model_is_told_to(tmp_path):
    """RGMC's paper run and its variants keep their text pretraining in one folder of the runs folder, so
    the variants that differ only in captioning reuse it; the analysis variant waits for the paper run."""
    plan = {step.name: step for step in pipeline.steps("C", "full", str(tmp_path / "runs"))}
    trainings = [command for step in plan.values() for command in step.commands if command[2] == "train"]
    for command in trainings:
        shares = "--shared-build" in command
        assert shares == (command[3] == "rgmc"), command
        if shares:
            assert command[command.index("--shared-build") + 1] == str(tmp_path / "runs" / "shared_build")
    assert sum("--shared-build" in command for command in trainings) == 7
    assert "rgmc" in plan["rgmc-analysis-run"].after


def test_an_interrupted_training_is_resumed_from_its_last_epoch(tmp_path):
    out = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "train",
        "csa",
        "--config",
        "c.yaml",
        "--out",
        str(out),
        "--threads",
        "1",
    ]
    assert resume_command(command) == command  # nothing to resume: a fresh run
    (out / "build").mkdir(parents=True)  # cut off before its first epoch ended, its build work kept
    assert resume_command(command) == command + ["--resume"]
    (out / "build").rmdir()
    (out / "last").mkdir(parents=True)
    (out / "last" / "resume.json").write_text("{}")
    assert resume_command(command) == command + ["--resume"]
    (out / "last" / "resume.json").unlink()
    (out / "last").rmdir()
    (out / "training.json").write_text("{}")  # trained, then cut off in its evaluation
    assert resume_command(command) == command + ["--resume"]
    evaluate = [sys.executable, "-m", "train.evaluate", str(out)]
    assert resume_command(evaluate) == evaluate

    # a folder another command started (new settings, new analyses) is trained afresh, not resumed
    state = PipelineState(tmp_path / "state.json")
    state.start(command)
    assert resume_command(command, state) == command + ["--resume"]
    replanned = [*command, "--analysis-probes", "0123abcd"]
    assert resume_command(replanned, state) == replanned
    assert PipelineState(tmp_path / "state.json").started == {str(out): PipelineState.key(command)}


def test_a_conditioned_run_refuses_analyses_made_by_other_probes(tmp_path):
    from train.analysis_vectors import require_analyses

    with pytest.raises(SystemExit, match="no analyses"):
        require_analyses(tmp_path, "abc")
    (tmp_path / "analysis").mkdir()
    (tmp_path / "analysis" / "info.json").write_text(json.dumps({"probes_sha256": "abcdef", "folds": 3}))
    require_analyses(tmp_path, "abc")
    with pytest.raises(SystemExit, match="probes abcdef"):
        require_analyses(tmp_path, "fff")


def test_the_plan_keeps_runs_where_it_is_told(tmp_path):
    runs = str(tmp_path / "runs")
    plan = pipeline.steps("/corpus", "small", runs)
    ablation_outputs = [
        command[command.index("--out") + 1]
        for step in plan
        if not step.shipped
        for command in step.commands
        if "--out" in command
    ]
    assert ablation_outputs and all(out.startswith(runs) for out in ablation_outputs)
    blap = next(step for step in plan if step.name == "blap").commands[-1]
    assert f"model.init_from={runs}/blap_stage1" in blap


def test_a_retrain_outside_the_repository_never_reads_the_shipped_checkpoints(tmp_path):
    staged = str(tmp_path / "runs" / "checkpoints")
    plan = pipeline.steps("/corpus", "full", str(tmp_path / "runs"), checkpoints=staged)
    shipped = str(pipeline.REPO / "checkpoints")
    commands = [command for step in plan for command in step.commands]
    assert not any(shipped in argument for command in commands for argument in command)
    for command in commands:
        if command[1:3] == ["-m", "train"] and command[3] in ("rgmc", "csa", "blap"):
            assert f"model.clap_path={staged}/clap" in command  # the CLAP this pipeline trained
        if command[1:3] == ["-m", "train"] and command[3] == "blap":
            assert f"model.lm_path={staged}/blap_lm" in command
        if "train.evaluate" in command:
            assert command[command.index("--clap") + 1] == f"{staged}/clap"
    assert plan[0].commands[0][-2:] == ["--recipe", "v2"]
    after = {step.name: step.after for step in plan}
    assert all("clap" in after[name] for name in ("muscaps", "alcap", "rgmc", "csa", "blap"))


def test_the_v1_recipe_rebuilds_the_shipped_models_as_they_were_made(tmp_path):
    plan = pipeline.steps("/corpus", "small", str(tmp_path / "runs"), recipe="v1")
    assert plan[0].commands[0][-2:] == ["--recipe", "v1"]
    commands = [command for step in plan for command in step.commands]
    assert not any("train.max_minutes=0" in command for command in commands)  # the configs' caps, as shipped
    v2 = [c for s in pipeline.steps("/corpus", "full", str(tmp_path / "runs")) for c in s.commands]
    assert all("train.max_minutes=0" in command for command in v2 if command[1:3] == ["-m", "train"])


def test_every_row_of_a_table_trains_the_same_epochs_on_v2(tmp_path):
    plan = pipeline.steps("/corpus", "full", str(tmp_path / "runs"))
    epochs: dict[str, set[str]] = {}
    for command in (c for step in plan for c in step.commands if c[1:3] == ["-m", "train"]):
        config = Path(command[command.index("--config") + 1]).stem
        table = "blap_stage1" if config == "blap_stage1" else command[3]
        epochs.setdefault(table, set()).update(a for a in command if a.startswith("train.epochs="))
    assert all(len(found) == 1 for found in epochs.values()), epochs
    muscaps = [c for step in plan for c in step.commands if c[1:4] == ["-m", "train", "muscaps"]]
    assert muscaps and all("model.max_caption_tokens=120" in c for c in muscaps)  # v2's longer captions


def test_each_architecture_ships_after_the_rows_made_on_its_served_model_and_before_the_tables(tmp_path):
    runs, staged = str(tmp_path / "runs"), str(tmp_path / "runs" / "checkpoints")
    plan = {step.name: step for step in pipeline.steps("/corpus", "full", runs, checkpoints=staged)}
    expected_on_served = 0
    for model in pipeline.CAPTIONERS:
        ship = plan[f"{model}-ship"]
        (command,) = ship.commands
        assert command[1:5] == ["-m", "train.ship", "--arch", model]
        assert command[command.index("--checkpoints") + 1] == staged
        assert command[command.index("--runs") + 1] == runs
        variants, *decodings = " ".join(command[command.index("--variant") + 1 :]).split(" --decoding ")
        variants = variants.split()
        # MusCaps' models are weighed under its table's other decoding too (the paper's beam 3, its row) and
        # under 3 beams with its rows' 5-gram blocking
        if model == "muscaps":
            beam3 = plan["muscaps-ablation-beam3"].commands[0]
            assert decodings == [
                " ".join(["beam3", *beam3[beam3.index("--decoding") + 1 :]]),
                "beam3_no_repeat5 num_beams=3 no_repeat_ngram_size=5",
            ]
        else:
            assert not decodings
        # every variant it weighs is a run the plan trains under runs and files as a row of model's table
        for variant in variants:
            name, _, folder = variant.partition("=")
            trained = [c for s in plan.values() for c in s.commands if c[1:3] == ["-m", "train"]]
            assert folder == f"{runs}/{name}" and any(c[c.index("--out") + 1] == folder for c in trained)
            filing = plan[pipeline.ship_variants(model)[name]]
            assert any(c[-4:] == ["--into", f"{staged}/{model}", "--as", name] for c in filing.commands)
        assert {f"{model}_analysis", f"{model}_attribute_words"} <= {v.partition("=")[0] for v in variants}
        # installing a variant changes what <checkpoints>/<model> holds: every row evaluated on the paper's
        # model there is filed first; rows trained as runs of their own do not hold the install back
        rows = [plan[name] for name in plan if name.startswith(f"{model}-ablation-")]
        on_served = {row.name for row in rows if any(f"{staged}/{model}" == c[3] for c in row.commands)}
        assert {model, *on_served, *pipeline.ship_variants(model).values()} <= set(ship.after)
        # and each is queued with the shipped runs, so that the ship is not held back by the other rows
        assert all(pipeline.rank(row) == (0 if row.name in on_served else 2) for row in rows)
        assert not {row.name for row in rows} - on_served & set(ship.after)
        assert {row.name for row in rows} <= set(plan["tables"].after)
        assert f"{model}-ship" in plan["tables"].after
        expected_on_served += len(on_served)
    assert "csa_musical_frames" in pipeline.ship_variants("csa")
    assert (
        expected_on_served == 4
    )  # MusCaps' beam-3 decoding, RGMC's random and gold candidates, Kim & Park's beam 5


def test_each_ablation_row_is_a_step_of_its_own_after_its_paper_run(tmp_path):
    """Rows of one table train side by side under --jobs N; each files exactly one row into its table."""
    staged = str(tmp_path / "runs" / "checkpoints")
    plan = pipeline.steps("/corpus", "full", str(tmp_path / "runs"), checkpoints=staged)
    rows = [step for step in plan if "-ablation-" in step.name]
    assert len(rows) == 3 + 6 + 6 + 4 + 1
    for step in rows:
        model = step.name.partition("-")[0]
        assert step.after == [model] and not step.shipped
        filings = [command for command in step.commands if "--into" in command]
        (filing,) = filings
        assert filing[filing.index("--into") + 1] == f"{staged}/{model}"
        row = filing[filing.index("--as") + 1]
        assert step.name == f"{model}-ablation-{row.removeprefix(model + '_')}"


def test_first_starts_the_named_architectures_steps_before_any_others(tmp_path, capsys):
    argv = ["--corpus", str(tmp_path / "c"), "--runs", str(tmp_path / "runs"), "--size", "full", "--list"]
    assert pipeline.main([*argv, "--first", "muscaps"]) == 0
    order = [line.split()[0] for line in capsys.readouterr().out.splitlines()[:-1]]
    muscaps = [name for name in order if name.startswith("muscaps")]
    assert order[: len(muscaps)] == muscaps and "muscaps-ship" in muscaps
    assert order.index("muscaps") < order.index("muscaps-ship")  # the plan's order within them


def test_json_updates_from_several_writers_lose_nothing_and_leave_no_lock_file(tmp_path):
    """Evaluations filing rows of one table side by side: every row lands, and the checkpoint folder holds
    only its results.json (it ships as it is)."""
    target = tmp_path / "checkpoint" / "results.json"

    def file_rows(writer: int) -> None:
        for row in range(40):
            entry = {f"{writer}-{row}": row}
            pipeline.update_json(
                target, lambda document, entry=entry: document.setdefault("ablations", {}).update(entry)
            )

    threads = [threading.Thread(target=file_rows, args=(writer,)) for writer in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(json.loads(target.read_text())["ablations"]) == 120
    assert [path.name for path in target.parent.iterdir()] == ["results.json"]


def test_the_feature_cache_is_checked_on_every_start(tmp_path):
    """The cache lives under $MUSICCAP_CACHE, not in the corpus or runs folder: a fresh machine that kept
    those two refills it in one step instead of in every training."""
    plan = {step.name: step for step in pipeline.steps("C", "full", str(tmp_path / "runs"))}
    assert plan["features"].every_start
    assert [name for name, step in plan.items() if step.every_start] == ["features"]


def test_a_command_runs_again_when_what_it_reads_finished_after_it(tmp_path, monkeypatch):
    """An evaluation's command line names a run folder, not the weights in it: when the run is trained again
    (or its paper row, whose results.json holds the table, is), the same line must run again. A step run on
    every start only checks its work and makes nothing downstream run again."""
    made, used, checked = tmp_path / "made", tmp_path / "used", tmp_path / "checked"
    plan = [
        Step("check", [_counting(checked)], every_start=True),
        Step("make", [_counting(made)], after=["check"]),
        Step("use", [_counting(used)], after=["make"]),
    ]
    monkeypatch.setattr(pipeline, "steps", lambda *args, **kwargs: plan)
    runs = tmp_path / "runs"
    assert pipeline.main(["--runs", str(runs), "--jobs", "1"]) == 0
    time.sleep(1.1)  # the state records finishing times to the second
    assert pipeline.main(["--runs", str(runs), "--jobs", "1"]) == 0
    assert made.read_text() == used.read_text() == "ran\n"  # the check ran again, and changed nothing
    assert checked.read_text() == "ran\n" * 2

    assert pipeline.main(["--runs", str(runs), "--jobs", "1", "--only", "make", "--redo", "make"]) == 0
    time.sleep(1.1)
    assert pipeline.main(["--runs", str(runs), "--jobs", "1"]) == 0
    assert made.read_text() == "ran\n" * 2 and used.read_text() == "ran\n" * 2  # read what changed
    time.sleep(1.1)
    assert pipeline.main(["--runs", str(runs), "--jobs", "1"]) == 0
    assert used.read_text() == "ran\n" * 2  # and once it has, it is up to date


def test_only_readers_go_out_of_date_not_trainings(tmp_path):
    state = PipelineState(tmp_path / "state.json")
    training = [sys.executable, "-m", "train", "muscaps", "--out", "run"]
    evaluation = [sys.executable, "-m", "train.evaluate", "run", "--into", "ck/muscaps"]
    paper = [sys.executable, "-m", "train", "muscaps", "--out", "ck/muscaps"]
    state.record(evaluation, 1.0)
    state.record(training, 1.0)
    assert not state.outdated(evaluation, [])
    assert not state.outdated(evaluation, [paper])  # an input that never finished is no news
    later = json.loads((tmp_path / "state.json").read_text())
    later["finished"][PipelineState.key(training)]["finished"] = "2099-01-01T00:00:00+0000"
    (tmp_path / "state.json").write_text(json.dumps(later))
    state = PipelineState(tmp_path / "state.json")
    assert state.outdated(evaluation, [training])
    assert not state.outdated(training, [evaluation, paper])  # a training reads no other command's output
    lm = [sys.executable, "-m", "train.blap_lm", "--out", "ck/blap_lm"]
    state.record(lm, 1.0)
    assert not state.outdated(lm, [training])  # BLAP's LM (4 h on this CPU) is a training too


def test_among_steps_of_one_rank_the_longest_chain_of_trainings_starts_first():
    """Once every shipped run but BLAP's is trained, BLAP's three trainings and its variants' after them
    are the longest way to the end, so BLAP starts before a variant run that holds up only one ship."""
    plan = pipeline.steps("C", "full", "runs", checkpoints="ck")
    trained = {f"ck/{model}" for model in ("clap", "muscaps", "rgmc", "csa", "alcap")}

    def finished(command):
        return "--out" in command and command[command.index("--out") + 1] in trained

    ahead = pipeline.trainings_ahead(plan, finished)
    assert ahead["blap"] == 3 + 1  # LM, stage 1, stage 2, then its analysis (or attribute-word) run
    assert ahead["csa-analysis-run"] == 1 and ahead["csa"] == 1 and ahead["tables"] == 0
    planned = [step.name for step in plan]
    ordered = [step.name for step in sorted(plan, key=lambda step: (pipeline.rank(step), -ahead[step.name]))]
    assert planned.index("csa-analysis-run") < planned.index("blap")
    assert ordered.index("blap") < ordered.index("csa-analysis-run")
