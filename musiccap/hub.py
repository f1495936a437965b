"""Where a pretrained folder named in a config lives: a local path, else a Hugging Face Hub repository.

The full profile names its pretrained parts by Hub id (``laion/larger_clap_music``,
``google/flan-t5-base``); the embedded profile by folder (``checkpoints/clap``). Both go through
:func:`pretrained_folder`, so a config may hold either. A Hub repository is fetched once with
``huggingface_hub.snapshot_download`` into the Hub cache (on a Space; tests never reach the Hub).
"""

from __future__ import annotations

from pathlib import Path

from musiccap.registry import REPO, component_folder


def local_folder(name: str | Path, base: Path | None = None) -> Path | None:
    """``name`` as an existing folder: a registry name (musiccap/registry.py), an absolute path, or a
    path relative to ``base`` (a checkpoint folder), the working directory, then the repository root;
    None when it is none of these (a Hub id)."""
    registered = component_folder(str(name), base)
    if registered is not None:
        return registered
    path = Path(name)
    if path.is_absolute():
        return path if path.exists() else None
    for root in (base, Path.cwd(), REPO):
        if root is not None and (root / path).exists():
            return root / path
    return None


def resolve_path(path: str | Path, base: Path | None = None) -> Path:
    """:func:`local_folder`, else the path from the repository root (a folder still to be made)."""
    return local_folder(path, base) or REPO / path


def portable_path(name: str | Path, base: Path | None = None) -> str:
    """A local folder as an absolute path; a Hub id as it is (the Hub cache differs per machine)."""
    folder = local_folder(name, base)
    return str(folder.resolve()) if folder is not None else str(name)


def pretrained_folder(
    name: str | Path, base: Path | None = None, allow_patterns: list[str] | None = None
) -> Path:
    """The local folder of ``name``: found on disk (see :func:`local_folder`) or downloaded from the Hub
    (only the files matching ``allow_patterns``)."""
    folder = local_folder(name, base)
    if folder is not None:
        return folder
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(str(name), allow_patterns=allow_patterns))
    except Exception as error:  # offline, unknown repo, malformed id: the Hub raises many kinds
        raise FileNotFoundError(
            f"{name} is neither a local folder nor a Hub repository I could fetch"
        ) from error
    if "*.safetensors" in (allow_patterns or []) and not any(folder.glob("*.safetensors")):
        raise FileNotFoundError(
            f"{name} on the Hub has no safetensors weights (pickled weights are never loaded)"
        )
    return folder
