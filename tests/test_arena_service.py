"""Arena integrity: every refusal the issue lists, storage of every vote field and of the server's scores,
restarts, an upgraded database, the Hub mirror."""

import json
import random
import sqlite3
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from huggingface_hub import CommitScheduler, HfApi

from musiccap.arena.api import create_app
from musiccap.arena.captions import DEMO_PHRASES, CachedCaptionSource, FixedCaptionSource, ServedCaption
from musiccap.arena.clips import build_pool, clip_from_upload
from musiccap.arena.hub_sync import HubVoteMirror
from musiccap.arena.leaderboard import export_votes_csv, export_votes_jsonl, metric_agreement
from musiccap.arena.sampling import PairSampler
from musiccap.arena.service import ArenaError, ArenaService
from musiccap.arena.store import SCORE_FIELDS, VoteRecord, VoteStore

MODELS = list(DEMO_PHRASES)
SESSION = "session-0001"
VOTER = "203.0.113.7"


class FakeClock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def write_tone(path, frequency):
    t = np.arange(8000) / 16000
    sf.write(path, (0.1 * np.sin(2 * np.pi * frequency * t)).astype(np.float32), 16000)
    return path


@pytest.fixture
def pool(tmp_path):
    return build_pool([write_tone(tmp_path / f"clip{i}.wav", 200 + 50 * i) for i in range(3)])


# each captioner's (CLAP similarity, grounding) in scored_captions: distinct, so every pair has a higher one
SCORES = {model: (0.1 * index - 0.05, index / 4) for index, model in enumerate(MODELS)}


def scored_captions(clip, model):
    """The fixed captions with the scores a studio caption source computes beside each caption."""
    clap, grounding = SCORES[model]
    return ServedCaption(
        f"{DEMO_PHRASES[model]} ({clip.title})", {"strategy": "fixed"}, f"fixed-{model}", clap, grounding
    )


def make_service(tmp_path, pool, clock=None, wall=None, models=MODELS, caption_source=None, **options):
    clock = clock or FakeClock()
    return ArenaService(
        tmp_path / "votes.sqlite",
        models,
        pool,
        caption_source or FixedCaptionSource(DEMO_PHRASES),
        salt="test-salt",
        min_listen_s=8.0,
        seed=0,
        clock=clock,
        wall_clock=wall or clock,
        **options,
    )


def served_and_listened(service, clock, session=SESSION, voter=VOTER, **serve_options):
    pair = service.serve_pair(session, voter, **serve_options)
    clock.now += 9.0
    return pair


def refusal_code(call) -> str:
    with pytest.raises(ArenaError) as refused:
        call()
    assert refused.value.message  # every refusal explains itself
    return refused.value.code


def test_vote_stores_every_field_and_reveals_names(tmp_path, pool):
    clock = FakeClock()
    service = make_service(tmp_path, pool, clock)
    pair = served_and_listened(service, clock)
    assert not any(model in json.dumps(pair.__dict__) for model in MODELS)  # names hidden until the vote
    receipt = service.vote(SESSION, VOTER, pair.pair_id, "A", "tie", listened_s=30.0)
    assert {receipt.model_a, receipt.model_b} <= set(MODELS) and receipt.model_a != receipt.model_b
    (vote,) = service.votes()
    assert vote.pair_id == pair.pair_id and vote.clip_id == pair.clip_id
    assert vote.clip_sha256 == next(c.sha256 for c in pool if c.id == pair.clip_id)
    assert (vote.caption_a, vote.caption_b) == (pair.caption_a, pair.caption_b)
    assert vote.caption_a.startswith(DEMO_PHRASES[vote.model_a])
    assert vote.decoding_a == {"strategy": "fixed"} and vote.checkpoint_b == f"fixed-{vote.model_b}"
    assert vote.swapped == (vote.model_a > vote.model_b)
    assert (vote.accuracy, vote.fluency) == ("A", "tie")
    assert vote.time_to_vote_s == pytest.approx(9.0)
    assert vote.listening_s == pytest.approx(9.0)  # a reported listening time is capped by the server's
    assert vote.counts_for_board and vote.not_counted_reason is None
    assert vote.app_version and len(vote.voter_hash) == 32
    service.close()
    raw = b"".join(path.read_bytes() for path in tmp_path.glob("votes.sqlite*"))
    assert VOTER.encode() not in raw and SESSION.encode() not in raw  # never a raw address or session


def test_refusals(tmp_path, pool):
    clock = FakeClock()
    service = make_service(tmp_path, pool, clock)
    pair = service.serve_pair(SESSION, VOTER)
    assert refusal_code(lambda: service.vote(SESSION, VOTER, pair.pair_id, "A", "A")) == "too_early"
    clock.now += 7.9
    assert refusal_code(lambda: service.vote(SESSION, VOTER, pair.pair_id, "A", "A")) == "too_early"
    clock.now += 0.2
    forged = pair.pair_id[:-2] + ("AA" if not pair.pair_id.endswith("AA") else "BB")
    assert refusal_code(lambda: service.vote(SESSION, VOTER, forged, "A", "A")) == "unknown_pair"
    assert (
        refusal_code(lambda: service.vote(SESSION, VOTER, "x'; DROP TABLE votes;--", "A", "A"))
        == "unknown_pair"
    )
    assert refusal_code(lambda: service.vote(SESSION, VOTER, None, "A", "A")) == "unknown_pair"
    assert (
        refusal_code(lambda: service.vote("session-other", VOTER, pair.pair_id, "A", "A")) == "wrong_session"
    )
    for bad in ("C", "", None, 1, "a"):
        assert (
            refusal_code(lambda bad=bad: service.vote(SESSION, VOTER, pair.pair_id, bad, "A")) == "bad_answer"
        )
        assert (
            refusal_code(lambda bad=bad: service.vote(SESSION, VOTER, pair.pair_id, "A", bad)) == "bad_answer"
        )
    assert refusal_code(lambda: service.vote("", VOTER, pair.pair_id, "A", "A")) == "bad_request"
    service.vote(SESSION, VOTER, pair.pair_id, "B", "both_bad")
    assert refusal_code(lambda: service.vote(SESSION, VOTER, pair.pair_id, "A", "A")) == "replayed"
    assert len(service.votes()) == 1


def test_rate_limit_and_daily_cap(tmp_path, pool):
    clock = FakeClock()
    service = make_service(tmp_path, pool, clock, rate_limit=(3, 60.0), daily_cap=5)

    def vote_once(voter=VOTER):
        pair = served_and_listened(service, clock, voter=voter)
        return service.vote(SESSION, voter, pair.pair_id, "A", "A")

    for _ in range(3):
        vote_once()
    pair = served_and_listened(service, clock)
    assert refusal_code(lambda: service.vote(SESSION, VOTER, pair.pair_id, "A", "A")) == "rate_limited"
    vote_once(voter="198.51.100.1")  # the limit is per voter
    clock.now += 60.0
    service.vote(
        SESSION, VOTER, pair.pair_id, "A", "A"
    )  # the refused pair can be voted once the window passes
    vote_once()
    clock.now += 60.0
    assert refusal_code(vote_once) == "daily_cap"
    clock.now += 86400.0
    vote_once()


def test_restart_keeps_in_flight_pairs_and_votes(tmp_path, pool):
    clock = FakeClock()
    service = make_service(tmp_path, pool, clock)
    voted = served_and_listened(service, clock)
    service.vote(SESSION, VOTER, voted.pair_id, "A", "B")
    in_flight = service.serve_pair(SESSION, VOTER)
    service.close()
    # a new process: a different monotonic clock, so listening time comes from wall time
    wall = FakeClock(clock.now)
    restarted = make_service(tmp_path, pool, FakeClock(5.0), wall=wall)
    assert refusal_code(lambda: restarted.vote(SESSION, VOTER, voted.pair_id, "A", "A")) == "replayed"
    assert refusal_code(lambda: restarted.vote(SESSION, VOTER, in_flight.pair_id, "A", "A")) == "too_early"
    wall.now += 8.5
    restarted.vote(SESSION, VOTER, in_flight.pair_id, "tie", "tie")
    assert [v.pair_id for v in restarted.votes()] == [voted.pair_id, in_flight.pair_id]
    wall.now += 7 * 3600
    stale = restarted.serve_pair(SESSION, VOTER)
    wall.now += 7 * 3600
    assert refusal_code(lambda: restarted.vote(SESSION, VOTER, stale.pair_id, "A", "A")) == "expired"


def test_unknown_model_after_restart_with_fewer_models(tmp_path, pool):
    clock = FakeClock()
    service = make_service(tmp_path, pool, clock)
    pairs = [service.serve_pair(SESSION, VOTER) for _ in range(12)]
    service.close()
    restarted = make_service(tmp_path, pool, clock, models=MODELS[:2])
    clock.now += 9.0
    codes = set()
    for pair in pairs:
        try:
            restarted.vote(SESSION, VOTER, pair.pair_id, "A", "A")
            codes.add("accepted")
        except ArenaError as error:
            codes.add(error.code)
    assert "unknown_model" in codes


def test_uploaded_clip_never_counts_for_board(tmp_path, pool):
    clock = FakeClock()
    service = make_service(tmp_path, pool, clock)
    upload = clip_from_upload(write_tone(tmp_path / "mine.wav", 440))
    pair = served_and_listened(service, clock, clip=upload)
    receipt = service.vote(SESSION, VOTER, pair.pair_id, "A", "A")
    assert not receipt.counts_for_board and "upload" in receipt.not_counted_reason
    assert service.votes(board_only=True) == [] and len(service.votes()) == 1
    assert service.store.board_pair_counts() == {}


def test_sampler_prefers_under_voted_pairs_and_swaps_sides():
    sampler = PairSampler(["a", "b", "c"], random.Random(0))
    counts = {("a", "b"): 100, ("a", "c"): 100, ("b", "c"): 0}
    choices = [sampler.choose(counts) for _ in range(2000)]
    share_bc = np.mean([{c.model_a, c.model_b} == {"b", "c"} for c in choices])
    assert share_bc > 0.9  # weight 1 against 1/101 twice
    assert all(c.model_a != c.model_b for c in choices)
    assert 0.45 < np.mean([c.swapped for c in choices]) < 0.55
    assert all(c.swapped == (c.model_a > c.model_b) for c in choices)
    with pytest.raises(ValueError):
        PairSampler(["a", "a"], random.Random(0))


def test_caption_cache_runs_each_clip_model_once(pool):
    calls = []

    def source(clip, model):
        calls.append((clip.id, model))
        return ServedCaption(f"{model} on {clip.id}")

    cached = CachedCaptionSource(source)
    cached.warm(pool, ["m1", "m2"])
    for _ in range(3):
        assert cached(pool[0], "m1").text == f"m1 on {pool[0].id}"
    assert len(calls) == 6


class RecordingHubApi(HfApi):
    """Stands in for the Hub: records the commit the scheduler would upload, touches no network."""

    def __init__(self):
        super().__init__(token="hf_test")
        self.commits = []

    def create_repo(self, repo_id, **kwargs):
        return SimpleNamespace(repo_id=repo_id)

    def create_commit(self, repo_id, operations, **kwargs):
        self.commits.append((repo_id, kwargs.get("repo_type"), operations))
        return SimpleNamespace(oid="0" * 40)


def test_hub_mirror_appends_jsonl_and_reaches_upload(tmp_path, pool, monkeypatch):
    api = RecordingHubApi()
    # No background push from this test (the scheduler's thread pushes once as it starts: on a busy machine
    # that came after the votes and made a second commit) and none at exit; push_to_hub below is the one.
    monkeypatch.setattr(CommitScheduler, "_push_to_hub", lambda self: None)
    mirror = HubVoteMirror("someone/arena-votes", tmp_path / "hub", hf_api=api, every_minutes=60)
    clock = FakeClock()
    service = make_service(tmp_path, pool, clock, hub_mirror=mirror)
    for answer in ("A", "B"):
        pair = served_and_listened(service, clock)
        service.vote(SESSION, VOTER, pair.pair_id, answer, answer)
    lines = [json.loads(line) for line in mirror.jsonl_path.read_text().splitlines()]
    assert [line["vote_id"] for line in lines] == [v.vote_id for v in service.votes()]
    mirror.scheduler.push_to_hub()
    ((repo_id, repo_type, operations),) = api.commits
    assert (repo_id, repo_type) == ("someone/arena-votes", "dataset")
    assert [op.path_in_repo for op in operations] == [f"votes/{mirror.jsonl_path.name}"]
    with sqlite3.connect(tmp_path / "votes.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM votes WHERE mirrored = 0").fetchone()[0] == 0
    service.close()


def test_exports_hold_every_vote(tmp_path, pool):
    clock = FakeClock()
    service = make_service(tmp_path, pool, clock)
    for answer in ("A", "B", "tie"):
        pair = served_and_listened(service, clock)
        service.vote(SESSION, VOTER, pair.pair_id, answer, "both_bad")
    votes = service.votes()
    jsonl = export_votes_jsonl(votes, tmp_path / "votes.jsonl").read_text().splitlines()
    assert [VoteRecord(**json.loads(line)) for line in jsonl] == votes
    csv_text = export_votes_csv(votes, tmp_path / "votes.csv").read_text().splitlines()
    assert len(csv_text) == 4 and csv_text[0].split(",")[:2] == ["vote_id", "pair_id"]


def expected_scores(vote) -> dict:
    (clap_a, grounding_a), (clap_b, grounding_b) = SCORES[vote.model_a], SCORES[vote.model_b]
    return {"clap_a": clap_a, "clap_b": clap_b, "grounding_a": grounding_a, "grounding_b": grounding_b}


def test_votes_store_the_servers_scores_on_both_paths_never_the_clients(tmp_path, pool):
    clock = FakeClock()
    service = make_service(tmp_path, pool, clock, caption_source=scored_captions)
    pair = served_and_listened(service, clock)
    assert not set(SCORE_FIELDS) & set(pair.__dict__)  # no score is shown before the vote
    receipt = service.vote(SESSION, VOTER, pair.pair_id, "A", "A")
    (vote,) = service.votes()
    assert {name: getattr(vote, name) for name in SCORE_FIELDS} == expected_scores(vote)
    assert {name: getattr(receipt, name) for name in SCORE_FIELDS} == expected_scores(vote)

    # the JSON API: scores sent by the client are ignored, the vote keeps the server's
    with TestClient(create_app(service)) as client:
        served = client.post("/arena/pair", json={"session_id": SESSION}).json()
        clock.now += 9.0
        forged = {name: 99.0 for name in SCORE_FIELDS}
        payload = {"session_id": SESSION, "pair_id": served["pair_id"], "accuracy": "B", "fluency": "B"}
        answer = client.post("/arena/vote", json={**payload, **forged}).json()
    api_vote = service.votes()[-1]
    assert api_vote.pair_id == served["pair_id"] and 99.0 not in answer.values()
    assert {name: getattr(api_vote, name) for name in SCORE_FIELDS} == expected_scores(api_vote)
    assert {name: answer[name] for name in SCORE_FIELDS} == expected_scores(api_vote)
    assert metric_agreement(service.votes()).n_decided == 2
    service.close()


def as_database_before_scores(path) -> None:
    """Rewrite an arena database as the version before the score columns wrote it."""
    with sqlite3.connect(path) as db:
        for table in ("served_pairs", "votes"):
            for name in SCORE_FIELDS:
                db.execute(f"ALTER TABLE {table} DROP COLUMN {name}")
        assert not any(
            name in row[1] for row in db.execute("PRAGMA table_info(votes)") for name in SCORE_FIELDS
        )


def test_a_database_from_before_the_scores_opens_and_keeps_working(tmp_path, pool):
    clock = FakeClock()
    old = make_service(tmp_path, pool, clock)
    voted = served_and_listened(old, clock)
    old.vote(SESSION, VOTER, voted.pair_id, "A", "B")
    in_flight = old.serve_pair(SESSION, VOTER)
    old.close()
    as_database_before_scores(tmp_path / "votes.sqlite")

    upgraded = make_service(tmp_path, pool, clock, caption_source=scored_captions)
    (old_vote,) = upgraded.votes()
    assert old_vote.pair_id == voted.pair_id and all(getattr(old_vote, n) is None for n in SCORE_FIELDS)
    clock.now += 9.0
    upgraded.vote(SESSION, VOTER, in_flight.pair_id, "B", "B")  # served before the upgrade: no scores
    new_pair = served_and_listened(upgraded, clock)
    upgraded.vote(SESSION, VOTER, new_pair.pair_id, "A", "A")
    old_in_flight, new_vote = upgraded.votes()[1:]
    assert all(getattr(old_in_flight, n) is None for n in SCORE_FIELDS)
    assert {name: getattr(new_vote, name) for name in SCORE_FIELDS} == expected_scores(new_vote)
    table = metric_agreement(upgraded.votes())
    assert (table.n_decided, table.n_without_scores) == (3, 2)
    assert [row.n_compared for row in table.rows] == [1, 1]
    upgraded.close()
    reopened = VoteStore(tmp_path / "votes.sqlite")  # opening again adds nothing twice
    assert len(reopened.votes()) == 3
    reopened.close()
