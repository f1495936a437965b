"""The listening table (docs/METRICS.md, "listening"): floor, ceiling and caption per attribute, and how much
of the floor-to-ceiling gap a captioner's captions close. ``train/listening.py`` computes the blocks
``python -m train.evaluate`` writes into results.json; this module only lays them out (docs/RESULTS.md,
the About tab).
"""

from __future__ import annotations

ATTRIBUTES = ("instrument_f1", "tempo", "mode", "drums", "mood")
ATTRIBUTE_LABELS = {
    "instrument_f1": "instr. F1",
    "tempo": "tempo",
    "mode": "mode",
    "drums": "drums",
    "mood": "mood",
}


# Below this the probe hears no more than a fixed caption knows, and the share of the gap is noise
# (a 0.005 gap turns a 0.27-point shortfall into "−53"): it is shown as "–".
MIN_GAP = 0.02


def gap_closed(scores: dict) -> float | None:
    """(caption − floor) / (ceiling − floor): 0 at the best fixed caption, 1 at the linear probe on the
    captioner's own audio input; None without a ceiling or when the ceiling does not beat the floor by
    ``MIN_GAP``."""
    if "ceiling" not in scores or scores["ceiling"] - scores["floor"] < MIN_GAP:
        return None
    return (scores["caption"] - scores["floor"]) / (scores["ceiling"] - scores["floor"])


def _cell(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _mean(scores: dict) -> str:
    return _cell(sum(scores[a] for a in ATTRIBUTES) / len(ATTRIBUTES))


def listening_table(blocks: dict[str, dict]) -> str:
    """Markdown: one row per model, per attribute floor / ceiling / caption and the gap closed."""
    header = ["model"] + [f"{ATTRIBUTE_LABELS[a]}: floor / ceiling / caption (gap)" for a in ATTRIBUTES]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * len(ATTRIBUTES)]
    for name, block in blocks.items():
        cells = [name]
        for attribute in ATTRIBUTES:
            scores = block["attributes"][attribute]
            gap = gap_closed(scores)
            cells.append(
                f"{_cell(scores['floor'])} / {_cell(scores.get('ceiling'))} / {_cell(scores['caption'])}"
                f" ({_cell(gap) if gap is not None else '–'})"
            )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sensitivity_table(blocks: dict[str, dict]) -> str:
    """Markdown: per model, the share of statements that change with swapped audio, and the mean
    attribute score with its own audio, swapped audio, noise and silence."""
    lines = [
        "| model | clips | changed by swap: "
        + " / ".join(ATTRIBUTE_LABELS[a] for a in ATTRIBUTES)
        + " | changed overall | mean score: own audio | swapped | noise | silence |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, block in blocks.items():
        sensitivity = block.get("audio_sensitivity") or {}
        if not sensitivity:
            continue
        changed = sensitivity["swap_changed"]
        means = [_mean(sensitivity[key]) for key in ("original", "swap", "noise", "silence")]
        cells = [name, str(sensitivity["n"]), " / ".join(_cell(changed[a]) for a in ATTRIBUTES)]
        cells += [_cell(changed["overall"]), *means]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
