"""``python -m train.tables --out docs/RESULTS.md`` — every results table, from the checkpoints' results.json.

One comparison of all shipped captioners (Kim & Park Table II columns, RGMC Table 3 columns,
attribute accuracy), one table per paper with its ablation rows, and the CLAP retrieval table.
Nothing here computes a number: it only lays out what ``python -m train.evaluate`` wrote.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from musiccap.metrics.attributes import READER_VERSION
from musiccap.metrics.listening import ATTRIBUTE_LABELS, gap_closed, listening_table, sensitivity_table
from musiccap.metrics.tables import (
    ATTRIBUTE_TABLE,
    KIM_PARK_TABLE_II,
    RGMC_TABLE_3,
    format_value,
    markdown_table,
)
from musiccap.registry import REPO
from train.evaluate import final_validation, validation_curve

ORDER = ("random", "nearest", "muscaps", "alcap", "rgmc", "blap", "csa")
COPY_COLUMNS = (("copy rate", "copy_rate"), ("copy BLEU-4", "copy_bleu4"), ("copy ROUGE-L", "copy_rouge_l"))
PAPER_TABLES = {
    "muscaps": (
        "MusCaps (Manco et al.) — fusion variants and decoding",
        KIM_PARK_TABLE_II + (("CIDEr-D", "cider_d"), ("<unk>", "unk"), ("repeats", "repeats")),
    ),
    "rgmc": ("RGMC (Srivatsan et al.) — Tables 3 and 4", RGMC_TABLE_3 + COPY_COLUMNS),
    "csa": (
        "Kim & Park — Table II (M1 … M4) and the shipped M4 with L_S weighted 0.1",
        KIM_PARK_TABLE_II + (("CIDEr-D", "cider_d"),),
    ),
    "alcap": ("ALCAP (He et al.) — α and lyrics", KIM_PARK_TABLE_II + (("CIDEr-D", "cider_d"),)),
    "blap": ("BLAP (Lanzendörfer et al.) — stage ablation", KIM_PARK_TABLE_II + (("CIDEr-D", "cider_d"),)),
}
# Rows of a paper's table that this CPU cannot train, with the measured reason; shown with no numbers.
NOT_RUN = {
    "muscaps": {
        "muscaps_scratch": "not run: needs a GPU. MusCaps' musicnn trained from scratch with the captioner "
        "(Table II, first row): one step of batch 32 took 102-107 s on one core "
        "(train/configs/muscaps_scratch.yaml), so an epoch of corpus v2's 10,000 clips is ~9 h and 10 "
        "epochs ~90 h. On a lent GPU it trains on a packed subset of the clips beside a matched control "
        "(python -m train.muscaps_scratch; the corpus' 5.5 GB do not travel to it)."
    }
}
# Rows of other checkpoints that a paper's own table carries (RGMC Table 3 starts with these baselines).
BASELINE_ROWS = {"rgmc": ("random", "nearest")}


def served_variant(results: dict) -> str | None:
    """The variant row a checkpoint serves in place of its paper's recipe (``python -m train.ship``)."""
    return results.get("shipped_row")


def row_label(name: str, row: str, results: dict) -> str:
    """A row of ``name``'s table as the tables show it: the served variant and the paper's recipe named."""
    if served_variant(results) is None:
        return row
    if row == served_variant(results):
        return f"{row} (shipped)"
    return f"{row} (the paper's recipe)" if row == f"{name}_paper" else row


def served_label(name: str, results: dict) -> str:
    """A checkpoint in the comparisons of all captioners: with the variant it serves, if it is one."""
    variant = served_variant(results)
    return name if variant is None else f"{name} (ships {variant})"


def each_metric_once(columns: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """(header, key) columns with a repeated metric (B4 and BLEU@4) kept under its first header."""
    headers: dict[str, str] = {}
    for header, key in columns:
        headers.setdefault(key, header)
    return tuple((header, key) for key, header in headers.items())


# Every metric of the three comparison tables; all of them read higher-is-better.
COMPARED_COLUMNS = each_metric_once(KIM_PARK_TABLE_II + RGMC_TABLE_3 + ATTRIBUTE_TABLE)
# Not compared with Random (the project's ruling): Random returns human captions, so its vocabulary is
# the human one and its novelty is 0 by construction.
STRUCTURAL_COLUMNS = frozenset({"vocab", "novel_v"})


def load(checkpoints: Path) -> dict[str, dict]:
    results = {}
    for name in ORDER:
        path = checkpoints / name / "results.json"
        if path.is_file():
            results[name] = json.loads(path.read_text())
    return results


def retrieval_table(clap: dict) -> str:
    keys = ("t2a_r1", "t2a_r5", "t2a_r10", "t2a_medr", "a2t_r1", "a2t_r5", "a2t_r10", "a2t_medr")
    lines = ["| ranking | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    for label, metrics in (
        ("embedded CLAP", clap.get("metrics", {})),
        ("random", clap.get("baseline_random", {})),
    ):
        cells = [
            f"{metrics[k]:.3f}" if isinstance(metrics.get(k), float) else str(metrics.get(k, "–"))
            for k in keys
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def runs_table(checkpoints: Path, name: str, results: dict) -> str:
    """How each row of a paper's table was made: the model evaluated, its epochs and training time."""
    training_file = checkpoints / name / "training.json"
    shipped = {
        "checkpoint": name,
        **(json.loads(training_file.read_text()) if training_file.is_file() else {}),
        "final_validation": final_validation(checkpoints / name),
        "validation_curve": validation_curve(checkpoints / name),
    }
    not_run = {
        row: {"note": note}
        for row, note in NOT_RUN.get(name, {}).items()
        if row not in results.get("ablations", {})
    }
    runs = {f"{name} (shipped)": shipped} | results.get("ablation_runs", {}) | not_run
    # a served variant is a row of its own (its run's record): the folder's top row would repeat it
    served_row = [] if served_variant(results) else [f"{name} (shipped)"]
    lines = [
        "| row | model evaluated | epochs | training (min) | last validation loss | validation NLL by epoch "
        "| evaluated with | code | note |",
        "|---|---|---:|---:|---|---|---|---|---|",
    ]
    for row in [*served_row, *results.get("ablations", {}), *not_run]:
        run = runs.get(row, {"note": "filed before runs were recorded"})
        if run.get("checkpoint") == name:  # the shipped model itself, perhaps with evaluation-time switches
            run = {**shipped, **run}
        seconds = run.get("train_time_s")
        switches = {**run.get("decoding", {}), **run.get("set", {})}
        cells = [
            row_label(name, row, results),
            run.get("checkpoint", "–"),
            str(run.get("epochs_run", "–")),
            f"{seconds / 60:.1f}" if seconds is not None else "–",
            validation_cell(run.get("final_validation")),
            curve_cell(run.get("validation_curve")),
            "–" if row in not_run else ", ".join(f"{k}={v}" for k, v in switches.items()) or "defaults",
            str(run.get("git_commit") or "–")[:7],
            run.get("note") or trained_elsewhere(run),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def trained_elsewhere(run: dict) -> str:
    """The note of a row trained away from the corpus on a subset (train.muscaps_scratch), else nothing."""
    if "device" not in run:
        return ""
    return (
        f"trained on {run['device']} on {run['n_train']:,} training clips (python -m train.muscaps_scratch)"
    )


def validation_cell(validation: dict | None) -> str:
    """The last epoch's validation loss, with its caption NLL where the loss has other terms."""
    if not validation or "loss" not in validation:
        return "–"
    cell = f"{validation['loss']:.3f}"
    if "nll" in validation and abs(validation["nll"] - validation["loss"]) > 1e-6:
        cell += f" (NLL {validation['nll']:.3f})"
    return cell


# A later epoch that lowers the validation NLL by less than this share counts as flat.
FLAT = 0.01


def curve_cell(curve: list[float] | None) -> str:
    """The validation NLL epoch by epoch and where it flattens: the first epoch that no later epoch lowers
    by FLAT or more; "still falling" when that is the last epoch (more epochs would likely help)."""
    if not curve:
        return "–"
    cell = " → ".join(f"{value:.3f}" for value in curve)
    if len(curve) < 2:
        return cell
    flat = next(
        epoch
        for epoch, value in enumerate(curve)
        if all(later > value * (1 - FLAT) for later in curve[epoch + 1 :])
    )
    if flat == len(curve) - 1:
        return f"{cell}: still falling ({(curve[-2] - curve[-1]) / curve[-2]:.1%} in the last epoch)"
    return f"{cell}: flat from epoch {flat + 1}"


def against_random_table(main: dict[str, dict], baseline: str = "random") -> str:
    """Per captioner, the columns on which it does not beat the Random-caption baseline (a tie does not beat)."""
    reference = main[baseline]
    lines = ["| system | beats Random on | does not beat Random on |", "|---|---:|---|"]
    for system, metrics in main.items():
        if system == baseline:
            continue
        compared = [
            (header, key)
            for header, key in COMPARED_COLUMNS
            if key not in STRUCTURAL_COLUMNS
            and isinstance(metrics.get(key), (int, float))
            and isinstance(reference.get(key), (int, float))
        ]
        behind = [
            f"{header} ({format_value(key, metrics[key])} vs {format_value(key, reference[key])})"
            for header, key in compared
            if metrics[key] <= reference[key]
        ]
        lines.append(
            f"| {system} | {len(compared) - len(behind)} of {len(compared)} | {'; '.join(behind) or '—'} |"
        )
    return "\n".join(lines)


LISTENING_INTRO = (
    "Per attribute: **floor** = the best single fixed caption (chosen on the training captions), **ceiling** = "
    "a linear probe on the model's own audio input as its decoder side receives it (fitted on train, chosen on "
    "validation), **caption** = its captions read back; in brackets the share of the floor-to-ceiling gap the "
    "captions close, (caption − floor) / (ceiling − floor), shown as – where the probe beats the fixed caption "
    "by less than 0.02 (then there is no gap to close). Random hears nothing: no ceiling. Made by "
    "`python -m train.evaluate` (train/listening.py); each block's `floor_captions` and `ceiling_input` say "
    "what was used."
)
SENSITIVITY_INTRO = (
    "A seeded subset of the split captioned again with another clip's audio (a derangement; the clip id and "
    "everything else kept), with noise (white/pink, three levels) and with silence. *Changed by swap*: the share "
    "of clips whose statement about each attribute changes (0 for a captioner that ignores its audio). "
    "*Mean score*: the five attribute scores averaged, with the clip's own audio and each replacement."
)


def listening_section(results: dict[str, dict]) -> list[str]:
    """The Listening table for the test split (and the unseen split where evaluated), shipped models first
    and then the ablation rows filed with them."""
    parts = []
    for key, title in (("listening", "test split"), ("listening_unseen", "unseen split")):
        blocks = {served_label(name, r): r[key] for name, r in results.items() if key in r}
        for name, r in results.items():
            blocks |= {
                f"{name}: {row_label(name, row, r)}": block
                for row, block in r.get(f"ablation_{key}", {}).items()
            }
        if not blocks:
            continue
        # blocks written before the reader recorded its version were read by reader 1
        older = [
            label for label, block in blocks.items() if block.get("attribute_reader", 1) < READER_VERSION
        ]
        parts += [
            f"## Listening ({title}): how much of what each captioner says comes from the audio",
            "",
            LISTENING_INTRO,
            "",
            listening_table(blocks),
            "",
            *(
                [
                    f'Mood of {", ".join(older)} read by an older attribute reader (it took "bright" and '
                    '"dark" about the sound for moods); `python -m train.evaluate` reads them again.',
                    "",
                ]
                if older
                else []
            ),
            "### Audio sensitivity",
            "",
            SENSITIVITY_INTRO,
            "",
            sensitivity_table(blocks),
            "",
        ]
    return parts


# Issue 30's goals, per captioner and split: each of these attributes closes at least half of its gap
# (the best captioner at least GOAL_BEST), it beats Random on every compared column, Nearest on CIDEr-D
GOAL_ATTRIBUTES = ("instrument_f1", "tempo", "mode", "drums")
GOAL_GAP, GOAL_BEST = 0.5, 0.8
# the rows of a table that may ship in place of the paper's recipe (train/pipeline.py, the levers)
LEVER_SUFFIXES = ("_analysis", "_attribute_words", "_musical_frames")


def goals_table(results: dict[str, dict], key: str) -> str:
    """Markdown: per shipped captioner and lever row, the gap each goal attribute closes on the split of
    ``key`` ("listening" or "listening_unseen"), ✓ at GOAL_GAP or more; how many compared columns beat
    Random and whether CIDEr-D beats Nearest (test split metrics)."""
    main = {name: r["metrics"] for name, r in results.items()}
    rows: dict[str, tuple[dict, dict | None]] = {}
    for name, r in results.items():
        if name in ("random", "nearest"):
            continue
        variant = served_variant(r)
        if key in r and variant is None:
            rows[name] = (r[key], r["metrics"])
        blocks = r.get(f"ablation_{key}", {})
        if variant is not None and f"{name}_paper" in blocks:  # the paper's recipe first, then the variants
            blocks = {f"{name}_paper": blocks[f"{name}_paper"], **blocks}
        for row, block in blocks.items():
            if row.endswith(LEVER_SUFFIXES) or row in (variant, f"{name}_paper" if variant else None):
                rows[row_label(name, row, r)] = (block, r.get("ablations", {}).get(row))
    header = [ATTRIBUTE_LABELS[a] for a in GOAL_ATTRIBUTES]
    lines = [
        "| model | " + " | ".join(header) + " | changed by swap | beats Random on | CIDEr-D vs Nearest |",
        "|---|" + "---:|" * (len(header) + 3),
    ]
    for name, (block, metrics) in rows.items():
        gaps = [gap_closed(block["attributes"][a]) for a in GOAL_ATTRIBUTES]
        cells = ["–" if g is None else f"{g:.2f} {'✓' if g >= GOAL_GAP else '✗'}" for g in gaps]
        swap = (block.get("audio_sensitivity") or {}).get("swap_changed", {}).get("overall")
        cells.append("–" if swap is None else f"{swap:.2f}")
        if metrics and "random" in main:
            against = against_random_table({"random": main["random"], name: metrics}).splitlines()[-1]
            cells.append(against.split(" | ")[1])
        else:
            cells.append("–")
        nearest = main.get("nearest", {}).get("cider_d")
        if metrics and nearest is not None:
            ahead = metrics["cider_d"] > nearest
            cider = f"{format_value('cider_d', metrics['cider_d'])} vs {format_value('cider_d', nearest)}"
            cells.append(f"{cider} {'✓' if ahead else '✗'}")
        else:
            cells.append("–")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def goals_section(results: dict[str, dict]) -> list[str]:
    parts = []
    for key, title in (("listening", "test split"), ("listening_unseen", "unseen split")):
        if not any(key in r or r.get(f"ablation_{key}") for r in results.values()):
            continue
        parts += [
            f"## Issue 30's goals ({title}): does each captioner say what its audio carries?",
            "",
            f"Share of the floor-to-ceiling gap closed (the listening table below), ✓ at {GOAL_GAP} or more; "
            f"the best captioner should reach {GOAL_BEST}. Rows: the shipped checkpoints and the variant rows "
            "that may ship in their place (analysis-conditioned, attribute words weighted, musical frames). "
            "*Changed by swap*: the share of statements that change with another clip's audio, averaged over "
            "the attributes. The last two columns are the test split's metrics.",
            "",
            goals_table(results, key),
            "",
        ]
    return parts


def which_ships(checkpoint: Path) -> list[str]:
    """The paragraph saying which candidate the checkpoint serves and why (its shipped.json), if chosen."""
    path = checkpoint / "shipped.json"
    if not path.is_file():
        return []
    shipped = json.loads(path.read_text())
    served = (
        "the paper's recipe" if shipped["ships"] == shipped["paper"] else f"the variant `{shipped['ships']}`"
    )
    return [
        f"**Ships**: {served}, chosen by `python -m train.ship` on {shipped['clips']} {shipped['split']} clips "
        f"by the README's rule: {shipped['why']}.",
        "",
    ]


def render(checkpoints: Path) -> str:
    results = load(checkpoints)
    main = {served_label(name, r): r["metrics"] for name, r in results.items()}
    n = {r.get("n") for r in results.values()}
    parts = [
        "# Results on the synthetic test split",
        "",
        f"Generated by `python -m train.tables` from `checkpoints/*/results.json` (test split, n = "
        f"{', '.join(str(x) for x in sorted(v for v in n if v))}). Scores ×100 as in the papers; CIDEr-D ×100 too. "
        "BS = BERTScore with MiniLM (not roberta-large); SPICE/SPIDEr need Stanford CoreNLP, unavailable here. "
        "Each row holds the numbers of the evaluation that filed it: a shipped row's come from its checkpoint's "
        "last `python -m train.evaluate`, an ablation row's from its own run (its `code` column), read with the "
        "attribute reader of that commit.",
        "",
        "## All captioners",
        "",
        "### Kim & Park Table II columns",
        "",
        markdown_table(main, KIM_PARK_TABLE_II),
        "",
        "### RGMC Table 3 columns",
        "",
        markdown_table(main, RGMC_TABLE_3),
        "",
        "### Attribute accuracy (is what the caption says true of the clip?)",
        "",
        markdown_table(main, ATTRIBUTE_TABLE),
        "",
    ]
    if "random" in main:
        parts += [
            "### Against the Random-caption baseline",
            "",
            "Every column above, each higher-is-better, except the structural Vocab and Novel_v: Random returns "
            "human captions, so its vocabulary is the human one and its novelty 0 by construction "
            "(docs/METRICS.md). A captioner beats Random on a column only if it scores strictly higher.",
            "",
            against_random_table(main),
            "",
        ]
    parts += goals_section(results)
    parts += listening_section(results)
    for name, (title, columns) in PAPER_TABLES.items():
        if name not in results:
            continue
        rows = {f"{b} (baseline)": results[b]["metrics"] for b in BASELINE_ROWS.get(name, ()) if b in results}
        if served_variant(results[name]) is None:
            rows[f"{name} (shipped)"] = results[name]["metrics"]
        rows |= {
            row_label(name, row, results[name]): m for row, m in results[name].get("ablations", {}).items()
        }
        rows |= {row: {} for row in NOT_RUN.get(name, {}) if row not in rows}
        parts += [
            f"## {title}",
            "",
            *which_ships(checkpoints / name),
            markdown_table(rows, columns),
            "",
            markdown_table(rows, ATTRIBUTE_TABLE),
            "",
            runs_table(checkpoints, name, results[name]),
            "",
        ]
    clap_path = checkpoints / "clap" / "results.json"
    if clap_path.is_file():
        clap = json.loads(clap_path.read_text())
        parts += [
            f"## Embedded CLAP retrieval (test split, pool of {clap.get('n')} clips)",
            "",
            retrieval_table(clap),
        ]
    analysis = REPO / "docs" / "analysis_accuracy.json"  # python -m train.diagnostics.analysis_accuracy
    if analysis.is_file():
        from train.diagnostics.analysis_accuracy import markdown as analysis_tables

        parts += ["", analysis_tables(json.loads(analysis.read_text()))]
    return "\n".join(parts).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.tables", description=__doc__)
    parser.add_argument("--checkpoints", default=str(REPO / "checkpoints"))
    parser.add_argument("--out", default=str(REPO / "docs" / "RESULTS.md"))
    args = parser.parse_args(argv)
    text = render(Path(args.checkpoints))
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
