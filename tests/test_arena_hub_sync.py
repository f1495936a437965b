"""The vote mirror as a Space runs it: votes pushed to a dataset repo come back after a restart."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import RepositoryNotFoundError
from huggingface_hub.utils import filter_repo_objects

from musiccap.arena.hub_sync import HUB_REPO_ENV, HUB_TOKEN_ENV, mirror_from_env
from musiccap.arena.leaderboard import build_leaderboard
from musiccap.arena.service import ArenaError
from musiccap.arena.store import SCORE_FIELDS
from tests.test_arena_service import (
    MODELS,
    SESSION,
    VOTER,
    FakeClock,
    make_service,
    pool,
    scored_captions,
    served_and_listened,
)

__all__ = ["pool"]  # the fixture, imported for pytest

REPO_ID = "someone/arena-votes"


class FakeHub(HfApi):
    """A dataset repo in memory: commits store their files, snapshot_download writes them back."""

    def __init__(self):
        super().__init__(token="hf_test")
        self.files: dict[str, bytes] = {}
        self.exists = False

    def create_repo(self, repo_id, **kwargs):
        self.exists = True
        return SimpleNamespace(repo_id=repo_id)

    def create_commit(self, repo_id, operations, **kwargs):
        for operation in operations:
            content = operation.path_or_fileobj
            if hasattr(content, "read"):
                content.seek(0)
                content = content.read()
            self.files[operation.path_in_repo] = bytes(content)
        return SimpleNamespace(oid="0" * 40)

    def snapshot_download(self, repo_id, *, repo_type=None, allow_patterns=None, local_dir=None, **kwargs):
        assert (repo_id, repo_type) == (REPO_ID, "dataset")
        if not self.exists:
            response = httpx.Response(404, request=httpx.Request("GET", "https://huggingface.co"))
            raise RepositoryNotFoundError("404: repository not found", response=response)
        for name in filter_repo_objects(self.files, allow_patterns=allow_patterns):
            path = Path(local_dir) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(self.files[name])
        return str(local_dir)


@pytest.fixture
def hub_env(monkeypatch):
    monkeypatch.setenv(HUB_REPO_ENV, REPO_ID)
    monkeypatch.setenv(HUB_TOKEN_ENV, "hf_test")


def board(service):
    return build_leaderboard(service.votes(), MODELS, n_bootstrap=20)


def vote_a_few(service, clock, answers=("A", "B", "tie")):
    for index, answer in enumerate(answers):
        pair = served_and_listened(service, clock, voter=f"{VOTER}{index}")
        service.vote(SESSION, f"{VOTER}{index}", pair.pair_id, answer, "A")


def test_a_restarted_space_without_storage_keeps_its_votes_and_leaderboard(tmp_path, pool, hub_env):
    hub = FakeHub()
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    clock = FakeClock()
    first = make_service(
        first_dir, pool, clock, hub_mirror=mirror_from_env(first_dir / "votes.sqlite", hf_api=hub)
    )
    vote_a_few(first, clock)
    first.hub_mirror.scheduler.push_to_hub()
    before = first.votes()
    board_before, counts_before = board(first), first.store.board_pair_counts()
    first.close()

    # the restart: a new, empty database (no persistent storage), the same dataset repo
    mirror = mirror_from_env(second_dir / "votes.sqlite", hf_api=hub)
    second = make_service(second_dir, pool, clock, hub_mirror=mirror)
    assert second.votes() == before
    assert second.store.unmirrored_votes() == []  # already on the Hub: not appended again
    assert board(second) == board_before
    assert second.store.board_pair_counts() == counts_before
    # a restored pair can never be voted on again
    with pytest.raises(ArenaError) as refused:
        second.vote(SESSION, VOTER, before[0].pair_id, "A", "A")
    assert refused.value.code == "wrong_session"
    # new votes go on being mirrored, into this process's own file
    vote_a_few(second, clock, answers=("both_bad",))
    second.hub_mirror.scheduler.push_to_hub()
    mirrored = [json.loads(line) for content in hub.files.values() for line in content.decode().splitlines()]
    assert sorted(v["vote_id"] for v in mirrored) == sorted(v.vote_id for v in second.votes())
    second.close()

    # restoring into a database that has the votes adds nothing
    third = mirror_from_env(second_dir / "votes.sqlite", hf_api=hub)
    third.stop()
    again = make_service(second_dir, pool, clock)
    assert len(again.votes()) == len(before) + 1
    again.close()


def test_first_start_with_no_dataset_repo_yet(tmp_path, pool, hub_env):
    hub = FakeHub()
    mirror = mirror_from_env(tmp_path / "votes.sqlite", hf_api=hub)
    assert mirror is not None and hub.exists  # the scheduler created the repo
    mirror.stop()


def test_malformed_mirrored_lines_are_skipped(tmp_path, pool, hub_env, caplog):
    hub = FakeHub()
    hub.exists = True
    clock = FakeClock()
    source = make_service(tmp_path / "a", pool, clock)
    vote_a_few(source, clock, answers=("A",))
    good = json.dumps(source.votes()[0].to_dict())
    source.close()
    bad_answer = json.dumps({**json.loads(good), "vote_id": "x" * 32, "pair_id": "y" * 32, "accuracy": "C"})
    hub.files["votes/votes-old.jsonl"] = f"{good}\nnot json\n{bad_answer}\n{good[:40]}".encode()
    with caplog.at_level(logging.WARNING):
        mirror_from_env(tmp_path / "b" / "votes.sqlite", hf_api=hub).stop()
    assert "skipped 3 malformed lines" in caplog.text
    restored = make_service(tmp_path / "b", pool, clock)
    assert [v.vote_id for v in restored.votes()] == [json.loads(good)["vote_id"]]
    restored.close()


def test_no_mirror_without_both_variables(tmp_path, monkeypatch):
    monkeypatch.setenv(HUB_REPO_ENV, REPO_ID)
    monkeypatch.delenv(HUB_TOKEN_ENV, raising=False)
    assert mirror_from_env(tmp_path / "votes.sqlite", hf_api=FakeHub()) is None


def test_the_mirror_round_trips_the_scores_and_restores_lines_written_before_them(tmp_path, pool, hub_env):
    hub = FakeHub()
    clock = FakeClock()
    first = make_service(
        tmp_path / "a",
        pool,
        clock,
        caption_source=scored_captions,
        hub_mirror=mirror_from_env(tmp_path / "a" / "votes.sqlite", hf_api=hub),
    )
    vote_a_few(first, clock, answers=("A", "B"))
    first.hub_mirror.scheduler.push_to_hub()
    scored = first.votes()
    assert all(getattr(vote, name) is not None for vote in scored for name in SCORE_FIELDS)
    first.close()
    # a line mirrored before votes stored scores: the same vote without the score fields
    older = {k: v for k, v in scored[0].to_dict().items() if k not in SCORE_FIELDS}
    older.update(vote_id="o" * 32, pair_id="q" * 32, created_at=scored[0].created_at - 1)
    hub.files["votes/votes-older.jsonl"] = (json.dumps(older) + "\n").encode()

    mirror_from_env(tmp_path / "b" / "votes.sqlite", hf_api=hub).stop()
    restored = make_service(tmp_path / "b", pool, clock)
    old_vote, *new_votes = restored.votes()
    assert new_votes == scored  # the scores come back exactly
    assert old_vote.vote_id == "o" * 32 and all(getattr(old_vote, name) is None for name in SCORE_FIELDS)
    restored.close()
