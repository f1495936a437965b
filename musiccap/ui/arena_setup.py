"""The arena as the studio runs it: its clip pool, the captions it serves, and where votes are kept."""

from __future__ import annotations

import os
from pathlib import Path

from musiccap.arena.captions import ServedCaption
from musiccap.arena.clips import ArenaClip, build_pool
from musiccap.arena.hub_sync import mirror_from_env
from musiccap.arena.service import ArenaService, load_or_create_salt
from musiccap.audio import load_audio, windows
from musiccap.clip import Clip
from musiccap.registry import REPO
from musiccap.studio import Studio

DEFAULT_DB = REPO / "data" / "arena.sqlite"
# where a Space mounts its persistent storage; anything elsewhere on a Space is lost on restart
SPACE_PERSISTENT_STORAGE = Path("/data")


def arena_db_path() -> Path:
    """``MUSICCAP_ARENA_DB``; else, on a Space with persistent storage, /data/musiccap/arena.sqlite;
    else data/arena.sqlite in the repository."""
    if os.environ.get("MUSICCAP_ARENA_DB"):
        return Path(os.environ["MUSICCAP_ARENA_DB"])
    storage = SPACE_PERSISTENT_STORAGE
    if os.environ.get("SPACE_ID") and storage.is_dir() and os.access(storage, os.W_OK):
        return storage / "musiccap" / "arena.sqlite"
    return DEFAULT_DB


def studio_caption_source(studio: Studio):
    """Captions for the arena from the studio's captioners, on the clip's first 10 s window."""

    def caption(clip: ArenaClip, model: str) -> ServedCaption:
        window = windows(load_audio(clip.path), "first")[0]
        result = studio.caption_clip(Clip(window), model)
        captioner = studio.captioners[model]
        return ServedCaption(
            text=result.text, decoding=result.decoding, checkpoint_hash=captioner.checkpoint_hash
        )

    return caption


def studio_clap_scores(studio: Studio):
    """Each arena caption's CLAP similarity to the window it was written for (the clip's first 10 s),
    scored by the studio as on the Compare tab; None when no CLAP checkpoint is shipped."""

    def scores(audio_path: str, captions: list[str]) -> list[float] | None:
        window = windows(load_audio(audio_path), "first")[0]
        return studio.similarity(Clip(window), captions)

    return scores


def arena_for(
    studio: Studio, audio_files: list[str], db_path: str | Path | None = None
) -> ArenaService | None:
    """An arena over the example clips, or None when fewer than two captioners are loaded."""
    models = [name for name in studio.captioners if name != "random"] or list(studio.captioners)
    if len(models) < 2 or not audio_files:
        return None
    db_path = Path(db_path or arena_db_path())
    db_path.parent.mkdir(parents=True, exist_ok=True)
    titles = {str(f): Path(f).stem.replace("-", " ") for f in audio_files}
    pool = build_pool(audio_files, titles=titles)
    hub_mirror = mirror_from_env(db_path)  # restores the mirrored votes first, so the board survives restarts
    return ArenaService(
        db_path,
        models,
        pool,
        studio_caption_source(studio),
        salt=load_or_create_salt(db_path),
        min_listen_s=float(os.environ.get("MUSICCAP_ARENA_MIN_LISTEN_S", "8")),
        hub_mirror=hub_mirror,
    )
