"""The app as a new user starts it, with every outbound connection refused: it still starts, answers on
GRADIO_SERVER_PORT, captions a clip and takes arena votes, and never tries to reach beyond loopback.

The app runs under tests/outbound_guard.py (loopback only, each refused attempt logged); the Hub's and
transformers' offline switches are deliberately left unset, so an attempt to download would show.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.served_app import served_app
from tests.test_app_e2e import EXAMPLE, free_port, shipped_captioners
from tests.test_audio_fuzz import wav_claiming_channels

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def guarded_app(tmp_path_factory):
    if len(shipped_captioners()) < 2:
        pytest.skip("the arena needs two shipped captioners")
    folder = tmp_path_factory.mktemp("offline-app")
    port = free_port()
    outbound_log = folder / "outbound.log"
    outbound_log.touch()
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {"HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "GRADIO_ANALYTICS_ENABLED", "PORT"}
        and not name.startswith(("MUSICCAP_", "SPACE_", "HF_"))
    }
    env.update(
        GRADIO_SERVER_PORT=str(port),
        MUSICCAP_ARENA_DB=str(folder / "arena.sqlite"),
        MUSICCAP_ARENA_MIN_LISTEN_S="0",
        MUSICCAP_TRUSTED_PROXIES="1",  # as on a Space: the voter is the address the proxy forwarded
        HF_HOME=str(folder / "hf-home"),  # an empty Hub cache: nothing cached can hide a download
    )
    command = [sys.executable, str(REPO / "tests" / "outbound_guard.py"), str(outbound_log), "app.py"]
    with served_app(command, env, port, folder / "app.log") as url:
        yield SimpleApp(url, outbound_log, folder / "arena.sqlite", folder / "app.log")


class SimpleApp:
    def __init__(self, url: str, outbound_log: Path, arena_db: Path, app_log: Path):
        self.url, self.outbound_log, self.arena_db, self.app_log = url, outbound_log, arena_db, app_log

    def refused(self) -> list[str]:
        return self.outbound_log.read_text().splitlines()


def post_json(url: str, payload: dict) -> dict:
    request = urllib.request.Request(
        url, json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def test_compare_and_arena_votes_with_outbound_connections_blocked(guarded_app, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(guarded_app.url, verbose=False)
    damaged = tmp_path / "damaged.wav"
    damaged.write_bytes(wav_claiming_channels(15873))
    with pytest.raises(AppError, match="15873 channels"):  # the user's message, and the app keeps serving
        client.predict(audio=handle_file(str(damaged)), api_name="/compare")
    # the same call as tests/test_app_e2e.py: the clip alone, every option at its default
    status, _, downloads = client.predict(audio=handle_file(str(EXAMPLE)), api_name="/compare")[:3]
    assert "done:" in status
    rows = json.loads(next(Path(d) for d in downloads if d.endswith(".json")).read_text())
    assert {row["model"] for row in rows} == set(shipped_captioners())

    # an arena vote over the JSON API
    pair = post_json(guarded_app.url + "arena/pair", {"session_id": "offline-test-session"})
    receipt = post_json(
        guarded_app.url + "arena/vote",
        {"session_id": "offline-test-session", "pair_id": pair["pair_id"], "accuracy": "A", "fluency": "tie"},
    )
    assert receipt["pair_id"] == pair["pair_id"] and receipt["model_a"] != receipt["model_b"]
    with sqlite3.connect(guarded_app.arena_db) as db:  # the vote keeps the scores the server computed
        stored = db.execute(
            "SELECT clap_a, clap_b FROM votes WHERE pair_id = ?", (pair["pair_id"],)
        ).fetchone()
    assert list(stored) == [receipt["clap_a"], receipt["clap_b"]]
    if (REPO / "checkpoints" / "clap" / "config.json").is_file():
        assert None not in stored
    assert guarded_app.refused() == [], guarded_app.app_log.read_text()[-3000:]


def distinct_voters(arena_db: Path) -> int:
    with sqlite3.connect(arena_db) as db:
        return db.execute("SELECT COUNT(DISTINCT voter_hash) FROM votes").fetchone()[0]


def test_arena_tab_voters_behind_the_proxy_are_told_apart(guarded_app):
    from gradio_client import Client

    before = distinct_voters(guarded_app.arena_db)
    for forwarded in ("198.51.100.1", "198.51.100.2"):
        client = Client(guarded_app.url, verbose=False, headers={"X-Forwarded-For": forwarded})
        client.predict(None, api_name="/next_pair")
        status = client.predict("A", "B", api_name="/vote")[0]
        assert "saved" in status, status
    # two new voters: without the proxy setting both would be the proxy's (here loopback's) address
    assert distinct_voters(guarded_app.arena_db) == before + 2
    assert guarded_app.refused() == []


def test_the_guard_refuses_and_logs_outbound_connections(tmp_path):
    script = tmp_path / "reach_out.py"
    script.write_text(
        "import socket, urllib.request\n"
        "for call in (lambda: socket.create_connection(('192.0.2.1', 443), timeout=1),\n"
        "             lambda: urllib.request.urlopen('https://huggingface.co', timeout=1)):\n"
        "    try:\n"
        "        call()\n"
        "    except OSError:\n"
        "        pass\n"
        "server = socket.create_server(('127.0.0.1', 0))\n"
        "socket.create_connection(server.getsockname(), timeout=1).close()\n"
    )
    log = tmp_path / "outbound.log"
    subprocess.run(
        [sys.executable, str(REPO / "tests" / "outbound_guard.py"), str(log), str(script)],
        check=True,
        timeout=60,
    )
    refused = log.read_text()
    assert "192.0.2.1" in refused and "huggingface.co" in refused and "127.0.0.1" not in refused
