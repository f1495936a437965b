"""``python -m train.model_card CHECKPOINT...`` — the short model card (README.md) of a checkpoint folder.

Written from what the folder holds (config.json, training.json, results.json and, once ``python -m
train.ship`` has chosen what the folder serves, shipped.json), so it always agrees with the numbers beside
it; ``python -m train``, ``python -m train.evaluate`` and ``python -m train.ship`` refresh it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

PAPERS = {
    "random": "Random training caption — floor baseline (Srivatsan et al., IJCAI 2024, Table 3)",
    "nearest": "Nearest-neighbour caption in CLAP audio space — baseline (Srivatsan et al., IJCAI 2024, Table 3)",
    "muscaps": "Manco et al., MusCaps: Generating Captions for Music Audio, IJCNN 2021",
    "rgmc": "Srivatsan et al., Retrieval Guided Music Captioning via Multimodal Prefixes, IJCAI 2024",
    "blap": "Lanzendörfer et al., BLAP: Bootstrapping Language-Audio Pre-training for Music Captioning, 2024",
    "alcap": "He et al., ALCAP: Alignment-Augmented Music Captioner, EMNLP 2023",
    "csa": "Kim & Park, Data-Efficient Music Captioning via Contrastive and Semantic Alignment",
    "clap": "Embedded CLAP (contrastive audio-text model trained here; musicnn + chroma/tempo audio tower, MiniLM text)",
}
SHOWN = ("bleu1", "bleu4", "meteor", "rouge_l", "cider_d", "bertscore_minilm", "clap_at", "clap_tt",
         "attr_instrument_f1", "attr_tempo_acc", "attr_mode_acc", "attr_drums_acc", "attr_mood_acc",
         "t2a_r1", "t2a_r10", "a2t_r1", "a2t_r10", "t2a_medr", "a2t_medr")  # fmt: skip


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def which_ships(shipped: dict) -> list[str]:
    """What shipped.json says: the model this folder serves among its candidates, and why."""
    paper, ships = shipped["paper"], shipped["ships"]
    candidates = shipped["candidates"]
    attributes = list(candidates[paper]["margins"])

    def described(name: str) -> str:
        changes = " ".join(candidates[name].get("trained_with") or [])
        decoded = " ".join(
            f"{key}={value}" for key, value in (candidates[name].get("decoded_with") or {}).items()
        )
        told = [f"the paper's recipe with `{changes}`"] if changes else []
        told += [f"decoded with `{decoded}`"] if decoded else []
        return f"`{name}`" + (f" ({', '.join(told)})" if told else "")

    if ships == paper:
        headline = f"**Which ships and why**: the paper's recipe, `{paper}`: {shipped['why']}."
    else:
        headline = (
            f"**Which ships and why**: the variant {described(ships)}, in place of the paper's recipe "
            f"(`{paper}`, kept at `{shipped.get('paper_kept_at', '?')}` and filed as the row "
            f"`{shipped['paper_row']}` in results.json): {shipped['why']}."
        )
    lines = [
        headline,
        "",
        f"The rule (`python -m train.ship`, {shipped['clips']} {shipped['split']} clips): {shipped['rule']}",
        "",
        "| candidate | " + " | ".join(f"{key} margin" for key in attributes) + " | mean | CIDEr-D |",
        "|---|" + "---:|" * (len(attributes) + 2),
    ]
    for name, candidate in candidates.items():
        margins = " | ".join(f"{candidate['margins'][key]:+.3f}" for key in attributes)
        mark = " (ships)" if name == ships else "" if candidate["cider_d_allowed"] else " (CIDEr-D too low)"
        lines.append(
            f"| {name}{mark} | {margins} | {candidate['mean_margin']:+.3f} | {candidate['cider_d']:.3f} |"
        )
    return lines + [""]


def render(checkpoint: Path) -> str:
    config = _read(checkpoint / "config.json")
    training = _read(checkpoint / "training.json")
    results = _read(checkpoint / "results.json")
    shipped = _read(checkpoint / "shipped.json")
    architecture = config.get("architecture", checkpoint.name)
    lines = [
        f"# {checkpoint.name}",
        "",
        f"**Architecture**: `{architecture}` — {PAPERS.get(architecture, '')}",
        "",
    ]
    if shipped:
        lines += which_ships(shipped)
    if training:
        lines += [
            "**Data**: the synthetic music–caption corpus (`python -m train.corpus`, General MIDI renders of POP909, "
            f"Nottingham, OpenMSX and music21 works), {training.get('n_train', '?')} training clips, corpus "
            f"`{training.get('corpus', '?')}`.",
            "",
        ]
        if "config_file" in training:
            overrides = " ".join(training.get("overrides") or [])
            lines += [
                f"**Trained by**: `python -m train {architecture} --config {training['config_file']}"
                f"{' ' + overrides if overrides else ''}` at commit `{training.get('git_commit', '?')[:12]}`; "
                f"{training.get('epochs_run', '?')} epochs in {training.get('train_time_s', '?')} s "
                f"({training.get('train_samples_per_s', '?')} samples/s, {training.get('torch_threads', '?')} thread(s)), "
                f"stopped by {training.get('stopped_by', '?')}; best validation loss "
                f"{training.get('best_validation_loss', float('nan')):.4f}.",
                "",
            ]
    if config.get("decoding"):
        settings = ", ".join(f"{k}={v}" for k, v in config["decoding"].items() if v not in (None, False))
        lines += [f"**Decoding defaults**: {settings}.", ""]
    metrics = results.get("metrics") or {}
    if metrics:
        lines += [
            f"**Test split** (n = {results.get('n')}; `python -m train.evaluate {checkpoint.name}`):",
            "",
        ]
        lines += ["| metric | value |", "|---|---:|"]
        for key in SHOWN:
            if key in metrics:
                value = metrics[key]
                lines.append(
                    f"| {key} | {value:.4f} |" if isinstance(value, float) else f"| {key} | {value} |"
                )
        if results.get("ablations"):
            lines += [
                "",
                f"Ablation rows in results.json: {', '.join(results['ablations'])} (see docs/RESULTS.md).",
            ]
        lines.append("")
    lines += [
        "**Limits**: trained on synthetic renders only; it describes instruments, tempo, key, mood and style "
        "of such renders, and real recordings less well. Not comparable with numbers published on MusicCaps.",
    ]
    return "\n".join(lines) + "\n"


def write_model_card(checkpoint: str | Path) -> Path:
    checkpoint = Path(checkpoint)
    path = checkpoint / "README.md"
    text = render(checkpoint)
    if not path.is_file() or path.read_text() != text:  # an unchanged card is not rewritten
        path.write_text(text)
    return path


def main(argv: list[str] | None = None) -> int:
    for folder in argv if argv is not None else sys.argv[1:]:
        print(write_model_card(folder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
