"""``python -m train.pipeline --corpus DIR --runs DIR [--jobs 2] [--only NAME ...]`` — rebuild every shipped checkpoint.

corpus → feature cache → CLAP → the two baselines → the five captioners, their paper
ablations and variants → which of each captioner's candidates ships (``train.ship``) → results tables. Each step is a list of command lines, printed before they run, so any
step can be re-run by hand; steps whose inputs are ready run ``--jobs`` at a time. Ablation runs
write their metrics into the shipped checkpoint's ``results.json`` under ``"ablations"``.

The pipeline outlives a session: the corpus and the runs folder (ablation runs, logs and
``pipeline_state.json``, the record of every finished command) live where their arguments say,
outside the repository if you like. Started again with the same arguments, it skips every command
that finished, continues an interrupted training from its last epoch (``python -m train --resume``
reads ``<out>/last/``) and an interrupted corpus build from its last clip; anything else that was cut
off runs again from its start.

The budgets (``train.max_minutes``) are what fits this project's 2-core CPU; on a GPU drop them.
"""

from __future__ import annotations

import argparse
import copy
import fcntl
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from musiccap.analysis import PROBES
from musiccap.encoders.embedded import EmbeddedConfig
from musiccap.registry import REPO
from musiccap.training import BUILD_DIR

PY = sys.executable


@dataclass
class Step:
    name: str
    commands: list[list[str]]
    after: list[str] = field(default_factory=list)
    shipped: bool = True  # False: an ablation run in the runs folder, only its numbers are kept
    lever: bool = False  # a variant row that may ship instead of its paper's recipe (issue 30's levers)
    # a lever likely to ship (its run is queued with the shipped runs, ahead of the other levers)
    candidate: bool = False
    # run again on every start even when finished: cheap when its work exists, and that work lives
    # outside the folders the pipeline keeps (the feature cache, under $MUSICCAP_CACHE)
    every_start: bool = False
    # a row evaluated on the model in <checkpoints>/<model>: its architecture's ship waits for it
    holds_ship: bool = False


# The parts each architecture's configs name by registry name: the pipeline points them at the
# checkpoints it trains (its --checkpoints folder), never at what the repository happens to hold.
COMPONENTS = {"rgmc": ("clap",), "csa": ("clap",), "blap": ("clap", "lm")}
# Architectures whose runs reuse each other's build work (``python -m train --shared-build``): RGMC's text
# pretraining, 4 epochs of 40-60 min on corpus v2, is the same for its paper run and the variants that
# change only its captioning epochs.
SHARES_BUILD = ("rgmc",)
SHARED_BUILD = "shared_build"  # that folder, in the runs folder
# Corpus v2 has 10,000 training clips, v1 2,400: every run of an architecture's table trains these epochs
# on v2 (the configs' epochs are v1's), 1.7 times the clips v1's runs saw, so the rows
# still share epochs and the whole retrain fits a few sessions of this CPU (docs/RESULTS.md, training
# time per row). RGMC's text pretraining keeps its 4 epochs. The embedded CLAP: 10 epochs, 780 steps of 128
# (on v1 its 6-minute budget gave 28 epochs of 19 steps, 532). MusCaps, the cheapest (7.6 min an epoch alone),
# trains 8: after 4 its validation NLL was still falling 2.4 % an epoch (1.29, .89, .82, .80) and one more epoch
# at a constant 5e-4 took it to .736; its conditioned variant began to read the tempo only with more steps.
V2_EPOCHS = {"clap": 10, "muscaps": 8, "alcap": 4, "csa": 4, "rgmc": 2, "blap_stage1": 2, "blap": 6}
# v2 captions are longer than v1's (they always state tempo, key and drums): median 75 words, p99 113.
# MusCaps' cap of 60 words (chosen on v1) cut the key sentence from 24 % of them, and the model trained so
# stated mode and tempo less often than a fixed caption (test: mode 0.28, tempo 0.27 against a floor of
# 0.48, 0.38). Every MusCaps row on v2 reads and writes up to 120 words. (The other architectures' caps
# keep 94-100 % of v2 captions whole.)
# Its decoding: greedy with no 5-gram twice. The paper's beam 3 runs on: on validation (500 clips,
# python -m train.diagnostics.decoding_sweep, docs/decoding_sweeps.md) two thirds of its captions repeat a
# sentence until the 120-word limit, CIDEr-D 0.058; greedy + 5-gram blocking 0.164, 58 words (references 66),
# no repeats, tempo 0.32 vs 0.22 and mood 0.26 vs 0.12, mode and drums within noise, instrument F1 0.28 vs
# 0.31 (paired bootstrap: just significant), 3x faster. Decoding cannot reach the tempo floor (0.39): the
# decoder says "medium" whatever it hears (docs/decoding_sweeps.md).
# Every MusCaps row decodes this way, so the fusion variants compare at one decoding.
V2_SETTINGS = {
    "muscaps": (
        "model.max_caption_tokens=120",
        "decoding.max_new_tokens=120",
        "decoding.num_beams=1",
        "decoding.no_repeat_ngram_size=5",
    )
}
# The embedded frames' last columns: chroma, key-profile correlations, tempogram (musiccap/encoders/embedded.py)
MUSICAL_COLUMNS = EmbeddedConfig.chroma_dim + EmbeddedConfig.key_dim + EmbeddedConfig.tempo_dim
# The variant rows' weight of attribute-word tokens in the NLL (base.NeuralCaptioner.caption_nll): chosen
# before any run, as a middle value: these words are 22 % of the words of corpus v2's captions, and 3 makes them
# 46 % of the loss.
ATTRIBUTE_WORD_WEIGHT = 3
# the trained captioners, in the order their levers are queued (the best-placed first)
CAPTIONERS = ("csa", "alcap", "muscaps", "rgmc", "blap")
# Architectures with a row of both levers at once. MusCaps conditioned on the analysis follows its mode and
# drums fields but not its tempo fields (train.diagnostics.analysis_response: told 170 BPM, none of 48
# validation captions says fast). Weighting the attribute words in the NLL is meant to make reading them pay.
BOTH_LEVERS = ("muscaps",)


def ship_variants(model: str) -> dict[str, str]:
    """The variant rows that may ship in place of ``model``'s paper row (issue 30's levers), each with the
    step that trains it into ``<runs>/<row>`` and files its row."""
    variants = {
        f"{model}_analysis": f"{model}-analysis",
        f"{model}_attribute_words": f"{model}-attribute-words",
    }
    if model in BOTH_LEVERS:
        variants[f"{model}_analysis_attribute_words"] = f"{model}-analysis-attribute-words"
    return variants | ({"csa_musical_frames": "csa-musical-frames"} if model == "csa" else {})


def train_cmd(
    model: str,
    config: str,
    out: str,
    corpus: str,
    *overrides: str,
    evaluate: bool = True,
    checkpoints: str,
    uncapped: bool = True,
    shared_build: str = "",
):
    """``python -m train``; ``resume_command`` adds ``--resume`` when the run was cut off mid-training.
    ``shared_build``: the folder of build work shared between runs (for the ``SHARES_BUILD`` models).

    ``uncapped`` (corpus v2): ``train.max_minutes=0``, so epochs, not a wall-clock cap, decide how long
    every run trains (the caps in the configs were what fit v1's 2,400 clips on this CPU)."""
    components = {"clap": f"model.clap_path={checkpoints}/clap", "lm": f"model.lm_path={checkpoints}/blap_lm"}
    command = [
        PY,
        "-m",
        "train",
        model,
        "--config",
        f"train/configs/{config}.yaml",
        "--corpus",
        corpus,
        "--out",
        out,
        "--clap",
        f"{checkpoints}/clap",
    ]
    command += ["--threads", "1"] + ([] if evaluate else ["--no-eval"])
    command += [components[part] for part in COMPONENTS.get(model, ())]
    if shared_build and model in SHARES_BUILD:
        command += ["--shared-build", shared_build]
    return command + (["train.max_minutes=0"] if uncapped else []) + list(overrides)


def ablation(
    model: str,
    config: str,
    corpus: str,
    into: str,
    runs: str,
    checkpoints: str,
    *overrides: str,
    name: str = "",
    uncapped: bool = True,
):
    """Train a paper-ablation config (or, with ``overrides`` and a ``name``, a variant of one) under
    ``runs`` and file its test metrics in the shipped checkpoint as the row ``name`` (default: the config)."""
    name = name or config
    out = f"{runs}/{name}"
    evaluate = [PY, "-m", "train.evaluate", out, "--corpus", corpus, "--clap", f"{checkpoints}/clap"]
    evaluate += ["--into", f"{checkpoints}/{into}", "--as", name]
    train = train_cmd(
        model,
        config,
        out,
        corpus,
        *overrides,
        evaluate=False,
        checkpoints=checkpoints,
        uncapped=uncapped,
        shared_build=f"{runs}/{SHARED_BUILD}",
    )
    return [train, evaluate]


def evaluate_as(checkpoint: str, corpus: str, name: str, checkpoints: str, *, decoding=(), set_=()):
    command = [PY, "-m", "train.evaluate", f"{checkpoints}/{checkpoint}", "--corpus", corpus]
    command += ["--clap", f"{checkpoints}/clap", "--into", f"{checkpoints}/{checkpoint}", "--as", name]
    if decoding:
        command += ["--decoding", *decoding]
    if set_:
        command += ["--set", *set_]
    return command


def steps(
    corpus: str,
    size: str,
    runs: str = "runs",
    quick: bool = False,
    checkpoints: str | None = None,
    recipe: str = "v2",
) -> list[Step]:
    """The plan. ``quick`` drops the two intermediate α rows of ALCAP's sweep (0.002, 0.2) and Kim & Park's
    M4 variant outside the paper's Table II and the shipped model (L_S against the reference prefix),
    leaving the papers' own rows. ``checkpoints``: where the shipped checkpoints are written (default:
    the repository's checkpoints/). ``recipe``: the corpus (v1: what today's checkpoints were trained on,
    with the configs' minute caps as they were)."""
    c, ck, uncapped = corpus, checkpoints or str(REPO / "checkpoints"), recipe == "v2"

    def epochs(model: str, config: str) -> tuple[str, ...]:
        if recipe != "v2":
            return ()
        epochs = V2_EPOCHS["blap_stage1" if config == "blap_stage1" else model]
        return (f"train.epochs={epochs}", *V2_SETTINGS.get(model, ()))

    def train(model: str, config: str, out: str, *overrides: str, evaluate: bool = True):
        return train_cmd(
            model,
            config,
            out,
            c,
            *epochs(model, config),
            *overrides,
            evaluate=evaluate,
            checkpoints=ck,
            uncapped=uncapped,
            shared_build=f"{runs}/{SHARED_BUILD}",
        )

    def row(model: str, config: str, *overrides: str, name: str = ""):
        return ablation(
            model,
            config,
            c,
            model,
            runs,
            ck,
            *epochs(model, config),
            *overrides,
            name=name,
            uncapped=uncapped,
        )

    def evaluate(checkpoint: str, name: str, **switches):
        return evaluate_as(checkpoint, c, name, ck, **switches)

    def analysis_variant(model: str) -> tuple[Step, Step]:
        """The shipped recipe conditioned on the analysis: its run (it needs only the CLAP and the analyses,
        and BLAP its stage-1 run), then its row in ``model``'s table, once the paper recipe's results exist."""
        blap = model == "blap"
        training, evaluation = row(
            model,
            model,
            "model.analysis_conditioning=true",
            *([f"model.init_from={runs}/blap_stage1"] if blap else []),
            name=f"{model}_analysis",
        )
        # BLAP starts from its stage-1 run; RGMC waits for its paper run's text pretraining to reuse it.
        inputs = ["clap", "analysis-vectors", *([model] if model in ("blap", "rgmc") else [])]
        training = [*training, "--analysis-probes", probes]
        return (
            Step(
                f"{model}-analysis-run", [training], after=inputs, shipped=False, lever=True, candidate=True
            ),
            Step(
                f"{model}-analysis",
                [evaluation],
                after=[model, f"{model}-analysis-run"],
                shipped=False,
                lever=True,
            ),
        )

    def analysis_and_attribute_words(model: str) -> Step:
        """The analysis-conditioned recipe with attribute words weighted too (``BOTH_LEVERS``): its run and
        its row in ``model``'s table."""
        training, evaluation = row(
            model,
            model,
            "model.analysis_conditioning=true",
            f"model.attribute_word_weight={ATTRIBUTE_WORD_WEIGHT}",
            name=f"{model}_analysis_attribute_words",
        )
        return Step(
            f"{model}-analysis-attribute-words",
            [[*training, "--analysis-probes", probes], evaluation],
            after=[model, "analysis-vectors"],
            shipped=False,
            lever=True,
        )

    def ablation_rows(model: str, rows: dict[str, list[list[str]]]) -> list[Step]:
        """One step per row of ``model``'s paper table (a run and its filing, or an evaluation of the paper's
        model with other switches), each after the paper's run: with --jobs N rows train side by side."""
        return [
            Step(f"{model}-ablation-{name.removeprefix(model + '_')}", commands, after=[model], shipped=False)
            for name, commands in rows.items()
        ]

    def trained(model: str, *names: str) -> dict[str, list[list[str]]]:
        return {name: row(model, name) for name in names}

    # the other decoding than the shipped one: v1 ships MusCaps' paper beam 3, v2 greedy (V2_SETTINGS)
    muscaps_decoding = (
        ("muscaps_beam3", ["num_beams=3", "no_repeat_ngram_size=0"])
        if uncapped
        else ("muscaps_greedy", ["num_beams=1"])
    )
    # MusCaps' rows decode as V2_SETTINGS says, a choice made on the paper recipe's model before its variants
    # existed; ship weighs every model under the other decoding of its table too (the paper's beam 3) and
    # under 3 beams with V2_SETTINGS' 5-gram blocking kept: on the variant shipped greedily that one lifted
    # validation CIDEr-D from .297 to .311 (docs/decoding_sweeps.json, muscaps_shipped_v2_decoding), while
    # without the blocking 10-14 % of the variants' beam-3 captions repeat a sentence (CIDEr-D .275-.293)
    muscaps_ship_decodings = {muscaps_decoding[0].removeprefix("muscaps_"): muscaps_decoding[1]}
    if uncapped:
        muscaps_ship_decodings["beam3_no_repeat5"] = ["num_beams=3", "no_repeat_ngram_size=5"]
    alcap_rows = (
        ("alcap_alpha0",) + (() if quick else ("alcap_alpha0002", "alcap_alpha02")) + ("alcap_no_lyrics",)
    )
    ablations = {
        "muscaps": ablation_rows(
            "muscaps",
            trained("muscaps", "muscaps_early", "muscaps_late")
            | {muscaps_decoding[0]: [evaluate("muscaps", muscaps_decoding[0], decoding=muscaps_decoding[1])]},
        ),
        "rgmc": ablation_rows(
            "rgmc",
            trained(
                "rgmc", "rgmc_audio_only", "rgmc_text_only", "rgmc_piece_exclusion", "rgmc_no_pretraining"
            )
            | {
                f"rgmc_{candidate}_candidate": [
                    evaluate("rgmc", f"rgmc_{candidate}_candidate", set_=[f"candidate={candidate}"])
                ]
                for candidate in ("random", "gold")
            },
        ),
        "csa": ablation_rows(
            "csa",
            trained("csa", "csa_m1", "csa_m2", "csa_m3", "csa_m4")
            | {"csa_beam5": [evaluate("csa", "csa_beam5", decoding=["num_beams=5"])]}
            | ({} if quick else trained("csa", "csa_m4_prefix_reference")),
        ),
        "alcap": ablation_rows("alcap", trained("alcap", *alcap_rows)),
        "blap": ablation_rows("blap", trained("blap", "blap_stage2_only")),
    }

    def reads_served_model(step: Step, model: str) -> bool:
        """A row evaluated on the model in <checkpoints>/<model> (another decoding, another switch), not
        on a run of its own."""
        served = f"{ck}/{model}"
        return any(command[1:4] == ["-m", "train.evaluate", served] for command in step.commands)

    for model, rows in ablations.items():
        for step in rows:
            step.holds_ship = reads_served_model(step, model)

    def ship(model: str) -> Step:
        """``python -m train.ship``: the paper row against the variant rows, once they are filed, and after
        every row evaluated on the paper's model in <checkpoints>/<model> (installing a variant changes
        what that folder holds). Rows trained as runs of their own are filed whenever they finish, before
        or after, so an architecture ships without waiting for its paper's ablations."""
        variants = ship_variants(model)
        command = [PY, "-m", "train.ship", "--arch", model, "--checkpoints", ck, "--runs", runs]
        command += ["--corpus", c, "--clap", f"{ck}/clap", "--variant"]
        command += [f"{name}={runs}/{name}" for name in variants]
        if model == "muscaps":
            for label, pairs in muscaps_ship_decodings.items():
                command += ["--decoding", label, *pairs]
        rows = [step.name for step in ablations[model] if step.holds_ship]
        return Step(f"{model}-ship", [command], after=[model, *variants.values(), *rows])

    # The probes' fingerprint is in the analyses' command and in every conditioned run's: new probes
    # (checkpoints/analysis) make the pipeline analyse the corpus again and retrain what read the old analyses.
    probes = hashlib.sha256(PROBES.read_bytes()).hexdigest()[:12] if PROBES.is_file() else "none"
    # two render processes and two feature workers: one a core of this project's CPU (a full corpus in
    # about half an hour each, the cache refilled on a fresh machine in about half an hour)
    corpus_build = [PY, "-m", "train.corpus", "--out", c, "--size", size, "--seed", "0", "--workers", "2"]
    plan = [
        Step("corpus", [corpus_build + ["--recipe", recipe]]),
        # ~12 s when every clip is cached; on a fresh machine that kept only the corpus and the runs
        # folder it refills the cache once, before the trainings would each compute it on first use
        Step(
            "features",
            [[PY, "-m", "train.features", c, "--workers", "2"]],
            after=["corpus"],
            every_start=True,
        ),
        Step("clap", [train("clap", "clap", f"{ck}/clap")], after=["features"]),
        # the analysis of every clip (train cross-fitted), for the analysis-conditioned variants
        Step(
            "analysis-vectors",
            [[PY, "-m", "train.analysis_vectors", "--corpus", c, "--probes-sha256", probes]],
            # the analyses live in the corpus folder: a corpus built again is analysed again
            after=["corpus", "features"],
        ),
        Step(
            "baselines",
            [
                [PY, "-m", "train.baselines", "--corpus", c, "--out", f"{ck}/random"],
                [PY, "-m", "train.evaluate", f"{ck}/random", "--corpus", c, "--clap", f"{ck}/clap"],
                [PY, "-m", "train.nearest", "--clap", f"{ck}/clap", "--corpus", c, "--out", f"{ck}/nearest"],
                [PY, "-m", "train.evaluate", f"{ck}/nearest", "--corpus", c, "--clap", f"{ck}/clap"],
            ],
            after=["clap"],
        ),
        # MusCaps and ALCAP read the embedded features only, but their evaluation scores with the CLAP.
        Step("muscaps", [train("muscaps", "muscaps", f"{ck}/muscaps")], after=["clap"]),
        *ablations["muscaps"],
        Step("rgmc", [train("rgmc", "rgmc", f"{ck}/rgmc")], after=["clap"]),
        *ablations["rgmc"],
        Step("csa", [train("csa", "csa", f"{ck}/csa")], after=["clap"]),
        # Lever of issue 30, a variant row of each architecture's table: the clip's analysis (the app's own
        # ears, musiccap/conditioning.py) as an input beside the audio. The analysis reads tempo and mode
        # far better than any captioner's audio features do (docs/RESULTS.md), so these runs are queued
        # with the shipped ones (csa, the best-placed, first; BLAP's after its stage-1 run).
        *(step for model in CAPTIONERS if model != "blap" for step in analysis_variant(model)),
        *ablations["csa"],
        Step("alcap", [train("alcap", "alcap", f"{ck}/alcap")], after=["clap"]),
        *ablations["alcap"],
        Step(
            "blap",
            [
                [
                    PY,
                    "-m",
                    "train.blap_lm",
                    "--corpus",
                    c,
                    "--out",
                    f"{ck}/blap_lm",
                    "--max-steps",  # a step budget: a wall-clock one starves under load (4 min gave 108 steps)
                    "2670",  # the shipped LM's steps (62 min on 2 threads); 500 steps left it not reading its encoder
                    "--max-minutes",  # 0: no wall-clock cap (beside other jobs 150 min may not reach the steps)
                    "0",
                    "--min-noise",  # clean copies too: the LM must learn to read what precedes the instruction
                    "0",
                    "--threads",
                    "2",
                ],
                train("blap", "blap_stage1", f"{runs}/blap_stage1", evaluate=False),
                train("blap", "blap", f"{ck}/blap", f"model.init_from={runs}/blap_stage1"),
            ],
            after=["clap"],
        ),
        *analysis_variant("blap"),
        *ablations["blap"],
        # Lever of issue 30, a variant row of Kim & Park's table: the frames' chroma, key-profile and
        # tempogram columns reach the decoder unpooled beside the CLAP's tokens (the CLAP pools mode away).
        Step(
            "csa-musical-frames",
            row("csa", "csa", f"model.musical_frames={MUSICAL_COLUMNS}", name="csa_musical_frames"),
            after=["csa"],
            shipped=False,
            lever=True,
        ),
        # Levers of issue 30, each a variant row of its architecture's table (never a paper's row): the
        # shipped recipe with attribute words weighted ATTRIBUTE_WORD_WEIGHT times in the NLL. One step per
        # architecture, after its shipped run, so each variant can be judged as soon as its base exists.
        *(
            Step(
                f"{model}-attribute-words",
                row(
                    model,
                    model,
                    f"model.attribute_word_weight={ATTRIBUTE_WORD_WEIGHT}",
                    *([f"model.init_from={runs}/blap_stage1"] if model == "blap" else []),
                    name=f"{model}_attribute_words",
                ),
                after=[model],
                shipped=False,
                lever=True,
            )
            for model in CAPTIONERS
        ),
        *(analysis_and_attribute_words(model) for model in BOTH_LEVERS),
        # Which of each architecture's candidates ships (README, "Choosing what ships"): once its paper row,
        # its variants' rows and the rows evaluated on its paper model are filed (installing a variant
        # changes what <checkpoints>/<model> holds), python -m train.ship applies the rule on validation
        # and serves the winner from <checkpoints>/<model>, the paper recipe kept as a row of its table.
        *(ship(model) for model in CAPTIONERS),
        Step(
            "tables",
            [[PY, "-m", "train.tables", "--checkpoints", ck, "--out", str(REPO / "docs" / "RESULTS.md")]],
            after=[
                *(f"{model}-ship" for model in CAPTIONERS),
                "baselines",
                *(f"{model}-{lever}" for model in CAPTIONERS for lever in ("attribute-words", "analysis")),
                *(f"{model}-analysis-attribute-words" for model in BOTH_LEVERS),
                "csa-musical-frames",
                *(step.name for model in CAPTIONERS for step in ablations[model]),
            ],
        ),
    ]

    return sorted(plan, key=rank)


def rank(step: Step) -> int:
    """Shipped checkpoints (and the candidates to ship in their place, and the rows evaluated on the served
    model, which hold its ship back: each one evaluation) first, then the other levers of issue 30 (they
    decide which variant ships), then the papers' ablation rows, the tables last: with --jobs N each later
    group fills the cores once the earlier is under way."""
    first = step.shipped or step.candidate or step.holds_ship
    return 3 if step.name == "tables" else 0 if first else 1 if step.lever else 2


def is_training(command: list[str]) -> bool:
    """A command that trains weights (a captioner, the CLAP, BLAP's LM), as opposed to one that reads them."""
    return command[1:3] in (["-m", "train"], ["-m", "train.blap_lm"])


def trainings_ahead(plan: list[Step], finished) -> dict[str, int]:
    """Per step, the unfinished trainings (``finished(command)`` false) on the longest chain of steps from
    it to the end of the plan, its own included. Among steps of one rank the one with the most ahead of it
    starts first, a longest-path list schedule: BLAP's LM, stage-1 and stage-2 trainings, then its variants,
    hold up its ship longer than one variant run holds up another architecture's, so a retrain whose
    shipped runs are done but BLAP's starts BLAP's first and ends hours sooner."""
    by_name = {step.name: step for step in plan}
    dependents: dict[str, list[str]] = {step.name: [] for step in plan}
    for step in plan:
        for name in step.after:
            if name in dependents:
                dependents[name].append(step.name)
    ahead: dict[str, int] = {}

    def count(name: str) -> int:
        if name not in ahead:
            own = sum(is_training(c) and not finished(c) for c in by_name[name].commands)
            ahead[name] = own + max((count(later) for later in dependents[name]), default=0)
        return ahead[name]

    return {step.name: count(step.name) for step in plan}


def update_json(path: Path, change) -> dict:
    """Apply ``change`` (which edits the document in place) to the JSON file ``path`` under a lock on its
    folder, so that processes sharing the file (two pipelines, evaluations filing rows of one table, ship
    steps) lose none of each other's entries; the file is replaced whole, so an interruption leaves the old
    or the new one. Returns it. The folder itself is locked so that no lock file is left in it (a
    checkpoint folder ships as it is)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        document = json.loads(path.read_text()) if path.is_file() else {}
        before = copy.deepcopy(document)
        change(document)
        if not path.is_file() or document != before:  # a change that changes nothing leaves the file alone
            scratch = path.with_suffix(".tmp")
            scratch.write_text(json.dumps(document, indent=2) + "\n")
            scratch.replace(path)
    finally:
        os.close(folder)  # releases the lock
    return document


FINISHED_FORMAT = "%Y-%m-%dT%H:%M:%S%z"
LOCKS_DIR = "locks"  # in the runs folder, beside pipeline_state.json: one lock file per command run


class PipelineState:
    """``<runs>/pipeline_state.json``: every command that finished, with its seconds, keyed by its command
    line (without the interpreter), and which command last started in each training folder. Written after
    each command, so a pipeline stopped at any moment loses at most the command that was running. Every
    write merges with the file under an exclusive lock, so two pipelines may share a runs folder (e.g.
    ``--only`` one step in a second process while the main one runs): neither loses what the other
    recorded, and a command both reach runs once (``running_alone``)."""

    def __init__(self, path: Path, locks: Path | None = None):
        self.path = path
        self.locks = locks or path.parent / LOCKS_DIR  # the commands' locks (running_alone)
        self.lost: set[str] = set()  # finished commands whose output is gone and still read (lost_outputs)
        self._lock = threading.Lock()  # steps finish on several threads
        document = self._read()
        self.finished: dict[str, dict] = document["finished"]
        self.started: dict[str, str] = document["started"]  # training folder -> the command writing it

    def _read(self) -> dict:
        return self._complete(json.loads(self.path.read_text()) if self.path.is_file() else {})

    def reload(self) -> None:
        """Take in what other processes recorded since this one last wrote (the file is replaced whole)."""
        with self._lock:
            document = self._read()
            self.finished, self.started = document["finished"], document["started"]

    @staticmethod
    def _complete(document: dict) -> dict:
        document.setdefault("finished", {})
        document.setdefault("started", {})
        return document

    def _update(self, change) -> None:
        """Apply ``change`` to the file's current content (under the lock) and keep the result."""
        with self._lock:
            document = update_json(self.path, lambda found: change(self._complete(found)))
            self.finished, self.started = document["finished"], document["started"]

    @staticmethod
    def key(command: list[str]) -> str:
        return " ".join(command[1:])  # not the interpreter's path: a fresh machine may have another

    def done(self, command: list[str]) -> bool:
        return self.key(command) in self.finished and self.key(command) not in self.lost

    def finished_at(self, command: list[str]) -> datetime | None:
        entry = self.finished.get(self.key(command))
        return datetime.strptime(entry["finished"], FINISHED_FORMAT) if entry else None

    def outdated(self, command: list[str], inputs: list[list[str]]) -> bool:
        """A finished command that reads what another command writes (an evaluation, a ship, the tables) is
        out of date when one of those ``inputs`` finished after it: the same command line would read new
        weights (a run trained again under a new command, a paper row retrained and its table's rows wiped).
        A training is never out of date this way: what it reads does not change (resume_command starts it
        afresh when its own command changes)."""
        if is_training(command) or not self.done(command):
            return False
        finished = self.finished_at(command)
        return any(self.done(other) and self.finished_at(other) > finished for other in inputs)

    def forget(self, step: Step) -> None:
        def drop(document):
            for command in step.commands:
                document["finished"].pop(self.key(command), None)

        self._update(drop)

    def record(self, command: list[str], seconds: float, earlier_attempts_s: float = 0.0) -> None:
        self.lost.discard(self.key(command))
        entry = {"seconds": round(seconds, 1), "finished": time.strftime(FINISHED_FORMAT)}
        if earlier_attempts_s:  # included in seconds: training done by attempts that were cut off
            entry["earlier_attempts_s"] = round(earlier_attempts_s, 1)
        self._update(lambda document: document["finished"].__setitem__(self.key(command), entry))

    def start(self, command: list[str]) -> None:
        out = training_folder(command)
        if out is not None:
            self._update(lambda document: document["started"].__setitem__(str(out), self.key(command)))


@contextmanager
def running_alone(command: list[str], locks: Path, step_name: str):
    """Hold ``command``'s lock (a file in ``locks`` named by its state key) while it runs, so that two
    pipelines sharing a runs folder (the main one and a second one with ``--only``) never run one command
    at once, e.g. two trainings writing one folder: the later waits, then finds the command finished. The
    lock goes with the process that holds it, however that process ends."""
    locks.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha256(PipelineState.key(command).encode()).hexdigest()[:16]
    with (locks / f"{name}.lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"[{step_name}] another pipeline is running it, waiting: {' '.join(command)}", flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def training_folder(command: list[str]) -> Path | None:
    """The checkpoint folder a ``python -m train`` command writes (None for other commands)."""
    return output_folder(command) if command[1:3] == ["-m", "train"] else None


def output_folder(command: list[str]) -> Path | None:
    """The folder a command writes as a whole (its ``--out``: a run, the corpus, BLAP's LM, a baseline)."""
    if "--out" not in command:
        return None
    out = Path(command[command.index("--out") + 1])
    return out if out.is_absolute() else REPO / out


def reads(command: list[str], folder: Path) -> bool:
    """Whether ``command`` names ``folder`` (as an argument, or as the value of a ``NAME=PATH`` one)."""
    named = {Path(arg.split("=", 1)[1] if "=" in arg else arg) for arg in command[1:] if "/" in arg}
    return folder in named or folder.resolve() in named


def lost_outputs(plan: list[Step], state: PipelineState) -> set[str]:
    """The finished commands (state keys) whose output folder is gone while a command still to run reads
    it: a retrain resumed on a fresh machine that kept the state and the checkpoints (e.g. committed to a
    repository) but not the corpus or the runs folder. Those commands run again, and what read their old
    output is out of date (``PipelineState.outdated``) when it is still needed. An ablation run whose row
    is filed is not lost with its folder: nothing still reads it."""
    commands = [command for step in plan for command in step.commands]
    lost: set[str] = set()
    while True:
        state.lost = lost
        pending = [command for command in commands if not state.done(command)]
        found = {
            state.key(command)
            for command in commands
            if state.done(command)
            and (out := output_folder(command)) is not None
            and not out.exists()
            and any(reads(other, out) for other in pending)
        }
        if not found:
            return lost
        lost |= found


def resume_command(command: list[str], state: PipelineState | None = None) -> list[str]:
    """An interrupted ``python -m train`` run continues from the resume state its trainer left in
    ``<out>/last`` (or, cut off before its first epoch ended, from the build work its model kept in
    ``<out>/build``, e.g. RGMC's text pretraining; or, cut off in its evaluation, from the finished
    training its ``training.json`` records), unless another command (another plan: new settings, new
    analyses) started that folder: then it starts afresh."""
    out = training_folder(command)
    kept = out is not None and any(
        path.exists() for path in (out / "last" / "resume.json", out / BUILD_DIR, out / "training.json")
    )
    if not kept:
        return command
    started_by = state.started.get(str(out)) if state is not None else None
    if started_by is not None and started_by != PipelineState.key(command):
        return command
    return command + ["--resume"]


def earlier_attempts_s(command: list[str], invoked: list[str], started: float) -> float:
    """Seconds an earlier, cut-off attempt of a resumed ``python -m train`` command spent training its
    model, as its ``training.json`` records them: the epochs before the resume, or, when that attempt
    had finished the training and was cut off in the evaluation, the whole training. The recorded step
    time then counts every attempt's training, not the last attempt's alone."""
    out = training_folder(command)
    record = out / "training.json" if out is not None else None
    if "--resume" not in invoked or record is None or not record.is_file():
        return 0.0
    training = json.loads(record.read_text())
    if record.stat().st_mtime < started:  # this attempt found the training finished and only evaluated
        return float(training.get("wall_time_s", 0.0))
    return float(training.get("train_time_before_resume_s", 0.0))


def run(
    step: Step, log_dir: Path, state: PipelineState, inputs: list[list[str]] = ()
) -> tuple[str, float, int]:
    """Run ``step``'s commands in order, skipping those that finished, unless a command they read
    (``inputs``: the commands of the steps it comes after, or an earlier command of its own) finished
    after them."""
    started = time.time()
    log = (log_dir / f"{step.name}.log").open("a")
    for position, command in enumerate(step.commands):
        with running_alone(command, state.locks, step.name):
            state.reload()  # another pipeline may have finished it, or what it reads, meanwhile
            outdated = state.outdated(command, [*inputs, *step.commands[:position]])
            if state.done(command) and not step.every_start and not outdated:
                print(f"[{step.name}] finished earlier, skipped: {' '.join(command)}", flush=True)
                continue
            if outdated:
                print(
                    f"[{step.name}] what it reads changed since it finished, again: {' '.join(command)}",
                    flush=True,
                )
            command_started = time.time()
            invoked = resume_command(command, state)
            state.start(command)
            print(f"[{step.name}] {' '.join(invoked)}", flush=True)
            log.write(f"$ {' '.join(invoked)}\n")
            log.flush()
            code = subprocess.run(invoked, cwd=REPO, stdout=log, stderr=subprocess.STDOUT).returncode
            if code:
                return step.name, time.time() - started, code
            earlier = earlier_attempts_s(command, invoked, command_started)
            state.record(command, time.time() - command_started + earlier, earlier)
    return step.name, time.time() - started, 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.pipeline", description=__doc__)
    parser.add_argument("--corpus", default="data/corpus")
    parser.add_argument("--runs", default="runs", help="ablation runs, logs and the pipeline's state")
    parser.add_argument(
        "--state",
        help="the record of finished commands (default: RUNS/pipeline_state.json); kept with the "
        "checkpoints where only they survive, e.g. both committed to a repository: a command whose output "
        "folder is gone and still read runs again",
    )
    parser.add_argument(
        "--checkpoints",
        help="where the shipped checkpoints are written (default: the repository's checkpoints/); "
        "outside the repository, e.g. RUNS/checkpoints, a retrain survives a fresh clone and leaves the "
        "served models alone until it is copied in",
    )
    parser.add_argument("--size", default="small", choices=["tiny", "small", "full"])
    parser.add_argument(
        "--recipe",
        default="v2",
        choices=["v1", "v2"],
        help="the corpus: v2 (the retrain of issue 30), v1 (what the checkpoints shipped today were trained on)",
    )
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", nargs="*", help="run just these steps (their inputs must exist)")
    parser.add_argument("--skip", nargs="*", default=[], help="steps already done")
    parser.add_argument("--redo", nargs="*", default=[], help="run these steps again even if they finished")
    parser.add_argument(
        "--first",
        nargs="*",
        default=[],
        choices=CAPTIONERS,
        help="start these architectures' steps (runs, variants, ablation rows, ship) before any other's, so "
        "that each is shipped as early as it can be: what a machine that may not last should finish first",
    )
    parser.add_argument("--list", action="store_true")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="without ALCAP's α = 0.002 / 0.2 and Kim & Park's M4 variant",
    )
    args = parser.parse_args(argv)
    # commands run in the repository: folders given relative to the caller are made absolute first
    corpus, runs = (str(Path(p).resolve()) for p in (args.corpus, args.runs))
    checkpoints = str(Path(args.checkpoints).resolve()) if args.checkpoints else None
    plan = steps(corpus, args.size, runs, args.quick, checkpoints, args.recipe)
    state = PipelineState(
        Path(args.state).resolve() if args.state else Path(runs) / "pipeline_state.json",
        locks=Path(runs) / LOCKS_DIR,
    )
    state.lost = lost_outputs(plan, state)
    for key in sorted(state.lost):
        print(f"finished earlier but its output is gone and still read, again: {key}", flush=True)
    ahead = trainings_ahead(plan, state.done)
    plan.sort(key=lambda step: (rank(step), -ahead[step.name]))  # stable: the plan's order among equals
    plan.sort(key=lambda step: step.name.split("-")[0] not in args.first)
    if args.list:
        recorded = [
            state.finished[state.key(c)]["seconds"] for s in plan for c in s.commands if state.done(c)
        ]
        for step in plan:
            finished = [state.finished[state.key(c)]["seconds"] for c in step.commands if state.done(c)]
            progress = f"{len(finished)}/{len(step.commands)} done, {sum(finished) / 60:.1f} min"
            print(
                f"{step.name:18s} after {','.join(step.after) or '-':30s} [{progress}] "
                + " && ".join(" ".join(c) for c in step.commands)
            )
        total = sum(len(step.commands) for step in plan)
        print(
            f"{len(recorded)} of {total} commands finished, {sum(recorded) / 3600:.1f} h of recorded run time"
        )
        return 0
    wanted = {s.name for s in plan} if not args.only else set(args.only)
    done = set(args.skip) | ({s.name for s in plan} - wanted)
    log_dir = Path(runs) / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    for step in plan:
        if step.name in args.redo:
            state.forget(step)
    # what each step's commands read: the commands of the steps it comes after (a step run on every start
    # only checks its work, so it changes nothing downstream)
    by_name = {step.name: step for step in plan}
    inputs_of = {
        step.name: [
            command
            for name in step.after
            if name in by_name and not by_name[name].every_start
            for command in by_name[name].commands
        ]
        for step in plan
    }
    timings, failed = {}, []
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        running = {}
        while True:
            for step in plan:
                ready = step.name not in done and step.name not in running and step.name not in failed
                if ready and all(a in done for a in step.after) and len(running) < args.jobs:
                    running[step.name] = pool.submit(run, step, log_dir, state, inputs_of[step.name])
            if not running:
                break
            wait(running.values(), return_when=FIRST_COMPLETED)
            finished = [name for name, future in running.items() if future.done()]
            for name in finished:
                _, seconds, code = running.pop(name).result()
                timings[name] = round(seconds, 1)
                print(
                    f"[{name}] {'ok' if code == 0 else f'FAILED ({code})'} in {seconds / 60:.1f} min",
                    flush=True,
                )
                (failed.append(name) if code else done.add(name))
    (log_dir / "pipeline.json").write_text(
        json.dumps({"timings_s": timings, "failed": failed}, indent=2) + "\n"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
