"""The clips listeners hear in the arena: example clips and held-out test clips, plus uploads.

A clip is identified by its content hash as well as its id, so a vote stays tied to the exact audio
that was played even if a file under the same name is later replaced.
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aiff", ".aif"}


@dataclass(frozen=True)
class ArenaClip:
    id: str
    path: str
    sha256: str
    counts_for_board: bool  # False for uploads: anyone could upload a clip that favours one captioner
    title: str


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_pool(audio_files: list[str | Path], *, titles: dict[str, str] | None = None) -> list[ArenaClip]:
    """Public arena pool from example clips and held-out test clips; their votes count for the board.

    Ids are the file stems, made unique with the first hash digits when two files share a stem.
    """
    titles = titles or {}
    pool: list[ArenaClip] = []
    seen_ids: set[str] = set()
    for audio_file in sorted({Path(f).resolve() for f in audio_files}):
        if audio_file.suffix.lower() not in AUDIO_SUFFIXES:
            raise ValueError(f"not an audio file the arena can play: {audio_file}")
        sha256 = file_sha256(audio_file)
        clip_id = audio_file.stem if audio_file.stem not in seen_ids else f"{audio_file.stem}-{sha256[:8]}"
        seen_ids.add(clip_id)
        title = titles.get(str(audio_file), titles.get(audio_file.stem, audio_file.stem.replace("_", " ")))
        pool.append(ArenaClip(clip_id, str(audio_file), sha256, counts_for_board=True, title=title))
    if not pool:
        raise ValueError("the arena pool is empty: give it at least one audio file")
    return pool


def clip_from_upload(path: str | Path) -> ArenaClip:
    """A listener's own clip: it can be judged, but its votes never count for the public board."""
    sha256 = file_sha256(path)
    return ArenaClip(f"upload-{sha256[:16]}", str(path), sha256, counts_for_board=False, title="your upload")
