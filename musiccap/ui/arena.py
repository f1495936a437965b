"""Gradio tabs for the arena (blind A/B votes) and its leaderboard.

Call inside a Blocks layout, e.g. `with gr.Tab("Arena"): build_arena_tab(service)`. The arena shows only
the clip and two anonymous captions: no neighbour caption, no heatmaps (they would give RGMC away). The
vote button is always clickable; the server refuses a vote before the minimum listening time and the
refusal is shown to the listener.
"""

import tempfile
import time
from pathlib import Path

import gradio as gr
import pandas as pd
import plotly.graph_objects as go

from musiccap.arena.api import voter_key_from_request
from musiccap.arena.clips import clip_from_upload
from musiccap.arena.leaderboard import (
    Leaderboard,
    build_leaderboard,
    export_votes_csv,
    export_votes_jsonl,
    pairwise_preferences,
    voter_agreement,
)
from musiccap.arena.service import ArenaError, ArenaService
from musiccap.audio import AudioError

ANSWER_CHOICES = [
    ("Caption A", "A"),
    ("Caption B", "B"),
    ("Too similar to tell", "tie"),
    ("Both bad", "both_bad"),
]
ACCURACY_QUESTION = "Which caption describes the music more accurately?"
FLUENCY_QUESTION = "Which caption reads more fluently (grammar and phrasing)?"


def _new_listening() -> dict:
    return {"pair_id": None, "listened_s": 0.0, "playing_since": None}


class ArenaTabHandlers:
    """The arena tab's event handlers, separate from the layout so they can be tested without a browser."""

    def __init__(self, service: ArenaService, trusted_proxies: int = 0):
        self.service = service
        self.trusted_proxies = trusted_proxies

    def _identity(self, request: gr.Request) -> tuple[str, str]:
        host = request.client.host if request.client else None
        forwarded = request.headers.get("x-forwarded-for") if request.headers else None
        return request.session_hash, voter_key_from_request(host, forwarded, self.trusted_proxies)

    def next_pair(self, upload_path: str | None, request: gr.Request):
        """(audio, caption A, caption B, status, accuracy, fluency, reveal, listening state)."""
        session_id, voter_key = self._identity(request)
        clip = clip_from_upload(upload_path) if upload_path else None
        try:
            pair = self.service.serve_pair(session_id, voter_key, clip=clip)
        except (ArenaError, AudioError) as error:  # AudioError: an upload the captioners cannot read
            message = error.message if isinstance(error, ArenaError) else str(error)
            gr.Warning(message)
            return None, "", "", message, None, None, "", _new_listening()
        status = f"Listen for at least {pair.min_listen_s:.0f} s, then answer both questions."
        if clip is not None:
            status += " (Your own clip: this vote is kept but does not count for the public board.)"
        listening = {**_new_listening(), "pair_id": pair.pair_id}
        return pair.audio_path, pair.caption_a, pair.caption_b, status, None, None, "", listening

    @staticmethod
    def started_playing(listening: dict) -> dict:
        if listening.get("pair_id") and listening.get("playing_since") is None:
            listening = {**listening, "playing_since": time.monotonic()}
        return listening

    @staticmethod
    def stopped_playing(listening: dict) -> dict:
        if listening.get("playing_since") is not None:
            played = time.monotonic() - listening["playing_since"]
            listening = {**listening, "listened_s": listening["listened_s"] + played, "playing_since": None}
        return listening

    def vote(self, accuracy: str | None, fluency: str | None, listening: dict, request: gr.Request):
        """(status, reveal, listening state)."""
        if not listening.get("pair_id"):
            return "Press “New pair” first.", "", listening
        if accuracy is None or fluency is None:
            return "Please answer both questions.", "", listening
        listening = self.stopped_playing(listening)
        session_id, voter_key = self._identity(request)
        try:
            receipt = self.service.vote(
                session_id, voter_key, listening["pair_id"], accuracy, fluency, listening["listened_s"]
            )
        except ArenaError as error:
            gr.Warning(error.message)
            return error.message, "", listening
        reveal = (
            f"**Caption A** was written by **{receipt.model_a}**, **caption B** by **{receipt.model_b}**."
        )
        status = "Thank you, your vote is saved." + (
            ""
            if receipt.counts_for_board
            else f" It does not count for the public board: {receipt.not_counted_reason}."
        )
        return status, reveal, _new_listening()


def build_arena_tab(service: ArenaService, *, trusted_proxies: int = 0) -> ArenaTabHandlers:
    handlers = ArenaTabHandlers(service, trusted_proxies)
    listening = gr.State(_new_listening())
    gr.Markdown(
        "Listen to the clip and compare two captions written by two anonymous captioners. "
        "Their names are shown after you vote."
    )
    with gr.Row():
        audio = gr.Audio(label="Clip", type="filepath", interactive=False)
        with gr.Column():
            upload = gr.Audio(
                label="Or judge captions of your own clip (not counted on the board)", type="filepath"
            )
            new_pair = gr.Button("New pair", variant="secondary")
    with gr.Row():
        caption_a = gr.Textbox(label="Caption A", interactive=False, lines=4)
        caption_b = gr.Textbox(label="Caption B", interactive=False, lines=4)
    accuracy = gr.Radio(ANSWER_CHOICES, label=ACCURACY_QUESTION)
    fluency = gr.Radio(ANSWER_CHOICES, label=FLUENCY_QUESTION)
    vote = gr.Button("Vote", variant="primary")
    status = gr.Markdown()
    reveal = gr.Markdown()

    new_pair.click(
        handlers.next_pair,
        inputs=[upload],
        outputs=[audio, caption_a, caption_b, status, accuracy, fluency, reveal, listening],
    )
    audio.play(handlers.started_playing, inputs=[listening], outputs=[listening])
    audio.pause(handlers.stopped_playing, inputs=[listening], outputs=[listening])
    audio.stop(handlers.stopped_playing, inputs=[listening], outputs=[listening])
    vote.click(handlers.vote, inputs=[accuracy, fluency, listening], outputs=[status, reveal, listening])
    return handlers


def ratings_table(board: Leaderboard) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "rank": r.rank if r.rank is not None else "unranked",
                "captioner": r.model,
                "strength": round(r.strength, 3),
                "95% CI": f"[{r.ci_low:.2f}, {r.ci_high:.2f}]",
                "votes": r.n_votes,
                "wins": r.wins,
                "losses": r.losses,
                "ties": r.ties,
                "both bad": r.both_bad,
            }
            for r in board.ratings
        ]
    )


def ratings_figure(board: Leaderboard) -> go.Figure:
    ratings = board.ratings
    figure = go.Figure(
        go.Scatter(
            x=[r.model for r in ratings],
            y=[r.strength for r in ratings],
            mode="markers",
            marker={"size": 10, "color": ["#1f77b4" if r.rank else "#aaaaaa" for r in ratings]},
            error_y={
                "type": "data",
                "symmetric": False,
                "array": [r.ci_high - r.strength for r in ratings],
                "arrayminus": [r.strength - r.ci_low for r in ratings],
            },
        )
    )
    figure.update_layout(
        title=f"Bradley–Terry strength ({board.criterion}), 95% bootstrap intervals; grey = fewer than "
        f"{board.min_votes} votes",
        yaxis_title="log-strength (mean 0)",
        height=380,
        margin={"t": 60, "l": 50, "r": 20, "b": 40},
    )
    return figure


def preferences_table(service: ArenaService) -> pd.DataFrame:
    """RGMC Table 2 for every pair of captioners: x is the alphabetically first of the pair."""
    votes = service.votes(board_only=True)
    return pd.DataFrame(
        [
            {
                "criterion": criterion,
                "x": row.model_x,
                "y": row.model_y,
                "votes": row.n_votes,
                "x preferred %": round(100 * row.x_preferred, 1),
                "y preferred %": round(100 * row.y_preferred, 1),
                "equal quality %": round(100 * row.equal_quality, 1),
                "both bad %": round(100 * row.both_bad, 1),
            }
            for criterion in ("accuracy", "fluency")
            for row in pairwise_preferences(votes, criterion)
        ]
    )


def agreement_text(service: ArenaService) -> str:
    votes = service.votes(board_only=True)
    lines = [
        "| criterion | items with ≥ 2 voters | unanimous | chance | pairwise agreement |",
        "|---|---|---|---|---|",
    ]
    for criterion in ("accuracy", "fluency"):
        a = voter_agreement(votes, criterion)
        if a.n_items == 0:
            lines.append(f"| {criterion} | 0 | – | – | – |")
        else:
            lines.append(
                f"| {criterion} | {a.n_items} | {a.unanimous:.1%} | {a.chance_unanimous:.1%} | {a.pairwise:.1%} |"
            )
    return "\n".join(lines)


def refresh_leaderboard(service: ArenaService, criterion: str, min_votes: int, n_bootstrap: int = 500):
    board = build_leaderboard(
        service.votes(board_only=True),
        service.models,
        criterion=criterion,
        min_votes=int(min_votes),
        n_bootstrap=n_bootstrap,
    )
    summary = (
        f"{board.n_votes} votes fitted, {board.n_both_bad} “both bad” answers left out; ranked by the lower "
        f"end of the 95% interval ({board.n_bootstrap} bootstrap resamples, seed {board.seed})."
    )
    return (
        ratings_table(board),
        ratings_figure(board),
        summary,
        preferences_table(service),
        agreement_text(service),
    )


def export_votes(service: ArenaService, fmt: str) -> str:
    folder = Path(tempfile.mkdtemp(prefix="arena-export-"))
    votes = service.votes()
    if fmt == "csv":
        return str(export_votes_csv(votes, folder / "arena-votes.csv"))
    return str(export_votes_jsonl(votes, folder / "arena-votes.jsonl"))


def build_leaderboard_tab(service: ArenaService) -> None:
    with gr.Row():
        criterion = gr.Radio(["accuracy", "fluency"], value="accuracy", label="Criterion")
        min_votes = gr.Number(value=20, precision=0, minimum=1, label="Votes needed to be ranked")
        refresh = gr.Button("Refresh")
    summary = gr.Markdown()
    table = gr.Dataframe(label="Bradley–Terry leaderboard", interactive=False)
    chart = gr.Plot(label="Strengths with 95% intervals")
    gr.Markdown("### Share preferred per pair (RGMC Table 2 view)")
    preferences = gr.Dataframe(interactive=False)
    gr.Markdown("### Agreement between voters on the same clip and pair")
    agreement = gr.Markdown()
    with gr.Row():
        export_csv = gr.Button("Export all votes (CSV)")
        export_jsonl = gr.Button("Export all votes (JSONL)")
    exported = gr.File(label="Export")

    outputs = [table, chart, summary, preferences, agreement]
    refresh.click(
        lambda c, m: refresh_leaderboard(service, c, m), inputs=[criterion, min_votes], outputs=outputs
    )
    criterion.change(
        lambda c, m: refresh_leaderboard(service, c, m), inputs=[criterion, min_votes], outputs=outputs
    )
    export_csv.click(lambda: export_votes(service, "csv"), outputs=[exported])
    export_jsonl.click(lambda: export_votes(service, "jsonl"), outputs=[exported])
