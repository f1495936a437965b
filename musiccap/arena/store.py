"""Durable arena storage: every served pair and every vote in one SQLite file (WAL mode).

Durability: `journal_mode=WAL` with `synchronous=FULL`. In WAL mode, NORMAL already survives a killed
process (the WAL is in the OS page cache once `COMMIT` returns) but can lose the last commits on a power
cut or kernel crash, because the WAL is only fsync'ed at checkpoints. FULL fsyncs the WAL on every
commit, so a vote acknowledged to a listener is on disk: the arena promises that no acknowledged vote is
lost, and one fsync per vote costs far less than a listener's 8 s of listening.

A vote is acknowledged only after its transaction commits. Served pairs are stored too, so votes on pairs
served before a restart are still accepted afterwards. All SQL is parameterised.
"""

import json
import sqlite3
import threading
from dataclasses import asdict, dataclass, fields
from pathlib import Path

ANSWERS = ("A", "B", "tie", "both_bad")

SCHEMA = """
CREATE TABLE IF NOT EXISTS served_pairs (
    pair_id TEXT PRIMARY KEY,
    session_hash TEXT NOT NULL,
    voter_hash TEXT NOT NULL,
    service_run_id TEXT NOT NULL,
    served_clock REAL NOT NULL,
    served_at REAL NOT NULL,
    clip_id TEXT NOT NULL,
    clip_sha256 TEXT NOT NULL,
    clip_path TEXT NOT NULL,
    clip_title TEXT NOT NULL,
    counts_for_board INTEGER NOT NULL,
    model_a TEXT NOT NULL,
    model_b TEXT NOT NULL,
    caption_a TEXT NOT NULL,
    caption_b TEXT NOT NULL,
    decoding_a TEXT NOT NULL,
    decoding_b TEXT NOT NULL,
    checkpoint_a TEXT NOT NULL,
    checkpoint_b TEXT NOT NULL,
    swapped INTEGER NOT NULL,
    voted INTEGER NOT NULL DEFAULT 0,
    clap_a REAL,
    clap_b REAL,
    grounding_a REAL,
    grounding_b REAL
);
CREATE TABLE IF NOT EXISTS votes (
    vote_id TEXT PRIMARY KEY,
    pair_id TEXT NOT NULL UNIQUE REFERENCES served_pairs(pair_id),
    created_at REAL NOT NULL,
    clip_id TEXT NOT NULL,
    clip_sha256 TEXT NOT NULL,
    model_a TEXT NOT NULL,
    model_b TEXT NOT NULL,
    caption_a TEXT NOT NULL,
    caption_b TEXT NOT NULL,
    decoding_a TEXT NOT NULL,
    decoding_b TEXT NOT NULL,
    checkpoint_a TEXT NOT NULL,
    checkpoint_b TEXT NOT NULL,
    swapped INTEGER NOT NULL,
    accuracy TEXT NOT NULL CHECK (accuracy IN ('A', 'B', 'tie', 'both_bad')),
    fluency TEXT NOT NULL CHECK (fluency IN ('A', 'B', 'tie', 'both_bad')),
    listening_s REAL,
    time_to_vote_s REAL NOT NULL,
    voter_hash TEXT NOT NULL,
    app_version TEXT NOT NULL,
    counts_for_board INTEGER NOT NULL,
    not_counted_reason TEXT,
    mirrored INTEGER NOT NULL DEFAULT 0,
    clap_a REAL,
    clap_b REAL,
    grounding_a REAL,
    grounding_b REAL
);
CREATE INDEX IF NOT EXISTS votes_by_voter ON votes (voter_hash, created_at);
CREATE INDEX IF NOT EXISTS votes_not_mirrored ON votes (mirrored) WHERE mirrored = 0;
"""

# Each caption's automatic scores, computed by the server when the pair is served and copied into its
# vote: CLAP similarity to the clip and the fact check's grounding (musiccap.analysis). NULL when a score
# is unavailable, and in rows written before these columns existed (the store adds them on open).
SCORE_FIELDS = ("clap_a", "clap_b", "grounding_a", "grounding_b")


@dataclass
class ServedPairRecord:
    """A pair as served: model_a is the captioner shown on the left (caption A)."""

    pair_id: str
    session_hash: str
    voter_hash: str
    service_run_id: str  # which service instance served it: its monotonic clock is only valid there
    served_clock: float
    served_at: float  # unix seconds
    clip_id: str
    clip_sha256: str
    clip_path: str
    clip_title: str
    counts_for_board: bool
    model_a: str
    model_b: str
    caption_a: str
    caption_b: str
    decoding_a: dict
    decoding_b: dict
    checkpoint_a: str
    checkpoint_b: str
    swapped: bool  # True when the left caption is the alphabetically later captioner
    voted: bool = False
    clap_a: float | None = None  # caption A's CLAP similarity to the clip
    clap_b: float | None = None
    grounding_a: float | None = None  # caption A's grounding score (musiccap.analysis.grounding)
    grounding_b: float | None = None


@dataclass
class VoteRecord:
    vote_id: str
    pair_id: str
    created_at: float  # unix seconds
    clip_id: str
    clip_sha256: str
    model_a: str
    model_b: str
    caption_a: str
    caption_b: str
    decoding_a: dict
    decoding_b: dict
    checkpoint_a: str
    checkpoint_b: str
    swapped: bool
    accuracy: str  # "A" | "B" | "tie" | "both_bad", A and B as displayed
    fluency: str
    listening_s: float | None  # reported by the player; the server enforces time_to_vote_s instead
    time_to_vote_s: float  # server clock, from serving the pair to the vote
    voter_hash: str  # salted hash of the voter key, never the raw address
    app_version: str
    counts_for_board: bool
    not_counted_reason: str | None
    # the captions' scores as stored at vote time (SCORE_FIELDS); None in votes cast before they were
    clap_a: float | None = None
    clap_b: float | None = None
    grounding_a: float | None = None
    grounding_b: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


# What the voter was shown: a served pair's fields that its vote copies, and a restored vote gives back.
SHOWN_PAIR_FIELDS = (
    "model_a",
    "model_b",
    "caption_a",
    "caption_b",
    "decoding_a",
    "decoding_b",
    "checkpoint_a",
    "checkpoint_b",
    "swapped",
)


def shown_pair(record: ServedPairRecord | VoteRecord) -> dict:
    return {name: getattr(record, name) for name in SHOWN_PAIR_FIELDS}


def pair_scores(record: ServedPairRecord | VoteRecord) -> dict:
    return {name: getattr(record, name) for name in SCORE_FIELDS}


def _pair_of_restored_vote(vote: VoteRecord) -> ServedPairRecord:
    return ServedPairRecord(
        pair_id=vote.pair_id,
        session_hash="",
        voter_hash=vote.voter_hash,
        service_run_id="restored",
        served_clock=0.0,
        served_at=vote.created_at - vote.time_to_vote_s,
        clip_id=vote.clip_id,
        clip_sha256=vote.clip_sha256,
        clip_path="",
        clip_title="",
        counts_for_board=vote.counts_for_board,
        **shown_pair(vote),
        voted=True,
        **pair_scores(vote),
    )


class PairAlreadyVoted(Exception):
    pass


_JSON_COLUMNS = {"decoding_a", "decoding_b"}
_BOOL_COLUMNS = {"counts_for_board", "swapped", "voted"}


def _to_row(record) -> dict:
    row = asdict(record)
    for name in _JSON_COLUMNS:
        row[name] = json.dumps(row[name], sort_keys=True)
    for name in _BOOL_COLUMNS & row.keys():
        row[name] = int(row[name])
    return row


def _from_row(cls, row: sqlite3.Row):
    values = {f.name: row[f.name] for f in fields(cls)}
    for name in _JSON_COLUMNS:
        values[name] = json.loads(values[name])
    for name in _BOOL_COLUMNS & values.keys():
        values[name] = bool(values[name])
    return cls(**values)


def _insert_sql(table: str, cls) -> str:
    names = [f.name for f in fields(cls)]
    return f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join(':' + n for n in names)})"


class VoteStore:
    """One connection shared by the server's threads, serialised by a lock (SQLite has one writer anyway)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # isolation_level=None: transactions are opened explicitly with BEGIN IMMEDIATE below
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30.0)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)
        self._add_score_columns()
        self._insert_pair_sql = _insert_sql("served_pairs", ServedPairRecord)
        self._insert_vote_sql = _insert_sql("votes", VoteRecord)

    def _add_score_columns(self) -> None:
        """A database written before the score columns existed gets them, NULL in its existing rows."""
        for table in ("served_pairs", "votes"):
            present = {row["name"] for row in self._db.execute(f"PRAGMA table_info({table})")}
            for name in SCORE_FIELDS:
                if name not in present:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {name} REAL")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add_served_pair(self, pair: ServedPairRecord) -> None:
        with self._lock:
            self._db.execute(self._insert_pair_sql, _to_row(pair))

    def served_pair(self, pair_id: str) -> ServedPairRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM served_pairs WHERE pair_id = ?", (pair_id,)).fetchone()
        return None if row is None else _from_row(ServedPairRecord, row)

    def record_vote(self, vote: VoteRecord) -> None:
        """Mark the pair voted and insert the vote in one transaction; returns only once committed."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                claimed = self._db.execute(
                    "UPDATE served_pairs SET voted = 1 WHERE pair_id = ? AND voted = 0", (vote.pair_id,)
                ).rowcount
                if claimed != 1:
                    raise PairAlreadyVoted(vote.pair_id)
                self._db.execute(self._insert_vote_sql, _to_row(vote))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def count_voter_votes_since(self, voter_hash: str, since: float) -> int:
        with self._lock:
            (count,) = self._db.execute(
                "SELECT COUNT(*) FROM votes WHERE voter_hash = ? AND created_at >= ?", (voter_hash, since)
            ).fetchone()
        return count

    def board_pair_counts(self) -> dict[tuple[str, str], int]:
        """Votes that count for the board per unordered captioner pair, keyed (first, second) sorted."""
        with self._lock:
            rows = self._db.execute(
                "SELECT model_a, model_b, COUNT(*) FROM votes WHERE counts_for_board = 1 GROUP BY model_a, model_b"
            ).fetchall()
        counts: dict[tuple[str, str], int] = {}
        for model_a, model_b, count in rows:
            key = tuple(sorted((model_a, model_b)))
            counts[key] = counts.get(key, 0) + count
        return counts

    def votes(self, board_only: bool = False) -> list[VoteRecord]:
        query = (
            "SELECT * FROM votes"
            + (" WHERE counts_for_board = 1" if board_only else "")
            + " ORDER BY created_at"
        )
        with self._lock:
            rows = self._db.execute(query).fetchall()
        return [_from_row(VoteRecord, row) for row in rows]

    def vote_count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM votes").fetchone()[0]

    def unmirrored_votes(self, limit: int = 1000) -> list[VoteRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM votes WHERE mirrored = 0 ORDER BY created_at LIMIT ?", (limit,)
            ).fetchall()
        return [_from_row(VoteRecord, row) for row in rows]

    def restore_mirrored_votes(self, votes: list[VoteRecord]) -> int:
        """Add votes read back from the Hub mirror that this database lacks; returns how many were added.

        Each is marked mirrored (it is on the Hub already) and gets a voted served-pair row built from the
        vote, so it can never be voted on again; the row's empty session hash matches no session.
        """
        added = 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for vote in votes:
                    known = self._db.execute(
                        "SELECT 1 FROM votes WHERE vote_id = ? OR pair_id = ?", (vote.vote_id, vote.pair_id)
                    ).fetchone()
                    if known:
                        continue
                    claimed = self._db.execute(
                        "UPDATE served_pairs SET voted = 1 WHERE pair_id = ?", (vote.pair_id,)
                    ).rowcount
                    if not claimed:
                        self._db.execute(self._insert_pair_sql, _to_row(_pair_of_restored_vote(vote)))
                    self._db.execute(self._insert_vote_sql, _to_row(vote))
                    self._db.execute("UPDATE votes SET mirrored = 1 WHERE vote_id = ?", (vote.vote_id,))
                    added += 1
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return added

    def mark_mirrored(self, vote_ids: list[str]) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("UPDATE votes SET mirrored = 1 WHERE vote_id = ?", [(v,) for v in vote_ids])
            self._db.execute("COMMIT")
