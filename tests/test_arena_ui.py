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
