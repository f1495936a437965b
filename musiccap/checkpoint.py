"""A checkpoint folder on disk: its files, its config, its hash.

A checkpoint folder is ``config.json`` (``{"architecture": name, "config": {...}}``) +
``model.safetensors`` + whatever tokenizer/index files the architecture keeps; the folder alone
rebuilds its model, and loading never unpickles. A checkpoint that reads another one (a CLAP, a
frozen LM) records that part's hash and refuses a different one at load (:func:`require_hash`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def read_config(path: str | Path) -> dict[str, Any]:
    config_file = Path(path) / CONFIG_NAME
    if not config_file.is_file():
        raise FileNotFoundError(f"{path} is not a checkpoint folder (no {CONFIG_NAME})")
    return json.loads(config_file.read_text())


def checkpoint_hash(path: str | Path) -> str:
    """Short hash of a checkpoint's config and weights (recorded with arena votes and results)."""
    digest = hashlib.sha256()
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        file = Path(path) / name
        if file.is_file():
            digest.update(file.read_bytes())
    return digest.hexdigest()[:12]


def require_hash(
    folder: Path, expected: str, owner: str | Path, part: str, remedy: str, found: str = ""
) -> Path:
    """``folder`` when the part in it is the one ``owner`` was trained with (``expected``, its hash
    recorded at build; an empty record checks nothing), else a clear error saying what to do."""
    found = found or checkpoint_hash(folder)
    if expected and found != expected:
        raise ValueError(
            f"{owner} was trained on the {part} {expected}, but {folder} now holds {found}: {remedy}"
        )
    return folder


def config_to_dict(config: Any) -> dict[str, Any]:
    return asdict(config) if is_dataclass(config) else dict(config)


def config_from_dict(config_class: type, values: dict[str, Any]):
    known = {f.name for f in fields(config_class)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"{config_class.__name__} has no fields {sorted(unknown)}")
    return config_class(**values)
