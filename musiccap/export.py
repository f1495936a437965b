"""A comparison written out: JSON rows, plain text, and SRT / WebVTT subtitles.

One module for the formats the CLI prints (``musiccap caption --format json|text|srt|vtt``) and the
Compare tab offers as downloads, so both write the same thing from the same typed results
(``musiccap.studio.ModelCaption`` and ``WindowComparison``).

Subtitles have one cue per window, at the window's own times in the file (its real audio: the
padding of a short last window is not part of the cue), and within a cue one line per captioner,
``model: caption``, in the studio's order. Captions are model output, so they are made safe for
each format: whitespace (line breaks included) is collapsed so a caption can never end a cue
early; WebVTT escapes ``&``, ``<`` and ``>`` (which also rules out ``-->`` in cue text), and SRT,
which has no escape syntax while players read ``<i>``-style tags, shows angle brackets as ``‹ ›``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from musiccap.studio import ModelCaption, WindowComparison

FORMATS = ("json", "text", "srt", "vtt")
SUBTITLE_FORMATS = ("srt", "vtt")


def caption_row(file: str, caption: ModelCaption) -> dict[str, Any]:
    """One captioner on one window, as a ``musiccap caption --json`` line (``DESIGN.md`` contract)."""
    if caption.result is None:
        raise ValueError(f"{caption.model} has no caption for {caption.window.label}: {caption.error}")
    row = {"file": file, **caption.result.to_json()}
    row["clap_similarity"] = None if caption.clap_similarity is None else round(caption.clap_similarity, 4)
    row["latency_s"] = round(caption.latency_s, 4)
    # the fact check against the app's own analysis (musiccap/analysis.py; docs/METRICS.md)
    row["facts"] = caption.facts
    row["grounding"] = None if caption.grounding is None else round(caption.grounding, 4)
    return row


def result_rows(file: str, comparisons: Iterable[WindowComparison]) -> list[dict[str, Any]]:
    """Every caption of a file, window by window (failed captioners are left out, as in the CLI)."""
    return [
        caption_row(file, caption)
        for comparison in comparisons
        for caption in comparison.captions
        if caption.result is not None
    ]


def json_document(rows: list[dict[str, Any]]) -> str:
    """The whole result as one JSON array of caption rows."""
    return json.dumps(rows, indent=1, ensure_ascii=False) + "\n"


def text_line(caption: ModelCaption) -> str:
    """``[00:00–00:10] csa      A caption.``: what ``--format text`` prints per caption."""
    return f"[{caption.window.label}] {caption.model:8s} {caption.result.text}"


@dataclass
class Cue:
    start_s: float
    end_s: float
    lines: list[tuple[str, str]]  # (model, caption), unescaped


def cues(comparisons: Iterable[WindowComparison]) -> list[Cue]:
    """One cue per window in time order; a window where every captioner failed has none."""
    result = []
    for comparison in sorted(comparisons, key=lambda c: c.window.start_s):
        lines = [(c.model, c.result.text) for c in comparison.captions if c.result is not None]
        if lines:
            result.append(Cue(comparison.window.start_s, comparison.window.end_s, lines))
    return result


def timestamp(seconds: float, fraction_separator: str) -> str:
    """``HH:MM:SS,mmm`` (SRT, separator ``,``) or ``HH:MM:SS.mmm`` (WebVTT, ``.``), rounded to the ms."""
    if seconds < 0:
        raise ValueError(f"a cue time cannot be negative: {seconds}")
    milliseconds = round(seconds * 1000)
    hours, milliseconds = divmod(milliseconds, 3_600_000)
    minutes, milliseconds = divmod(milliseconds, 60_000)
    whole, milliseconds = divmod(milliseconds, 1000)
    return f"{hours:02d}:{minutes:02d}:{whole:02d}{fraction_separator}{milliseconds:03d}"


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def srt_text(text: str) -> str:
    return _one_line(text).replace("<", "‹").replace(">", "›")


def webvtt_text(text: str) -> str:
    return _one_line(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def srt(comparisons: Iterable[WindowComparison]) -> str:
    blocks = []
    for number, cue in enumerate(cues(comparisons), start=1):
        times = f"{timestamp(cue.start_s, ',')} --> {timestamp(cue.end_s, ',')}"
        lines = [f"{srt_text(model)}: {srt_text(text)}" for model, text in cue.lines]
        blocks.append("\n".join([str(number), times, *lines]))
    return "".join(block + "\n\n" for block in blocks)


def webvtt(comparisons: Iterable[WindowComparison]) -> str:
    blocks = ["WEBVTT"]
    for number, cue in enumerate(cues(comparisons), start=1):
        times = f"{timestamp(cue.start_s, '.')} --> {timestamp(cue.end_s, '.')}"
        lines = [f"{webvtt_text(model)}: {webvtt_text(text)}" for model, text in cue.lines]
        blocks.append("\n".join([str(number), times, *lines]))
    return "\n\n".join(blocks) + "\n"
