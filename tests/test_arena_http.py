"""The arena over HTTP: refusals as 4xx JSON, a 50 x 20 load run, and a SIGKILL in the middle of voting."""

import asyncio
import os
import signal
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from musiccap.arena.api import create_app, voter_key_from_request
from musiccap.arena.captions import DEMO_PHRASES, FixedCaptionSource
from musiccap.arena.clips import build_pool
from musiccap.arena.loadtest import (
    LoadResult,
    free_port,
    run_load,
    simulate_voter,
    start_server,
    stored_vote_ids,
)
from musiccap.arena.serve import write_demo_clips
from musiccap.arena.service import ArenaService


class ManualClock:
    """The service's clock, moved by the test: the listening-time rule must not depend on how fast the machine is."""

    def __init__(self):
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
def client(tmp_path, clock):
    service = ArenaService(
        tmp_path / "votes.sqlite",
        list(DEMO_PHRASES),
        build_pool(write_demo_clips(tmp_path / "clips")),
        FixedCaptionSource(DEMO_PHRASES),
        salt="http-test",
        min_listen_s=0.3,
        clock=clock,
    )
    with TestClient(create_app(service)) as test_client:
        yield test_client
    service.close()


def test_http_flow_with_cookie_session_and_refusals(client, clock):
    pair = client.post("/arena/pair").json()  # no session given: the server sets a cookie
    assert "arena_session" in client.cookies
    assert set(pair) >= {"pair_id", "caption_a", "caption_b", "audio_url", "min_listen_s"}
    assert not any(model in str(pair) for model in DEMO_PHRASES)
    audio = client.get(pair["audio_url"])
    assert audio.status_code == 200 and audio.content[:4] == b"RIFF"

    def vote(**fields):
        return client.post(
            "/arena/vote", json={"pair_id": pair["pair_id"], "accuracy": "A", "fluency": "B", **fields}
        )

    too_early = vote()
    assert too_early.status_code == 425 and too_early.json()["error"] == "too_early"
    assert "listen" in too_early.json()["message"]
    clock.now += 0.35
    assert vote(accuracy="left").status_code == 400
    assert vote(pair_id="Z" * 32).json()["error"] == "unknown_pair"
    assert vote(session_id="someone-else-entirely").status_code == 403
    assert client.get(pair["audio_url"], params={"session_id": "someone-else-entirely"}).status_code == 403
    accepted = vote(listened_s=0.3)
    assert accepted.status_code == 200
    assert set(accepted.json()["model_a"].split()) <= set(DEMO_PHRASES)
    replay = vote()
    assert replay.status_code == 409 and replay.json()["error"] == "replayed"
    board = client.get("/arena/leaderboard", params={"min_votes": 1}).json()
    assert board["n_votes"] + board["n_both_bad"] == 1


def test_voter_key_trusts_only_the_configured_proxy_hops():
    assert voter_key_from_request("10.0.0.1", "1.2.3.4", trusted_proxies=0) == "10.0.0.1"
    assert voter_key_from_request("10.0.0.1", "6.6.6.6, 1.2.3.4", trusted_proxies=1) == "1.2.3.4"
    assert voter_key_from_request("10.0.0.1", None, trusted_proxies=1) == "10.0.0.1"


def test_load_50_voters_20_votes_each_all_stored_exactly_once(tmp_path):
    port, db_path = free_port(), tmp_path / "votes.sqlite"
    server = start_server(db_path, port, min_listen_s=0.01)
    try:
        result = asyncio.run(
            run_load(f"http://127.0.0.1:{port}", n_voters=50, votes_per_voter=20, listen_s=0.02)
        )
    finally:
        server.terminate()
        server.wait(timeout=10)
    print("arena load:", result.summary())
    assert not result.errors and len(result.acknowledged) == 1000
    stored = stored_vote_ids(db_path)
    assert all(stored[vote_id] == 1 for vote_id in result.acknowledged)
    assert sum(stored.values()) == 1000


def test_sigkill_mid_run_loses_no_acknowledged_vote(tmp_path):
    db_path = tmp_path / "votes.sqlite"
    port = free_port()
    server = start_server(db_path, port, min_listen_s=0.01, extra_args=("--rate-limit", "1000/60"))
    url = f"http://127.0.0.1:{port}"
    in_flight = httpx.post(f"{url}/arena/pair", json={"session_id": "in-flight-session"}).json()

    result = LoadResult()

    async def voters():
        async with httpx.AsyncClient(base_url=url, timeout=10.0) as client:
            await asyncio.gather(*(simulate_voter(client, n, 100, 0.01, result) for n in range(30)))

    load = threading.Thread(target=lambda: asyncio.run(voters()))
    load.start()
    deadline = time.monotonic() + 30
    while len(result.acknowledged) < 150 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(server.pid, signal.SIGKILL)
    server.wait(timeout=10)
    load.join(timeout=30)
    acknowledged = list(result.acknowledged)
    assert len(acknowledged) >= 150 and result.errors  # the kill really happened under load

    stored = stored_vote_ids(db_path)
    assert all(stored[vote_id] == 1 for vote_id in acknowledged)
    restarted = start_server(db_path, port, min_listen_s=0.01)
    try:
        assert httpx.get(f"{url}/arena/health").json()["votes"] == sum(stored.values())
        # a pair served before the crash can still be voted on, once
        vote = {
            "session_id": "in-flight-session",
            "pair_id": in_flight["pair_id"],
            "accuracy": "A",
            "fluency": "A",
        }
        assert httpx.post(f"{url}/arena/vote", json=vote).status_code == 200
        assert httpx.post(f"{url}/arena/vote", json=vote).status_code == 409
    finally:
        restarted.terminate()
        restarted.wait(timeout=10)
    assert all(stored_vote_ids(db_path)[vote_id] == 1 for vote_id in acknowledged)
