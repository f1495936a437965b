"""Gradio tabs for the arena (blind A/B votes) and its leaderboard.

Call inside a Blocks layout, e.g. `with gr.Tab("Arena"): build_arena_tab(service, demo)`. The arena shows
only the clip and two anonymous captions: no neighbour caption, no heatmaps (they would give RGMC away).
Each browser session gets its own pair when the page loads. A countdown shows how long until the server
accepts a vote (`ArenaService.min_listen_s` on the server's clock since the pair was served); the vote
button is enabled when it reaches 0, and the server still refuses an early vote from any other client.
After the vote the tab reveals both captioners and each caption's scores as stored with the vote: CLAP
similarity to the clip and the fact check's grounding. The leaderboard asks whether those scores agree
with the listeners.
"""

import math
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
    MetricListenerTable,
    WinMatrix,
    build_leaderboard,
    export_votes_csv,
    export_votes_jsonl,
    metric_agreement,
    pairwise_preferences,
    voter_agreement,
    win_matrix,
)
from musiccap.arena.service import ArenaError, ArenaService, VoteReceipt
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
        status = "Listen to the clip, then answer both questions."
        if clip is not None:
            status += " (Your own clip: this vote is kept but does not count for the public board.)"
        listening = {
            **_new_listening(),
            "pair_id": pair.pair_id,
            # read after serve_pair returned, so never earlier than the server's own served time: the
            # countdown cannot reach 0 before the server accepts the vote
            "served_clock": self.service.clock(),
            "min_listen_s": pair.min_listen_s,
        }
        return pair.audio_path, pair.caption_a, pair.caption_b, status, None, None, "", listening

    def countdown(self, listening: dict):
        """(countdown text, vote button, timer): seconds left before a vote on this pair is accepted."""
        if not listening.get("pair_id"):
            return "", gr.update(interactive=False), gr.update(active=False)
        remaining_s = listening["min_listen_s"] - (self.service.clock() - listening["served_clock"])
        if remaining_s > 0:
            text = f"Voting opens in **{math.ceil(remaining_s)} s**: listen meanwhile."
            return text, gr.update(interactive=False), gr.update(active=True)
        return "You can vote now.", gr.update(interactive=True), gr.update(active=False)

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
        status = "Thank you, your vote is saved. Press “New pair” for the next clip." + (
            ""
            if receipt.counts_for_board
            else f" It does not count for the public board: {receipt.not_counted_reason}."
        )
        return status, reveal_markdown(receipt), _new_listening()


def _score_cell(score: float | None, pattern: str) -> str:
    return "–" if score is None else pattern.format(score)


def reveal_markdown(receipt: VoteReceipt) -> str:
    """Who wrote each caption and its scores as stored with the vote (the Compare tab's two scores)."""
    lines = [
        "| | captioner | CLAP similarity to the clip | grounding |",
        "|---|---|---|---|",
    ]
    for side, model, clap, grounded in (
        ("A", receipt.model_a, receipt.clap_a, receipt.grounding_a),
        ("B", receipt.model_b, receipt.clap_b, receipt.grounding_b),
    ):
        lines.append(
            f"| Caption {side} | **{model}** | {_score_cell(clap, '{:.3f}')} | {_score_cell(grounded, '{:.0%}')} |"
        )
    clap_note = (
        "CLAP similarity: cosine between the clip's and the caption's embeddings in the embedded CLAP "
        "(higher is closer)."
        if receipt.clap_a is not None
        else "CLAP similarity is not available: no CLAP checkpoint is loaded."
    )
    grounding_note = (
        "Grounding: share of the caption's checkable statements (tempo, mode, drums, instruments) that the "
        "app's own analysis of the clip confirms; – when it states nothing checkable."
    )
    return "\n".join(lines) + "\n\n" + clap_note + " " + grounding_note


def build_arena_tab(service: ArenaService, app: gr.Blocks, *, trusted_proxies: int = 0) -> ArenaTabHandlers:
    """The arena's layout and events; `app` is the enclosing Blocks, whose load event serves each browser
    session its first pair."""
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
    countdown = gr.Markdown(elem_id="arena-countdown")
    vote = gr.Button("Vote", variant="primary", interactive=False, elem_id="arena-vote")
    status = gr.Markdown(elem_id="arena-status")
    reveal = gr.Markdown(elem_id="arena-reveal")
    timer = gr.Timer(1.0, active=False)

    pair_outputs = [audio, caption_a, caption_b, status, accuracy, fluency, reveal, listening]
    countdown_outputs = [countdown, vote, timer]

    # the countdown is cheap and must not wait behind captioning jobs in the queue
    countdown_update = dict(
        fn=handlers.countdown,
        inputs=[listening],
        outputs=countdown_outputs,
        queue=False,
        show_progress="hidden",
        api_visibility="private",
    )
    # each browser session gets its own pair when the page loads; "New pair" serves the next one
    gr.on(
        [app.load, new_pair.click],
        handlers.next_pair,
        inputs=[upload],
        outputs=pair_outputs,
        api_name="next_pair",
    ).then(**countdown_update)
    timer.tick(**countdown_update)
    audio.play(handlers.started_playing, inputs=[listening], outputs=[listening])
    audio.pause(handlers.stopped_playing, inputs=[listening], outputs=[listening])
    audio.stop(handlers.stopped_playing, inputs=[listening], outputs=[listening])
    vote.click(
        handlers.vote,
        inputs=[accuracy, fluency, listening],
        outputs=[status, reveal, listening],
        api_name="vote",
    ).then(**countdown_update)
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


METRIC_AGREEMENT_EXPLANATION = (
    "For each vote with a winner: did the caption the automatic score rates higher win? 50% is a coin "
    "flip. Votes where the two scores are equal (ties) or a caption has no score are left out and counted."
)


def metric_agreement_text(table: MetricListenerTable) -> str:
    """The metric-vs-listener table as Markdown, or what is missing when no vote can be compared yet."""
    explanation = f"{METRIC_AGREEMENT_EXPLANATION} Criterion: {table.criterion}."
    if table.n_without_scores:
        explanation += (
            f" {table.n_without_scores} of the {table.n_decided} votes with a winner store no scores "
            "(cast before scores were recorded) and are left out."
        )
    if not any(row.n_compared for row in table.rows):
        return (
            f"{explanation}\n\n*No vote can be compared yet: it takes a vote with a winner whose two "
            "captions have different scores.*"
        )
    lines = [
        "| score | votes compared | agreement | 95% CI | ties | no score |",
        "|---|---|---|---|---|---|",
    ]
    for row in table.rows:
        if row.n_compared:
            result = f"{row.agreement:.1%} | [{row.ci_low:.1%}, {row.ci_high:.1%}]"
        else:
            result = "– | –"
        lines.append(f"| {row.metric} | {row.n_compared} | {result} | {row.n_ties} | {row.n_unscored} |")
    note = f"Intervals: {table.n_bootstrap} bootstrap resamples of the compared votes, seed {table.seed}."
    return f"{explanation}\n\n" + "\n".join(lines) + f"\n\n{note}"


def win_matrix_figure(matrix: WinMatrix) -> go.Figure:
    """Heatmap of the row captioner's share of wins over the column one, each cell with its counts."""
    models = list(matrix.models)
    pairs = [[(row, column) for column in range(len(models))] for row in range(len(models))]
    shares = [[matrix.win_share(row, column) for row, column in line] for line in pairs]
    cell_text = [
        [
            ""
            if share is None
            else f"{share:.0%}<br>{matrix.wins[row][column]} of {matrix.decided(row, column)}"
            for share, (row, column) in zip(share_line, line)
        ]
        for share_line, line in zip(shares, pairs)
    ]
    figure = go.Figure(
        go.Heatmap(
            z=shares,
            x=models,
            y=models,
            text=cell_text,
            texttemplate="%{text}",
            customdata=[[matrix.ties[row][column] for row, column in line] for line in pairs],
            hovertemplate="%{y} over %{x}: %{text}<br>ties: %{customdata}<extra></extra>",
            zmin=0,
            zmax=1,
            colorscale="RdBu",
            colorbar={"title": "wins", "tickformat": ".0%"},
        )
    )
    figure.update_layout(
        title=f"Head to head ({matrix.criterion}): share of decided votes the row won over the column",
        xaxis_title="against",
        yaxis={"title": "captioner", "autorange": "reversed"},
        height=120 + 60 * len(models),
        margin={"t": 60, "l": 90, "r": 20, "b": 60},
    )
    return figure


def empty_leaderboard_text(min_listen_s: float) -> str:
    return (
        "### No votes yet\n"
        "The board fills in from the first vote. To vote: open the **Arena** tab, listen to the clip for "
        f"at least {min_listen_s:.0f} s, answer both questions and press **Vote**. The two captioners' names "
        "are shown after your vote. Votes on your own uploaded clips are kept but do not count here."
    )


def refresh_leaderboard(service: ArenaService, criterion: str, min_votes: int, n_bootstrap: int = 500):
    """(empty state, results column, ratings table, strengths chart, summary, win matrix, RGMC Table 2 view,
    agreement, metric vs listener). With no votes on the board only the empty state is shown."""
    votes = service.votes(board_only=True)
    if not votes:
        hidden = gr.update(visible=False)
        return (
            gr.update(value=empty_leaderboard_text(service.min_listen_s), visible=True),
            hidden,
            *(gr.update() for _ in range(7)),
        )
    board = build_leaderboard(
        votes, service.models, criterion=criterion, min_votes=int(min_votes), n_bootstrap=n_bootstrap
    )
    summary = (
        f"{board.n_votes} {'vote' if board.n_votes == 1 else 'votes'} fitted, {board.n_both_bad} “both bad” "
        f"answers left out; ranked by the lower end of the 95% interval ({board.n_bootstrap} bootstrap "
        f"resamples, seed {board.seed})."
    )
    return (
        gr.update(visible=False),
        gr.update(visible=True),
        ratings_table(board),
        ratings_figure(board),
        summary,
        # rows and columns in the leaderboard's order: ranked captioners first, the leader on top
        win_matrix_figure(win_matrix(votes, [r.model for r in board.ratings], criterion=criterion)),
        preferences_table(service),
        agreement_text(service),
        metric_agreement_text(metric_agreement(votes, criterion)),
    )


def export_votes(service: ArenaService, fmt: str) -> str:
    folder = Path(tempfile.mkdtemp(prefix="arena-export-"))
    votes = service.votes()
    if fmt == "csv":
        return str(export_votes_csv(votes, folder / "arena-votes.csv"))
    return str(export_votes_jsonl(votes, folder / "arena-votes.jsonl"))


def build_leaderboard_tab(service: ArenaService, tab: gr.Tab | None = None) -> None:
    """The leaderboard's layout and events; it refreshes whenever `tab` (the enclosing tab) is opened."""
    with gr.Row():
        criterion = gr.Radio(["accuracy", "fluency"], value="accuracy", label="Criterion")
        min_votes = gr.Number(value=20, precision=0, minimum=1, label="Votes needed to be ranked")
        refresh = gr.Button("Refresh")
    empty_state = gr.Markdown(visible=False, elem_id="leaderboard-empty")  # filled in on refresh
    with gr.Column(visible=False) as results:
        summary = gr.Markdown(elem_id="leaderboard-summary")
        table = gr.Dataframe(label="Bradley–Terry leaderboard", interactive=False)
        chart = gr.Plot(label="Strengths with 95% intervals")
        gr.Markdown(
            "### Head to head\nEach cell: how often the row captioner was preferred over the column one, "
            "among their votes with a winner (ties and “both bad” left out; ties are in the hover text)."
        )
        matrix = gr.Plot(label="Win matrix", elem_id="win-matrix")
        gr.Markdown("### Share preferred per pair (RGMC Table 2 view)")
        preferences = gr.Dataframe(interactive=False)
        gr.Markdown("### Agreement between voters on the same clip and pair")
        agreement = gr.Markdown()
        gr.Markdown("### Does an automatic score agree with listeners?")
        metric_vs_listener = gr.Markdown(elem_id="metric-vs-listener")
    with gr.Row():
        export_csv = gr.Button("Export all votes (CSV)")
        export_jsonl = gr.Button("Export all votes (JSONL)")
    exported = gr.File(label="Export")

    triggers = [refresh.click, criterion.change] + ([tab.select] if tab is not None else [])
    gr.on(
        triggers,
        lambda c, m: refresh_leaderboard(service, c, m),
        inputs=[criterion, min_votes],
        outputs=[
            empty_state,
            results,
            table,
            chart,
            summary,
            matrix,
            preferences,
            agreement,
            metric_vs_listener,
        ],
        api_name="leaderboard",
    )
    export_csv.click(lambda: export_votes(service, "csv"), outputs=[exported])
    export_jsonl.click(lambda: export_votes(service, "jsonl"), outputs=[exported])
