"""Plotly figures of the studio: attention heatmaps and the CLAP similarity chart."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from musiccap.audio import format_time


def attention_heatmap(
    tokens: list[str], matrix: np.ndarray | None, times: np.ndarray | None, title: str, offset_s: float = 0.0
) -> go.Figure:
    """Generated tokens (rows, top to bottom in order) × audio time in seconds (columns)."""
    figure = go.Figure()
    if matrix is None or times is None or len(tokens) == 0:
        figure.add_annotation(text="this captioner has no attention over audio time", showarrow=False)
        figure.update_layout(title=title, height=260, xaxis_visible=False, yaxis_visible=False)
        return figure
    matrix = np.asarray(matrix, dtype=np.float32)[: len(tokens)]
    seconds = np.asarray(times, dtype=np.float32) + offset_s
    labels = [f"{i + 1}. {t}" for i, t in enumerate(tokens[: len(matrix)])]
    figure.add_trace(
        go.Heatmap(
            z=matrix,
            x=seconds,
            y=labels,
            colorscale="Viridis",
            colorbar={"title": "weight"},
            hovertemplate="%{y}<br>%{x:.2f} s<br>weight %{z:.3f}<extra></extra>",
        )
    )
    figure.update_layout(
        title=title,
        height=max(260, 18 * len(labels) + 120),
        xaxis_title=f"time (s) — window starts at {format_time(offset_s)}",
        yaxis={"autorange": "reversed", "type": "category"},
        margin={"l": 10, "r": 10, "t": 50, "b": 40},
    )
    return figure


def similarity_chart(labels: list[str], scores: list[float], title: str = "CLAP audio–text similarity"):
    figure = go.Figure(
        go.Bar(
            x=scores,
            y=labels,
            orientation="h",
            text=[f"{s:.3f}" for s in scores],
            textposition="auto",
            marker_color=[
                "#9aa5b1" if label.startswith(("reference", "neighbour")) else "#4c6ef5" for label in labels
            ],
        )
    )
    figure.update_layout(
        title=title,
        height=max(240, 34 * len(labels) + 100),
        xaxis_title="cosine similarity in CLAP space",
        yaxis={"autorange": "reversed"},
        margin={"l": 10, "r": 10, "t": 50, "b": 40},
    )
    return figure
