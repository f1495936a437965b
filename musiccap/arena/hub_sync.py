"""Optional copy of the votes to a Hugging Face dataset: JSONL files pushed by `CommitScheduler`.

SQLite stays the source of truth. Each vote is appended here after it commits and marked `mirrored` in the
store once the line is on disk, so a crash between the two only delays the line to the next append.
"""

import json
import os
import uuid
from pathlib import Path

from huggingface_hub import CommitScheduler, HfApi

from .store import VoteRecord

HUB_REPO_ENV = "MUSICCAP_ARENA_HUB_REPO"
HUB_TOKEN_ENV = "HF_TOKEN"


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
            path_in_repo="votes",
            every=every_minutes,
            private=private,
            token=token,
            allow_patterns=["*.jsonl"],
            hf_api=hf_api,
        )

    @classmethod
    def from_env(cls, folder: str | Path) -> "HubVoteMirror | None":
        """The mirror when `MUSICCAP_ARENA_HUB_REPO` and `HF_TOKEN` are both set, else None."""
        repo_id, token = os.environ.get(HUB_REPO_ENV), os.environ.get(HUB_TOKEN_ENV)
        if not repo_id or not token:
            return None
        return cls(repo_id, folder, token=token)

    def append(self, votes: list[VoteRecord]) -> None:
        lines = "".join(json.dumps(vote.to_dict(), sort_keys=True) + "\n" for vote in votes)
        with self.scheduler.lock:  # the scheduler reads file sizes under this lock
            with open(self.jsonl_path, "a", encoding="utf-8") as handle:
                handle.write(lines)
                handle.flush()
                os.fsync(handle.fileno())

    def stop(self) -> None:
        self.scheduler.stop()
