"""The About tab: each architecture's paper, what it was trained on here, and its numbers."""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr

from musiccap.metrics.listening import listening_table
from musiccap.studio import Studio

PAPERS = {
    "random": "Random training caption — the floor baseline of the RGMC paper (Table 3).",
    "nearest": "Nearest neighbour — the caption of the training clip closest in CLAP audio space (RGMC, Table 3).",
    "muscaps": "Manco et al., *MusCaps: Generating Captions for Music Audio*, IJCNN 2021.",
    "rgmc": "Srivatsan et al., *Retrieval Guided Music Captioning via Multimodal Prefixes*, IJCAI 2024.",
    "blap": "Lanzendörfer et al., *BLAP: Bootstrapping Language-Audio Pre-training for Music Captioning*, 2024.",
    "alcap": "He et al., *ALCAP: Alignment-Augmented Music Captioner*, EMNLP 2023.",
    "csa": "Kim & Park, *Data-Efficient Music Captioning via Contrastive and Semantic Alignment*.",
}
COLUMNS = [
    ("bleu1", "B1"),
    ("bleu4", "B4"),
    ("meteor", "M"),
    ("rouge_l", "R-L"),
    ("cider_d", "CIDEr-D"),
    ("bertscore_minilm", "BS-MiniLM"),
    ("clap_at", "CLAP A-T"),
    ("vocab", "Vocab"),
    ("novel_c", "Novel_c"),
    ("attr_instrument_f1", "instr. F1"),
    ("attr_tempo_acc", "tempo"),
    ("attr_mode_acc", "mode"),
]
LIMITS = """
### Honest limits of the embedded profile
- Every model here was trained on a **synthetic corpus**: General MIDI renders of real compositions
  (POP909, Nottingham, OpenMSX, the music21 corpus), captioned from the attributes that made them.
  They describe instruments, tempo, key, mood and style of such renders well, and real recordings less so.
- The CLAP used for retrieval, alignment losses and the similarity chart is trained here on that corpus
  (musicnn + chroma/tempo features, MiniLM text tower); its scores are not LAION-CLAP scores.
- BERTScore is computed with MiniLM, not roberta-large; SPICE/SPIDEr are unavailable (no CoreNLP here).
- The **full profile** (LAION CLAP, GPT-2, Flan-T5, BART-base trained on MusicCaps) runs through the same
  code with `from_pretrained` from the Hugging Face Hub and needs a GPU to be interactive.
"""


def which_ships(checkpoints_dir: Path, name: str) -> str:
    """Which of the architecture's candidates the app serves and why (shipped.json, written by
    ``python -m train.ship`` by the README's rule), or "" where none was chosen."""
    path = checkpoints_dir / name / "shipped.json"
    if not path.is_file():
        return ""
    shipped = json.loads(path.read_text())
    if shipped["ships"] == shipped["paper"]:
        return f"Serves the paper's recipe: {shipped['why']}."
    decoded = (shipped["candidates"].get(shipped["ships"]) or {}).get("decoded_with")
    decoding = " ".join(f"{key}={value}" for key, value in decoded.items()) if decoded else ""
    return (
        f"Serves the variant `{shipped['ships']}`"
        + (f", decoded with `{decoding}`," if decoding else "")
        + f" in place of the paper's recipe (still a row of its table, `{shipped['paper_row']}`): "
        + f"{shipped['why']}."
    )


def results_table(checkpoints_dir: Path, names: list[str]) -> str:
    header = "| model | n | " + " | ".join(label for _, label in COLUMNS) + " |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 2)]
    for name in names:
        path = checkpoints_dir / name / "results.json"
        if not path.is_file():
            continue
        results = json.loads(path.read_text())
        metrics = results.get("metrics", {})
        cells = []
        for key, _ in COLUMNS:
            value = metrics.get(key)
            cells.append(
                "—" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))
            )
        lines.append(f"| {name} | {results.get('n', '')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def listening_markdown(checkpoints_dir: Path, names: list[str]) -> str:
    """The Listening table of docs/RESULTS.md for the models shown: floor / ceiling / caption per attribute."""
    blocks = {}
    for name in names:
        path = checkpoints_dir / name / "results.json"
        if path.is_file() and "listening" in (results := json.loads(path.read_text())):
            blocks[name] = results["listening"]
    if not blocks:
        return ""
    return "\n".join(
        [
            "## Does it hear the music? (test split)",
            "",
            "Per attribute: the best single fixed caption (floor), a linear probe on the model's own audio "
            "input (ceiling), and what its captions state (caption); in brackets the share of the gap "
            "from floor to ceiling the captions close.",
            "",
            listening_table(blocks),
        ]
    )


def build_about_tab(studio: Studio) -> None:
    names = list(studio.captioners)
    parts = ["## The captioners", ""]
    for name in names:
        shipped = which_ships(studio.checkpoints_dir, name)
        parts.append(f"- **{name}** — {PAPERS.get(name, '')}" + (f" {shipped}" if shipped else ""))
    parts += ["", "## Results on the synthetic test split", "", results_table(studio.checkpoints_dir, names)]
    if listening := listening_markdown(studio.checkpoints_dir, names):
        parts += ["", listening]
    parts += ["", LIMITS]
    gr.Markdown("\n".join(parts))
    for name in names:
        card = studio.checkpoints_dir / name / "README.md"
        if card.is_file():
            with gr.Accordion(f"Model card: {name}", open=False):
                gr.Markdown(card.read_text())
