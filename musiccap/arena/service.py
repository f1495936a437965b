"""The arena's rules in one place: serve anonymous pairs, accept each served pair's vote once.

Everything a vote depends on is decided and timed on the server: which pair was served to which session,
when (the listening time is measured from the server's clock), which captioners were behind A and B, and
each caption's automatic scores (CLAP similarity, grounding), computed with the caption and stored with the
vote. The browser only sends the pair id and the two answers.
"""

import collections
import hashlib
import hmac
import logging
import os
import random
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from musiccap import __version__

from .captions import CachedCaptionSource, CaptionSource
from .clips import ArenaClip
from .hub_sync import HubVoteMirror
from .sampling import PairSampler
from .store import (
    ANSWERS,
    PairAlreadyVoted,
    ServedPairRecord,
    VoteRecord,
    VoteStore,
    pair_scores,
    shown_pair,
)

logger = logging.getLogger(__name__)

SALT_ENV = "MUSICCAP_ARENA_SALT"
PAIR_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
DAY_S = 86400.0


class ArenaError(Exception):
    """A refused request. `code` is stable (the HTTP layer maps it to a status); `message` is for people."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ServedPair:
    """What the listener sees: no captioner names, no decoding settings (they could give a model away)."""

    pair_id: str
    clip_id: str
    clip_title: str
    audio_path: str
    caption_a: str
    caption_b: str
    min_listen_s: float


@dataclass(frozen=True)
class VoteReceipt:
    """What a voter learns once the vote is saved: the captioners and the captions' stored scores."""

    vote_id: str
    pair_id: str
    model_a: str
    model_b: str
    accuracy: str
    fluency: str
    counts_for_board: bool
    not_counted_reason: str | None
    clap_a: float | None
    clap_b: float | None
    grounding_a: float | None
    grounding_b: float | None


def load_or_create_salt(db_path: str | Path) -> str:
    """The voter-hash salt: `MUSICCAP_ARENA_SALT`, else a random one kept beside the database.

    It must outlive restarts, or the daily cap would reset with every restart.
    """
    if os.environ.get(SALT_ENV):
        return os.environ[SALT_ENV]
    salt_path = Path(f"{db_path}.salt")
    if not salt_path.exists():
        salt_path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(salt_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_hex(32))
    return salt_path.read_text().strip()


class SlidingWindowLimiter:
    """At most `max_events` per `window_s` per key, in memory (the daily cap is counted in the store)."""

    def __init__(self, max_events: int, window_s: float):
        self.max_events, self.window_s = max_events, window_s
        self._events: dict[str, collections.deque] = collections.defaultdict(collections.deque)
        self._lock = threading.Lock()

    def wait_s(self, key: str, now: float) -> float:
        """Seconds until `key` may act again; 0 when it may act now."""
        with self._lock:
            events = self._events[key]
            while events and events[0] <= now - self.window_s:
                events.popleft()
            if len(events) < self.max_events:
                return 0.0
            return events[0] + self.window_s - now

    def add(self, key: str, now: float) -> None:
        with self._lock:
            self._events[key].append(now)


class ArenaService:
    def __init__(
        self,
        db_path: str | Path,
        models: list[str],
        pool: list[ArenaClip],
        caption_source: CaptionSource,
        *,
        salt: str,
        min_listen_s: float = 8.0,
        rate_limit: tuple[int, float] = (30, 60.0),
        daily_cap: int = 500,
        pair_ttl_s: float = 6 * 3600.0,
        app_version: str = __version__,
        hub_mirror: HubVoteMirror | None = None,
        seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ):
        if not salt:
            raise ValueError("the voter-hash salt must not be empty")
        if not pool:
            raise ValueError("the arena pool is empty")
        self.models = list(dict.fromkeys(models))
        self.pool = list(pool)
        self.caption_source = (
            caption_source
            if isinstance(caption_source, CachedCaptionSource)
            else CachedCaptionSource(caption_source)
        )
        self.store = VoteStore(db_path)
        self.salt = salt.encode()
        self.min_listen_s = min_listen_s
        self.daily_cap = daily_cap
        self.pair_ttl_s = pair_ttl_s
        self.app_version = app_version
        self.hub_mirror = hub_mirror
        self.clock, self.wall_clock = clock, wall_clock
        self.run_id = uuid.uuid4().hex
        self.rng = random.Random(seed)
        self.sampler = PairSampler(self.models, self.rng)
        self.vote_limiter = SlidingWindowLimiter(*rate_limit)
        # a listener may skip pairs, so serving is allowed twice the voting rate
        self.pair_limiter = SlidingWindowLimiter(2 * rate_limit[0], rate_limit[1])
        self._state_lock = threading.Lock()  # sampler rng and pair counts
        self._vote_lock = threading.Lock()  # daily-cap check and commit happen as one step per vote
        self._mirror_lock = threading.Lock()  # one appender at a time, so no vote is mirrored twice
        self._pair_counts = self.store.board_pair_counts()
        self._mirror_pending()

    def voter_hash(self, voter_key: str) -> str:
        return hmac.new(self.salt, voter_key.encode(), hashlib.sha256).hexdigest()[:32]

    def _session_hash(self, session_id: str) -> str:
        return hmac.new(self.salt, b"session:" + session_id.encode(), hashlib.sha256).hexdigest()[:32]

    @staticmethod
    def _check_session(session_id) -> None:
        if not isinstance(session_id, str) or not 8 <= len(session_id) <= 200:
            raise ArenaError("bad_request", "missing or malformed session id")

    def serve_pair(self, session_id: str, voter_key: str, clip: ArenaClip | None = None) -> ServedPair:
        """A new anonymous pair; `clip` is a listener's upload (its vote will not count for the board)."""
        self._check_session(session_id)
        voter_hash = self.voter_hash(voter_key)
        now = self.clock()
        wait_s = self.pair_limiter.wait_s(voter_hash, now)
        if wait_s > 0:
            raise ArenaError("rate_limited", f"too many pairs requested; try again in {wait_s:.0f} s")
        self.pair_limiter.add(voter_hash, now)
        with self._state_lock:
            choice = self.sampler.choose(self._pair_counts)
            if clip is None:
                clip = self.rng.choice(self.pool)
        caption_a = self.caption_source(clip, choice.model_a)
        caption_b = self.caption_source(clip, choice.model_b)
        record = ServedPairRecord(
            pair_id=secrets.token_urlsafe(24),
            session_hash=self._session_hash(session_id),
            voter_hash=voter_hash,
            service_run_id=self.run_id,
            served_clock=self.clock(),
            served_at=self.wall_clock(),
            clip_id=clip.id,
            clip_sha256=clip.sha256,
            clip_path=clip.path,
            clip_title=clip.title,
            counts_for_board=clip.counts_for_board,
            model_a=choice.model_a,
            model_b=choice.model_b,
            caption_a=caption_a.text,
            caption_b=caption_b.text,
            decoding_a=caption_a.decoding,
            decoding_b=caption_b.decoding,
            checkpoint_a=caption_a.checkpoint_hash,
            checkpoint_b=caption_b.checkpoint_hash,
            swapped=choice.swapped,
            clap_a=caption_a.clap_similarity,
            clap_b=caption_b.clap_similarity,
            grounding_a=caption_a.grounding,
            grounding_b=caption_b.grounding,
        )
        self.store.add_served_pair(record)
        return ServedPair(
            record.pair_id, clip.id, clip.title, clip.path, caption_a.text, caption_b.text, self.min_listen_s
        )

    def served_audio_path(self, session_id: str, pair_id: str) -> str:
        """The clip of a pair served to this session (the HTTP API streams it; no other path is reachable)."""
        return self._own_pair(session_id, pair_id).clip_path

    def _own_pair(self, session_id: str, pair_id) -> ServedPairRecord:
        self._check_session(session_id)
        if not isinstance(pair_id, str) or not PAIR_ID_PATTERN.match(pair_id):
            raise ArenaError("unknown_pair", "this pair id was never served")
        pair = self.store.served_pair(pair_id)
        if pair is None:
            raise ArenaError("unknown_pair", "this pair id was never served")
        if not hmac.compare_digest(pair.session_hash, self._session_hash(session_id)):
            raise ArenaError("wrong_session", "this pair was served to another session")
        return pair

    def _seconds_since_served(self, pair: ServedPairRecord) -> float:
        # the monotonic clock is only comparable within the run that served the pair; after a restart,
        # fall back to wall time
        if pair.service_run_id == self.run_id:
            return self.clock() - pair.served_clock
        return self.wall_clock() - pair.served_at

    def vote(
        self,
        session_id: str,
        voter_key: str,
        pair_id: str,
        accuracy: str,
        fluency: str,
        listened_s: float | None = None,
    ) -> VoteReceipt:
        for question, answer in (("accuracy", accuracy), ("fluency", fluency)):
            if answer not in ANSWERS:
                raise ArenaError(
                    "bad_answer", f"{question} must be one of {', '.join(ANSWERS)}, not {answer!r}"
                )
        if listened_s is not None and not (isinstance(listened_s, int | float) and 0 <= listened_s < 1e6):
            raise ArenaError("bad_request", "listened_s must be a non-negative number of seconds")
        pair = self._own_pair(session_id, pair_id)
        if pair.voted:
            raise ArenaError("replayed", "this pair has already been voted on")
        for model in (pair.model_a, pair.model_b):
            if model not in self.models:
                raise ArenaError(
                    "unknown_model", f"captioner {model!r} is no longer in the arena; take a new pair"
                )
        if self.wall_clock() - pair.served_at > self.pair_ttl_s:
            raise ArenaError("expired", "this pair has expired; take a new pair")
        elapsed_s = self._seconds_since_served(pair)
        if elapsed_s < self.min_listen_s:
            raise ArenaError(
                "too_early",
                f"please listen for at least {self.min_listen_s:.0f} s before voting "
                f"({elapsed_s:.1f} s so far)",
            )
        voter_hash = self.voter_hash(voter_key)
        with self._vote_lock:
            wait_s = self.vote_limiter.wait_s(voter_hash, self.clock())
            if wait_s > 0:
                raise ArenaError("rate_limited", f"too many votes; try again in {wait_s:.0f} s")
            now = self.wall_clock()
            if self.store.count_voter_votes_since(voter_hash, now - DAY_S) >= self.daily_cap:
                raise ArenaError("daily_cap", f"daily limit of {self.daily_cap} votes reached; thank you!")
            vote = VoteRecord(
                vote_id=uuid.uuid4().hex,
                pair_id=pair.pair_id,
                created_at=now,
                clip_id=pair.clip_id,
                clip_sha256=pair.clip_sha256,
                **shown_pair(pair),
                accuracy=accuracy,
                fluency=fluency,
                listening_s=None if listened_s is None else min(float(listened_s), elapsed_s),
                time_to_vote_s=elapsed_s,
                voter_hash=voter_hash,
                app_version=self.app_version,
                counts_for_board=pair.counts_for_board,
                not_counted_reason=None
                if pair.counts_for_board
                else "clip is not in the public pool (upload)",
                **pair_scores(pair),
            )
            try:
                self.store.record_vote(vote)
            except PairAlreadyVoted:
                raise ArenaError("replayed", "this pair has already been voted on") from None
            self.vote_limiter.add(voter_hash, self.clock())
        if vote.counts_for_board:
            with self._state_lock:
                key = tuple(sorted((vote.model_a, vote.model_b)))
                self._pair_counts[key] = self._pair_counts.get(key, 0) + 1
        self._mirror_pending()
        return VoteReceipt(
            vote.vote_id,
            vote.pair_id,
            vote.model_a,
            vote.model_b,
            accuracy,
            fluency,
            vote.counts_for_board,
            vote.not_counted_reason,
            **pair_scores(vote),
        )

    def _mirror_pending(self) -> None:
        """Copy committed votes not yet in the Hub mirror; a failure leaves them for the next attempt."""
        if self.hub_mirror is None:
            return
        with self._mirror_lock:
            try:
                pending = self.store.unmirrored_votes()
                if pending:
                    self.hub_mirror.append(pending)
                    self.store.mark_mirrored([vote.vote_id for vote in pending])
            except OSError:
                logger.exception("could not append votes to the Hub mirror; will retry on the next vote")

    def votes(self, board_only: bool = False) -> list[VoteRecord]:
        return self.store.votes(board_only=board_only)

    def close(self) -> None:
        if self.hub_mirror is not None:
            self.hub_mirror.stop()
        self.store.close()
