"""Optional copy of the votes to a Hugging Face dataset: JSONL files pushed by `CommitScheduler`.

SQLite stays the source of truth. Each vote is appended here after it commits and marked `mirrored` in the
store once the line is on disk, so a crash between the two only delays the line to the next append.

On a Space without persistent storage the SQLite file starts empty after every restart, so at start
:func:`mirror_from_env` first reads the dataset's `votes/*.jsonl` back into the store
(:func:`restore_votes`), then starts the mirror: a restarted Space keeps its leaderboard.
"""

import json
import logging
import os
import tempfile
import uuid
from dataclasses import MISSING, fields
from pathlib import Path

import httpx
from huggingface_hub import CommitScheduler, HfApi
from huggingface_hub.errors import RepositoryNotFoundError

from .store import ANSWERS, VoteRecord, VoteStore, pair_scores

logger = logging.getLogger(__name__)

HUB_REPO_ENV = "MUSICCAP_ARENA_HUB_REPO"
HUB_TOKEN_ENV = "HF_TOKEN"
PATH_IN_REPO = "votes"


class HubVoteMirror:
    def __init__(
        self,
        repo_id: str,
        folder: str | Path,
        *,
        token: str | None = None,
        every_minutes: float = 5.0,
        private: bool = True,
        hf_api: HfApi | None = None,
    ):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        # one file per process: CommitScheduler uploads whole changed files, appends never collide
        self.jsonl_path = self.folder / f"votes-{uuid.uuid4().hex}.jsonl"
        self.scheduler = CommitScheduler(
            repo_id=repo_id,
            repo_type="dataset",
            folder_path=self.folder,
            path_in_repo=PATH_IN_REPO,
            every=every_minutes,
            private=private,
            token=token,
            allow_patterns=["*.jsonl"],
            hf_api=hf_api,
        )

    @classmethod
    def from_env(cls, folder: str | Path, hf_api: HfApi | None = None) -> "HubVoteMirror | None":
        """The mirror when `MUSICCAP_ARENA_HUB_REPO` and `HF_TOKEN` are both set, else None."""
        repo_id, token = os.environ.get(HUB_REPO_ENV), os.environ.get(HUB_TOKEN_ENV)
        if not repo_id or not token:
            return None
        return cls(repo_id, folder, token=token, hf_api=hf_api)

    def append(self, votes: list[VoteRecord]) -> None:
        lines = "".join(json.dumps(vote.to_dict(), sort_keys=True) + "\n" for vote in votes)
        with self.scheduler.lock:  # the scheduler reads file sizes under this lock
            with open(self.jsonl_path, "a", encoding="utf-8") as handle:
                handle.write(lines)
                handle.flush()
                os.fsync(handle.fileno())

    def stop(self) -> None:
        self.scheduler.stop()


def _vote_from_line(line: str) -> VoteRecord | None:
    """A vote from one mirrored JSONL line, or None when the line is not one (a torn last write).

    A field with a default may be missing: lines mirrored before the captions' scores were stored have none.
    """
    try:
        row = json.loads(line)
        vote = VoteRecord(
            **{f.name: row[f.name] for f in fields(VoteRecord) if f.name in row or f.default is MISSING}
        )
    except (ValueError, TypeError, KeyError):
        return None
    if vote.accuracy not in ANSWERS or vote.fluency not in ANSWERS:
        return None
    if not all(score is None or isinstance(score, int | float) for score in pair_scores(vote).values()):
        return None
    return vote


def read_mirrored_votes(folder: str | Path) -> list[VoteRecord]:
    """Every vote in the `votes/*.jsonl` files under `folder` (a downloaded copy of the dataset repo)."""
    votes, skipped = [], 0
    for path in sorted(Path(folder).glob(f"{PATH_IN_REPO}/*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                vote = _vote_from_line(line)
                if vote is None:
                    skipped += 1
                else:
                    votes.append(vote)
    if skipped:
        logger.warning("skipped %d malformed lines in the mirrored votes", skipped)
    return sorted(votes, key=lambda vote: vote.created_at)


def restore_votes(store: VoteStore, repo_id: str, *, hf_api: HfApi) -> int:
    """Download the mirrored votes and add those the store lacks; returns how many were added.

    A dataset repo that does not exist yet (the first start) has nothing to restore.
    """
    with tempfile.TemporaryDirectory(prefix="arena-restore-") as folder:
        try:
            hf_api.snapshot_download(
                repo_id, repo_type="dataset", allow_patterns=[f"{PATH_IN_REPO}/*.jsonl"], local_dir=folder
            )
        except RepositoryNotFoundError:
            return 0
        return store.restore_mirrored_votes(read_mirrored_votes(folder))


def mirror_from_env(db_path: str | Path, *, hf_api: HfApi | None = None) -> HubVoteMirror | None:
    """With `MUSICCAP_ARENA_HUB_REPO` and `HF_TOKEN` set: restore the mirrored votes into the database at
    `db_path`, then start the mirror (its JSONL folder beside the database). Else None.

    When the Hub cannot be reached the app still starts: the votes stay on the Hub and the next start
    restores them; the error is logged.
    """
    repo_id, token = os.environ.get(HUB_REPO_ENV), os.environ.get(HUB_TOKEN_ENV)
    if not repo_id or not token:
        return None
    api = hf_api or HfApi(token=token)
    store = VoteStore(db_path)
    try:
        restored = restore_votes(store, repo_id, hf_api=api)
        logger.info("restored %d votes from the Hub dataset %s", restored, repo_id)
    except (OSError, httpx.HTTPError):  # HfHubHTTPError is an OSError; httpx's transport errors are not
        logger.exception("could not restore the votes from %s; starting from the local database", repo_id)
    finally:
        store.close()
    try:
        return HubVoteMirror(repo_id, Path(db_path).parent / "hub-mirror", token=token, hf_api=api)
    except (OSError, httpx.HTTPError):
        logger.exception("could not start the vote mirror to %s; votes are kept only locally", repo_id)
        return None
