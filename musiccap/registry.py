"""Every model the studio knows, by name: where its checkpoint lives, its role, and the display order.

A *captioner* is shown in the app and the CLI; a *component* is a part other checkpoints name (the
embedded CLAP, BLAP's frozen LM). A checkpoint config names a component by its registry name
(``"clap"``); a path or a Hub id still works (see :func:`musiccap.hub.local_folder`).
``musiccap.load(name)`` loads a captioner by its name (``musiccap/studio.py``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHECKPOINTS = REPO / "checkpoints"
EXAMPLES = REPO / "examples"  # the bundled clips: the app's examples, the arena's public clips


def example_files() -> list[Path]:
    """The bundled example clips, by name."""
    return sorted(p for p in EXAMPLES.glob("*") if p.suffix in {".flac", ".wav", ".ogg", ".mp3"})


CAPTIONER, COMPONENT = "captioner", "component"


@dataclass(frozen=True)
class Entry:
    name: str
    role: str  # CAPTIONER or COMPONENT
    source: str  # a folder under the checkpoints folder, or a Hugging Face Hub id


# In display order: the two floors first, then the papers in publication order, then the parts.
ENTRIES = (
    Entry("random", CAPTIONER, "random"),
    Entry("nearest", CAPTIONER, "nearest"),
    Entry("muscaps", CAPTIONER, "muscaps"),
    Entry("alcap", CAPTIONER, "alcap"),
    Entry("rgmc", CAPTIONER, "rgmc"),
    Entry("blap", CAPTIONER, "blap"),
    Entry("csa", CAPTIONER, "csa"),
    Entry("clap", COMPONENT, "clap"),
    Entry("blap_lm", COMPONENT, "blap_lm"),
)
REGISTRY = {entry.name: entry for entry in ENTRIES}


def entry(name: str) -> Entry:
    if name not in REGISTRY:
        raise ValueError(f"no model named {name!r}; the registry has {list(REGISTRY)}")
    return REGISTRY[name]


def captioner_names() -> list[str]:
    return [e.name for e in ENTRIES if e.role == CAPTIONER]


def component_folder(name: str, base: Path | None = None) -> Path | None:
    """The folder of a registry name: beside ``base`` (a checkpoint folder, so a copied checkpoints
    folder finds its own parts), else in the repository's checkpoints/; None when it is not there."""
    if name not in REGISTRY:
        return None
    source = REGISTRY[name].source
    for root in (base.parent if base is not None else None, CHECKPOINTS):
        if root is not None and (root / source / "config.json").is_file():
            return root / source
    return None


def reference(folder: Path, base: Path) -> str:
    """How the checkpoint at ``base`` names the part in ``folder``: its registry name when that name
    finds this very folder from ``base``, else the path relative to ``base``."""
    for name, found in ((e.name, component_folder(e.name, base)) for e in ENTRIES if e.role == COMPONENT):
        if found is not None and found.resolve() == Path(folder).resolve():
            return name
    return os.path.relpath(Path(folder).resolve(), Path(base).resolve())
