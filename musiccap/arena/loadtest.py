"""Load test of the arena over HTTP: concurrent voters, each taking a pair, waiting, voting.

    python -m musiccap.arena.loadtest --voters 50 --votes 20 [--url http://127.0.0.1:PORT] [--json]

Without --url it starts `python -m musiccap.arena.serve` on a fresh database with a tiny minimum listening
time, runs the load, checks that every acknowledged vote is stored exactly once, and stops the server.
Each voter sends its own X-Forwarded-For address (the server trusts one proxy hop), so the per-voter rate
limit and daily cap apply per simulated voter as they would to real ones.
"""

import argparse
import asyncio
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np


@dataclass
class LoadResult:
    acknowledged: list[str] = field(default_factory=list)  # vote ids the server answered 200 for
    vote_latencies_s: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)
    elapsed_s: float = 0.0

    @property
    def votes_per_s(self) -> float:
        return len(self.acknowledged) / self.elapsed_s if self.elapsed_s else 0.0

    def latency_percentile_ms(self, q: float) -> float:
        return (
            float(np.percentile(self.vote_latencies_s, q) * 1000) if self.vote_latencies_s else float("nan")
        )

    def summary(self) -> dict:
        return {
            "acknowledged": len(self.acknowledged),
            "elapsed_s": round(self.elapsed_s, 3),
            "votes_per_s": round(self.votes_per_s, 1),
            "vote_latency_p50_ms": round(self.latency_percentile_ms(50), 1),
            "vote_latency_p99_ms": round(self.latency_percentile_ms(99), 1),
            "errors": dict(self.errors),
        }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(db_path: Path, port: int, *, min_listen_s: float = 0.01, extra_args: tuple[str, ...] = ()):
    """`python -m musiccap.arena.serve` in a child process; returns once it answers /arena/health."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "musiccap.arena.serve", "--db", str(db_path), "--port", str(port)]
    command += ["--min-listen-s", str(min_listen_s), "--trusted-proxies", "1", *extra_args]
    server = subprocess.Popen(command, env=env, cwd=Path(__file__).resolve().parents[2])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"arena server exited with status {server.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/arena/health", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("arena server did not start within 30 s")


async def simulate_voter(
    client: httpx.AsyncClient, number: int, n_votes: int, listen_s: float, result: LoadResult
):
    headers = {"x-forwarded-for": f"10.{number // 250}.{number % 250}.{1 + number % 7}"}
    session_id = f"loadtest-voter-{number:04d}"
    answers = ("A", "B", "tie", "both_bad")
    for i in range(n_votes):
        try:
            pair = await client.post("/arena/pair", json={"session_id": session_id}, headers=headers)
            if pair.status_code != 200:
                result.errors[f"pair {pair.status_code}"] += 1
                continue
            await asyncio.sleep(listen_s)
            started = time.perf_counter()
            vote = await client.post(
                "/arena/vote",
                headers=headers,
                json={
                    "session_id": session_id,
                    "pair_id": pair.json()["pair_id"],
                    "accuracy": answers[(number + i) % 4],
                    "fluency": answers[(number * 3 + i) % 4],
                    "listened_s": listen_s,
                },
            )
            latency = time.perf_counter() - started
        except httpx.HTTPError as error:  # the crash test kills the server under the voters
            result.errors[type(error).__name__] += 1
            return
        if vote.status_code == 200:
            result.acknowledged.append(vote.json()["vote_id"])
            result.vote_latencies_s.append(latency)
        else:
            result.errors[f"vote {vote.status_code}"] += 1


async def run_load(
    base_url: str, n_voters: int = 50, votes_per_voter: int = 20, listen_s: float = 0.02
) -> LoadResult:
    result = LoadResult()
    limits = httpx.Limits(max_connections=n_voters, max_keepalive_connections=n_voters)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30.0) as client:
        started = time.perf_counter()
        await asyncio.gather(
            *(simulate_voter(client, n, votes_per_voter, listen_s, result) for n in range(n_voters))
        )
        result.elapsed_s = time.perf_counter() - started
    return result


def stored_vote_ids(db_path: Path) -> Counter:
    """How many times each vote id is in the store (read-only, beside a possibly running server)."""
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
        return Counter(vote_id for (vote_id,) in db.execute("SELECT vote_id FROM votes"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="a running arena (default: start one on a fresh database)")
    parser.add_argument("--voters", type=int, default=50)
    parser.add_argument("--votes", type=int, default=20, help="votes per voter")
    parser.add_argument("--listen-s", type=float, default=0.02, help="wait between pair and vote")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="arena-load-") as scratch:
        server, db_path, url = None, Path(scratch) / "votes.sqlite", args.url
        if url is None:
            port = free_port()
            server = start_server(db_path, port, min_listen_s=args.listen_s / 2)
            url = f"http://127.0.0.1:{port}"
        try:
            result = asyncio.run(run_load(url, args.voters, args.votes, args.listen_s))
        finally:
            if server is not None:
                server.terminate()
                server.wait(timeout=10)
        summary = result.summary()
        if server is not None:
            stored = stored_vote_ids(db_path)
            summary["stored_exactly_once"] = all(stored[v] == 1 for v in result.acknowledged) and sum(
                stored.values()
            ) == len(result.acknowledged)
    summary.update(voters=args.voters, votes_per_voter=args.votes, listen_s=args.listen_s)
    if args.json:
        print(json.dumps(summary))
    else:
        for key, value in summary.items():
            print(f"{key}: {value}")
    if summary.get("stored_exactly_once") is False or summary["errors"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
