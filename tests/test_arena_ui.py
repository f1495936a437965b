"""The arena and leaderboard tabs build under Gradio and their handlers enforce the server's rules."""

import sqlite3
from types import SimpleNamespace

import gradio as gr
import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from musiccap.arena.captions import DEMO_PHRASES
from musiccap.arena.clips import build_pool
from musiccap.arena.service import ArenaService
from musiccap.arena.store import SCORE_FIELDS
from musiccap.ui.arena import (
    ArenaTabHandlers,
    build_arena_tab,
    build_leaderboard_tab,
    export_votes,
    refresh_leaderboard,
)
from tests.test_arena_service import SCORES, scored_captions

RESULT_OUTPUTS = ("table", "chart", "summary", "matrix", "preferences", "agreement", "metric_vs_listener")


class FakeClock:
    now = 100.0

    def __call__(self):
        return self.now


@pytest.fixture
def service(tmp_path):
    t = np.arange(4000) / 16000
    paths = []
    for i in range(2):
        sf.write(
            tmp_path / f"c{i}.wav", (0.1 * np.sin(2 * np.pi * (300 + 100 * i) * t)).astype(np.float32), 16000
        )
        paths.append(tmp_path / f"c{i}.wav")
    clock = FakeClock()
    service = ArenaService(
        tmp_path / "votes.sqlite",
        list(DEMO_PHRASES),
        build_pool(paths),
        scored_captions,
        salt="ui",
        clock=clock,
        wall_clock=clock,
        seed=0,
    )
    service.test_clock = clock
    yield service
    service.close()


def request(session="ui-session-1", host="192.0.2.5"):
    return SimpleNamespace(session_hash=session, client=SimpleNamespace(host=host), headers={})


def test_tabs_build_and_the_page_load_serves_a_pair(service):
    with gr.Blocks() as demo:
        with gr.Tab("Arena"):
            build_arena_tab(service, demo)
        with gr.Tab("Leaderboard") as leaderboard_tab:
            build_leaderboard_tab(service, leaderboard_tab)
    on_load = [
        dependency
        for dependency in demo.fns.values()
        if any(event == "load" for _, event in dependency.targets)
    ]
    assert [dependency.api_name for dependency in on_load] == ["next_pair"]  # also "New pair"'s endpoint
    on_tab_open = [dependency for dependency in demo.fns.values() if dependency.targets[-1][1] == "select"]
    assert len(on_tab_open) == 1


def test_countdown_then_vote_then_names_and_scores_revealed(service, tmp_path):
    handlers = ArenaTabHandlers(service)
    assert handlers.countdown({"pair_id": None})[1]["interactive"] is False  # nothing to vote on yet
    audio, caption_a, caption_b, status, _, _, reveal, listening = handlers.next_pair(None, request())
    assert audio and caption_a and caption_b and reveal == ""
    assert not any(model in caption_a + caption_b + status for model in DEMO_PHRASES)
    text, button, timer = handlers.countdown(listening)
    assert "8 s" in text and button["interactive"] is False and timer["active"] is True
    service.test_clock.now += 2.5
    text, button, timer = handlers.countdown(listening)
    assert "6 s" in text and button["interactive"] is False and timer["active"] is True
    # a vote before the countdown ends (another client, or a stale page) is still refused by the server
    status, reveal, listening = handlers.vote("A", "B", listening, request())
    assert "listen" in status and reveal == ""
    service.test_clock.now += 5.5
    text, button, timer = handlers.countdown(listening)
    assert "vote now" in text and button["interactive"] is True and timer["active"] is False
    assert handlers.vote("A", None, listening, request())[0] == "Please answer both questions."
    status, reveal, listening = handlers.vote("A", "tie", listening, request())
    assert "saved" in status and sum(model in reveal for model in DEMO_PHRASES) == 2
    (vote,) = service.votes()
    for model in (vote.model_a, vote.model_b):  # each caption's CLAP similarity and grounding, as stored
        clap, grounding = SCORES[model]
        assert f"**{model}** | {clap:.3f} | {grounding:.0%} |" in reveal
    assert listening["pair_id"] is None
    assert handlers.countdown(listening)[1]["interactive"] is False  # this pair is spent

    # an upload is judged but flagged as not counting
    upload = tmp_path / "c0.wav"
    *_, listening = handlers.next_pair(str(upload), request())
    service.test_clock.now += 10
    status, _, _ = handlers.vote("B", "B", listening, request())
    assert "does not count" in status

    empty, results, table, figure, summary, matrix, preferences, agreement, metric_table = (
        refresh_leaderboard(service, "accuracy", 1, n_bootstrap=20)
    )
    assert empty["visible"] is False and results["visible"] is True
    assert isinstance(table, pd.DataFrame) and len(table) == len(DEMO_PHRASES)
    assert table["votes"].sum() == 2 and len(preferences) == 2  # the upload's vote is not on the board
    assert figure.data[0].error_y.array is not None and "1 vote fitted" in summary
    # one accuracy vote: the model behind A beat the one behind B, 1 of 1; no other cell has a vote
    cells = [text for line in matrix.data[0].text for text in line if text]
    assert sorted(cells) == ["0%<br>0 of 1", "100%<br>1 of 1"]
    # the one board vote said A: each score agrees when it rates caption A higher (never a tie here)
    for metric, (score_a, score_b) in (
        ("CLAP similarity", (SCORES[vote.model_a][0], SCORES[vote.model_b][0])),
        ("grounding", (SCORES[vote.model_a][1], SCORES[vote.model_b][1])),
    ):
        agreement_rate = "100.0% | [100.0%, 100.0%]" if score_a > score_b else "0.0% | [0.0%, 0.0%]"
        assert f"| {metric} | 1 | {agreement_rate} | 0 | 0 |" in metric_table
    assert export_votes(service, "csv").endswith(".csv")
    assert len(open(export_votes(service, "jsonl")).read().splitlines()) == 2


def test_leaderboard_without_votes_explains_how_to_vote(service):
    empty, results, *outputs = refresh_leaderboard(service, "accuracy", 20, n_bootstrap=20)
    assert empty["visible"] is True and results["visible"] is False
    assert "No votes yet" in empty["value"] and "Arena" in empty["value"] and "8 s" in empty["value"]
    assert all(output == gr.update() for output in outputs)  # no bare tables behind the message
    # an upload's vote is kept but does not count: the board is still empty
    handlers = ArenaTabHandlers(service)
    listening = handlers.next_pair(str(service.pool[0].path), request())[-1]
    service.test_clock.now += 10
    assert "does not count" in handlers.vote("A", "A", listening, request())[0]
    assert refresh_leaderboard(service, "accuracy", 20, n_bootstrap=20)[0]["visible"] is True


def test_two_voters_behind_one_proxy_are_two_voters(service):
    # the Space's proxy is the client of every request; the voter is the address it appended
    service.daily_cap = 1

    def behind_proxy(session, forwarded_for):
        return SimpleNamespace(
            session_hash=session,
            client=SimpleNamespace(host="10.0.0.1"),
            headers={"x-forwarded-for": forwarded_for},
        )

    handlers = ArenaTabHandlers(service, trusted_proxies=1)
    first, second = behind_proxy("ui-session-a", "198.51.100.1"), behind_proxy("ui-session-b", "198.51.100.2")
    listening_a = handlers.next_pair(None, first)[-1]
    listening_b = handlers.next_pair(None, second)[-1]
    service.test_clock.now += 10
    assert "saved" in handlers.vote("A", "A", listening_a, first)[0]
    assert "saved" in handlers.vote("B", "B", listening_b, second)[0]
    assert len({vote.voter_hash for vote in service.votes()}) == 2
    # the same forwarded address again is the same voter: its daily cap is spent
    listening = handlers.next_pair(None, behind_proxy("ui-session-c", "203.0.113.9, 198.51.100.1"))[-1]
    service.test_clock.now += 10
    status = handlers.vote("A", "A", listening, behind_proxy("ui-session-c", "203.0.113.9, 198.51.100.1"))[0]
    assert "daily limit" in status


def test_an_unreadable_upload_is_a_message_not_a_crash(service, tmp_path):
    def failing_caption_source(clip, model):
        from musiccap.audio import load_audio

        load_audio(clip.path)  # what the studio's caption source does first

    bad = tmp_path / "notes.wav"
    bad.write_text("this is a text file, not audio")
    service.caption_source = failing_caption_source
    status = ArenaTabHandlers(service).next_pair(str(bad), request())[3]
    assert "not a readable audio file" in status


def test_metric_table_explains_votes_it_cannot_compare(service):
    handlers = ArenaTabHandlers(service)
    listening = handlers.next_pair(None, request())[-1]
    service.test_clock.now += 10
    handlers.vote("tie", "both_bad", listening, request())  # a vote, but no winner
    metric_table = refresh_leaderboard(service, "accuracy", 1, n_bootstrap=20)[-1]
    assert "No vote can be compared yet" in metric_table and "|---|" not in metric_table
    # a vote cast before votes stored scores is counted and left out
    with sqlite3.connect(service.store.path) as db:
        db.execute(f"UPDATE votes SET {', '.join(f'{name} = NULL' for name in SCORE_FIELDS)}")
        db.execute("UPDATE votes SET accuracy = 'A'")
    metric_table = refresh_leaderboard(service, "accuracy", 1, n_bootstrap=20)[-1]
    assert "1 of the 1 votes with a winner store no scores" in metric_table
    assert "No vote can be compared yet" in metric_table


def test_the_studio_caption_source_scores_each_caption_as_the_compare_tab_does():
    from musiccap.audio import load_audio
    from musiccap.registry import CHECKPOINTS, example_files
    from musiccap.studio import Studio
    from musiccap.ui.arena_setup import studio_caption_source

    models = ["nearest", "random"]  # the two fastest captioners
    if not all((CHECKPOINTS / name / "config.json").is_file() for name in [*models, "clap"]):
        pytest.skip("needs the shipped nearest, random and CLAP checkpoints")
    studio = Studio(models=models)
    clip = build_pool([example_files()[0]])[0]
    compared = list(studio.compare(load_audio(clip.path)))[-1]  # the first window, as the arena's
    source = studio_caption_source(studio)
    for caption in compared.captions:
        served = source(clip, caption.model)
        assert served.text == caption.result.text
        assert served.clap_similarity == pytest.approx(caption.clap_similarity, abs=1e-5)
        assert served.grounding == caption.grounding
