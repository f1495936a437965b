"""The arena and leaderboard tabs build under Gradio and their handlers enforce the server's rules."""

from types import SimpleNamespace

import gradio as gr
import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from musiccap.arena.captions import DEMO_PHRASES, FixedCaptionSource
from musiccap.arena.clips import build_pool
from musiccap.arena.service import ArenaService
from musiccap.ui.arena import (
    ArenaTabHandlers,
    build_arena_tab,
    build_leaderboard_tab,
    export_votes,
    refresh_leaderboard,
)


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
        FixedCaptionSource(DEMO_PHRASES),
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


def test_tabs_build(service):
    with gr.Blocks() as demo:
        with gr.Tab("Arena"):
            build_arena_tab(service)
        with gr.Tab("Leaderboard"):
            build_leaderboard_tab(service)
    assert isinstance(demo, gr.Blocks)


def test_vote_refused_before_listening_time_then_names_revealed(service, tmp_path):
    handlers = ArenaTabHandlers(service)
    audio, caption_a, caption_b, status, _, _, reveal, listening = handlers.next_pair(None, request())
    assert audio and caption_a and caption_b and reveal == ""
    assert not any(model in caption_a + caption_b + status for model in DEMO_PHRASES)
    status, reveal, listening = handlers.vote("A", "B", listening, request())
    assert "listen" in status and reveal == ""
    service.test_clock.now += 10
    assert handlers.vote("A", None, listening, request())[0] == "Please answer both questions."
    status, reveal, listening = handlers.vote("A", "tie", listening, request())
    assert "saved" in status and sum(model in reveal for model in DEMO_PHRASES) == 2
    assert listening["pair_id"] is None

    # an upload is judged but flagged as not counting
    upload = tmp_path / "c0.wav"
    *_, listening = handlers.next_pair(str(upload), request())
    service.test_clock.now += 10
    status, _, _ = handlers.vote("B", "B", listening, request())
    assert "does not count" in status

    table, figure, summary, preferences, agreement = refresh_leaderboard(
        service, "accuracy", 1, n_bootstrap=20
    )
    assert isinstance(table, pd.DataFrame) and len(table) == len(DEMO_PHRASES)
    assert table["votes"].sum() == 2 and len(preferences) == 2  # the upload's vote is not on the board
    assert figure.data[0].error_y.array is not None and "1 votes fitted" in summary
    assert export_votes(service, "csv").endswith(".csv")
    assert len(open(export_votes(service, "jsonl")).read().splitlines()) == 2


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
