"""The arena as the studio runs it: its clip pool, the captions it serves, and where votes are kept."""

from __future__ import annotations

import os
from pathlib import Path

from musiccap.analysis import facts, grounding
from musiccap.arena.captions import ServedCaption
from musiccap.arena.clips import ArenaClip, build_pool
from musiccap.arena.hub_sync import mirror_from_env
from musiccap.arena.service import ArenaService, load_or_create_salt
from musiccap.audio import load_audio, windows
from musiccap.clip import Clip
from musiccap.conditioning import clip_analysis
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
    """Captions for the arena from the studio's captioners, on the clip's first 10 s window, each scored
    against that window as on the Compare tab: CLAP similarity (None when no CLAP checkpoint is shipped)
    and the fact check's grounding. The arena caches both with the caption and stores them with each vote.
    """

    def caption(clip: ArenaClip, model: str) -> ServedCaption:
        window_clip = Clip(windows(load_audio(clip.path), "first")[0])
        result = studio.caption_clip(window_clip, model)
        clap = studio.similarity(window_clip, [result.text])
        return ServedCaption(
            text=result.text,
            decoding=result.decoding,
            checkpoint_hash=studio.captioners[model].checkpoint_hash,
            clap_similarity=None if clap is None else clap[0],
            grounding=grounding(
                facts(result.text, clip_analysis(window_clip))
            ),  # reuses the caption's musicnn pass
        )

    return caption


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
