"""Paper-style result tables (Markdown + JSON) from `compute_metrics` outputs, one row per system.

- Kim & Park Table II: B1-B4, M, R-L, BS, Vocab, Novel_v, Novel_c.
- RGMC Table 3: CIDEr, BLEU@4, METEOR, ROUGE-L, CLAP A-T, CLAP T-T (+ SPICE/SPIDEr, unavailable).
- Attribute accuracy (synthetic corpus): instrument P/R/F1, tempo, mode, drums, mood.

Scores in [0, 1] print x100 with one decimal as the papers do (CIDEr-D is already x10 in
coco-caption and prints x100 too, e.g. 0.33 -> 33.0); counts print as integers. A metric that was
not computed prints "–"; SPICE/SPIDEr print "n/a" with the reason under the table.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from musiccap.metrics import UNAVAILABLE

# (column header, metrics key)
KIM_PARK_TABLE_II: tuple[tuple[str, str], ...] = (
    ("B1", "bleu1"), ("B2", "bleu2"), ("B3", "bleu3"), ("B4", "bleu4"), ("M", "meteor"), ("R-L", "rouge_l"),
    ("BS (MiniLM)", "bertscore_minilm"), ("Vocab", "vocab"), ("Novel_v", "novel_v"), ("Novel_c", "novel_c"),
)  # fmt: skip
RGMC_TABLE_3: tuple[tuple[str, str], ...] = (
    ("CIDEr-D", "cider_d"), ("BLEU@4", "bleu4"), ("METEOR", "meteor"), ("ROUGE-L", "rouge_l"),
    ("SPICE", "spice"), ("SPIDEr", "spider"), ("CLAP A-T", "clap_at"), ("CLAP T-T", "clap_tt"),
    ("SBERT-sim", "sbert_sim"),
)  # fmt: skip
ATTRIBUTE_TABLE: tuple[tuple[str, str], ...] = (
    ("Instr. P", "attr_instrument_precision"), ("Instr. R", "attr_instrument_recall"),
    ("Instr. F1", "attr_instrument_f1"), ("Tempo", "attr_tempo_acc"), ("Mode", "attr_mode_acc"),
    ("Drums", "attr_drums_acc"), ("Mood", "attr_mood_acc"),
)  # fmt: skip
COUNT_KEYS = frozenset({"vocab", "unk", "repeats"})
TABLES = {
    "Kim & Park Table II": KIM_PARK_TABLE_II,
    "RGMC Table 3": RGMC_TABLE_3,
    "Attribute accuracy": ATTRIBUTE_TABLE,
}


def format_value(key: str, value: float | int | None) -> str:
    if key in UNAVAILABLE:
        return "n/a"
    if value is None:
        return "–"
    if key in COUNT_KEYS:
        return str(int(value))
    return f"{100 * value:.1f}"


def markdown_table(results: Mapping[str, Mapping[str, float]], columns: tuple[tuple[str, str], ...]) -> str:
    lines = [
        "| system | " + " | ".join(header for header, _ in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for system, metrics in results.items():
        cells = [format_value(key, metrics.get(key)) for _, key in columns]
        lines.append(f"| {system} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_tables(results: Mapping[str, Mapping[str, float]], *, compat: str | None = None) -> str:
    """All tables; a table whose metrics no system has (e.g. attributes on MusicCaps) is left out."""
    sections = []
    for title, columns in TABLES.items():
        keys = [key for _, key in columns if key not in UNAVAILABLE]
        if not any(key in metrics for metrics in results.values() for key in keys):
            continue
        sections.append(f"### {title}\n\n{markdown_table(results, columns)}")
    notes = [f"{key.upper()}: n/a — {reason}." for key, reason in UNAVAILABLE.items()]
    notes.append(
        "BS = BERTScore F1 with all-MiniLM-L6-v2 tokens, not comparable with roberta-large BERTScore."
    )
    if compat == "lpmc":
        notes.append("BLEU/METEOR/ROUGE-L are LP-MusicCaps-compatible (HF evaluate BLEU, nltk METEOR 1.0).")
    else:
        notes.append("BLEU/METEOR/ROUGE-L/CIDEr-D are coco-caption (PTB tokens, METEOR 1.5).")
    return "\n\n".join(sections) + "\n\n" + "\n".join(f"- {note}" for note in notes) + "\n"


def json_tables(results: Mapping[str, Mapping[str, float]]) -> str:
    """{table title: {"columns": [...], "rows": {system: {column: value | null | "unavailable"}}}}."""
    tables = {}
    for title, columns in TABLES.items():
        rows = {
            system: {
                header: "unavailable" if key in UNAVAILABLE else metrics.get(key) for header, key in columns
            }
            for system, metrics in results.items()
        }
        tables[title] = {"columns": [header for header, _ in columns], "rows": rows}
    return json.dumps(tables, indent=2)
