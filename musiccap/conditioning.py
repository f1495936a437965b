"""The analysis as a captioner's input: the analysis-conditioned variants of issue 30 (never a paper's row).

A captioner built with ``analysis_conditioning`` reads, beside its audio encoder's tokens, one more memory
token: a projection of the clip's analysis (``musiccap.analysis``: tempo and its class, mode, drums and the
instrument families, as the app's own ears hear them). The analysis is computed once per window and
shared through the clip (``ANALYSIS``), with the fact check that reads it too.

Every architecture reads the vector the same way (:class:`AnalysisToken`), from the same place: a clip at
captioning time (:func:`clip_analysis_batch`), a training item's precomputed analysis at training time
(:func:`item_analysis_batch`). Training items carry analyses made by probes that never saw their clip
(``python -m train.analysis_vectors``: cross-fitted on the train split), so the decoder learns how far
to trust an analysis as wrong as it will be on new music.

The fact check of such a captioner is not independent evidence: its caption repeats the analysis it
was given, and agrees with it by construction. The listening table (truth, not the analysis) is what
tells whether it helps.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from musiccap.analysis import Analysis, analyze
from musiccap.attributes import FAMILIES
from musiccap.clip import ANALYSIS, Clip

TEMPO_CLASSES = ("slow", "medium", "fast")
# The vector's fields, in order. Key is left out on purpose: the training's pitch-shift augmentation
# transposes the audio features and the caption's key names, and an analysed key would contradict them.
ANALYSIS_FIELDS = (
    "log2_bpm_over_100",
    *(f"tempo_{name}" for name in TEMPO_CLASSES),
    "tempo_confidence",
    "minor",
    "drums",
    *(f"family_{family}" for family in FAMILIES),
)
ANALYSIS_SIZE = len(ANALYSIS_FIELDS)


def analysis_vector(analysis: Analysis) -> np.ndarray:
    """[ANALYSIS_SIZE] float32: the analysis's estimates and how sure it is of each."""
    if analysis.drums is None:
        raise ValueError(
            "the analysis has no probes (checkpoints/analysis/probes.safetensors): no drums or families"
        )
    mode_confidence = analysis.confidence.get("mode", 0.5)
    minor = mode_confidence if analysis.mode == "minor" else 1.0 - mode_confidence
    return np.array(
        [
            np.log2(max(analysis.tempo_bpm, 1.0) / 100.0),
            *(float(analysis.tempo_class == name) for name in TEMPO_CLASSES),
            analysis.confidence.get("tempo", 0.0),
            minor,
            analysis.drums,
            *(analysis.families.get(family, 0.0) for family in FAMILIES),
        ],
        dtype=np.float32,
    )


def clip_analysis(clip: Clip) -> Analysis:
    """The clip's analysis, computed once (the fact check and every conditioned captioner share it)."""
    return clip.get(ANALYSIS, analyze)


def clip_analysis_batch(clips: list[Clip]) -> torch.Tensor:
    """[B, ANALYSIS_SIZE] for clips being captioned."""
    return torch.from_numpy(np.stack([analysis_vector(clip_analysis(clip)) for clip in clips]))


def item_analysis_batch(items: list) -> torch.Tensor:
    """[B, ANALYSIS_SIZE] for training items (``FeatureItem.analysis``)."""
    missing = [item.id for item in items if getattr(item, "analysis", None) is None]
    if missing:
        raise ValueError(
            f"{len(missing)} training clips have no analysis (e.g. {missing[0]}): an analysis-conditioned "
            "model trains on the corpus's cross-fitted analyses, `python -m train.analysis_vectors --corpus DIR`"
        )
    return torch.from_numpy(np.stack([analysis_vector(item.analysis) for item in items]))


class AnalysisToken(nn.Module):
    """The analysis vector as one memory token of the decoder's width."""

    def __init__(self, width: int):
        super().__init__()
        self.projection = nn.Linear(ANALYSIS_SIZE, width)
        self.norm = nn.LayerNorm(width)

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        """[B, ANALYSIS_SIZE] -> [B, 1, width]"""
        return self.norm(self.projection(vectors.to(self.projection.weight.dtype)))[:, None]

    def append_to(
        self, memory: torch.Tensor, mask: torch.Tensor, vectors: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``memory`` [B, S, width] and its ``mask`` [B, S] with the analysis token as position S."""
        return (
            torch.cat([memory, self(vectors)], dim=1),
            torch.cat([mask, torch.ones(len(mask), 1, dtype=mask.dtype)], dim=1),
        )
