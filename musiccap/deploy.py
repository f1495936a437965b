"""``musiccap deploy --space OWNER/NAME [--dry-run] [--private]``: the app as a Hugging Face Space.

What a Space needs is chosen by explicit patterns (:data:`ALLOW_PATTERNS`, :data:`IGNORE_PATTERNS`):
the entry point, the requirements, the README (its front matter is the Space's configuration), the
runtime package, every checkpoint, the example clips and the docs the README links to. Nothing else from
the working tree goes (no ``train/``, no tests, no local arena database, never pickled weights).

One file comes from outside the tree: musicnn's converted weights. The app reads them from the
``musicnn`` wheel, which a Space cannot install (its pins ask for TensorFlow and numpy < 1.17, see
``scripts/install.sh``), so they travel as ``vendor/musicnn/MTT_musicnn.safetensors`` and ``app.py``
points ``MUSICCAP_CACHE`` at ``vendor/`` when it is there.

The files are staged (copied) into one folder and sent with a single ``upload_folder`` call, so a Space
rebuilds once per deploy; the Hub client stores the large weight files (five are over 10 MB) through
LFS/Xet itself, which a plain ``git push`` would refuse without a ``.gitattributes``. ``--dry-run``
lists the same staged paths and their total size and makes no network call.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub.utils import filter_repo_objects

REPO = Path(__file__).resolve().parents[1]

ALLOW_PATTERNS = [
    "app.py",
    "requirements.txt",
    "README.md",
    "musiccap/*.py",  # fnmatch's * crosses folders: every module of the package
    "musiccap/encoders/MUSICNN_LICENSE",
    "checkpoints/*.safetensors",
    "checkpoints/*.json",
    "checkpoints/*.jsonl",
    "checkpoints/*.md",
    "examples/*.ogg",
    "examples/*.flac",
    "examples/*.wav",
    "examples/*.mp3",
    "examples/NOTICE.md",
    "docs/*.md",
    "docs/*.json",
    "docs/compare.png",  # the README's screenshot
    "vendor/musicnn/*.safetensors",
]
IGNORE_PATTERNS = ["*/__pycache__/*", "*.pyc", ".*", "*/.*"]
MUSICNN_MODEL = "MTT_musicnn"
MUSICNN_IN_SPACE = f"vendor/musicnn/{MUSICNN_MODEL}.safetensors"
LARGE_FILE_BYTES = 10 * 1024 * 1024  # what the Hub refuses in a plain git push


@dataclass(frozen=True)
class SpaceFile:
    path_in_space: str
    local_path: Path
    size: int


def musicnn_weights() -> Path:
    """The converted musicnn weights (converted from the installed wheel on first use, no network)."""
    from musiccap.encoders.musicnn import cached_weights

    return cached_weights(MUSICNN_MODEL)


def space_files(repo: Path = REPO, musicnn: Path | None = None) -> list[SpaceFile]:
    """Every file the Space receives, sorted by its path there."""
    # only the top-level entries a pattern names are walked: data/ or runs/ may hold a whole corpus
    tops = {pattern.split("/")[0] for pattern in ALLOW_PATTERNS}
    candidates = {
        path.relative_to(repo).as_posix(): path
        for top in sorted(tops)
        for path in ([repo / top] if (repo / top).is_file() else (repo / top).rglob("*"))
        if path.is_file()
    }
    candidates[MUSICNN_IN_SPACE] = musicnn or musicnn_weights()
    chosen = filter_repo_objects(
        sorted(candidates), allow_patterns=ALLOW_PATTERNS, ignore_patterns=IGNORE_PATTERNS
    )
    files = [SpaceFile(name, candidates[name], candidates[name].stat().st_size) for name in chosen]
    missing = [
        name
        for name in ("app.py", "requirements.txt", "README.md", MUSICNN_IN_SPACE)
        if name not in {f.path_in_space for f in files}
    ]
    if missing:
        raise FileNotFoundError(f"the Space would lack {', '.join(missing)} (looked in {repo})")
    return files


def format_size(size: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def plan_text(space: str, files: list[SpaceFile], private: bool) -> str:
    width = max(len(f.path_in_space) for f in files)
    lines = [f"Space {space} (Gradio SDK, {'private' if private else 'public'}) receives:"]
    lines += [f"  {f.path_in_space:<{width}}  {format_size(f.size):>9}" for f in files]
    large = sum(f.size > LARGE_FILE_BYTES for f in files)
    total = sum(f.size for f in files)
    lines.append(
        f"{len(files)} files, {format_size(total)} ({total} bytes) in total; "
        f"{large} over 10 MB go through LFS/Xet"
    )
    return "\n".join(lines)


def stage(files: list[SpaceFile], folder: Path) -> None:
    """Copy the files into ``folder`` under their Space paths (one folder, so one upload and one commit)."""
    for file in files:
        target = folder / file.path_in_space
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file.local_path, target)


def deploy(
    space: str, *, private: bool = False, dry_run: bool = False, hf_api=None, log=print
) -> list[SpaceFile]:
    """Create the Space if needed and upload the app; ``dry_run`` only prints the plan."""
    from huggingface_hub.utils import validate_repo_id

    validate_repo_id(space)
    if space.count("/") != 1:
        raise ValueError(f"--space must be OWNER/NAME, not {space!r}")
    files = space_files()
    log(plan_text(space, files, private))
    if dry_run:
        return files
    from huggingface_hub import HfApi

    api = hf_api or HfApi()
    url = api.create_repo(space, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="musiccap-space-") as folder:
        stage(files, Path(folder))
        api.upload_folder(
            repo_id=space,
            repo_type="space",
            folder_path=folder,
            allow_patterns=list(ALLOW_PATTERNS),
            ignore_patterns=list(IGNORE_PATTERNS),  # copies: upload_folder appends its defaults in place
            commit_message="Deploy musiccap with `musiccap deploy`",
        )
    log(f"uploaded to {url}")
    return files
