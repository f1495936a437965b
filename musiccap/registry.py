"""Every model the studio knows, by name: where its checkpoint lives, its role, and the display order.

A *captioner* is shown in the app and the CLI; a *component* is a part other checkpoints name (the
embedded CLAP, BLAP's frozen LM). A checkpoint config names a component by its registry name
(``"clap"``); a path or a Hub id still works (see :func:`musiccap.hub.local_folder`).

    import musiccap
    captioner = musiccap.load("csa")
    print(musiccap.caption("examples/real-parrotte-desert.ogg", "csa")[0].text)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the registry sits below the models: they are imported only to load one
    from musiccap.models.base import Captioner, CaptionResult

REPO = Path(__file__).resolve().parents[1]
CHECKPOINTS = REPO / "checkpoints"
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


def load(name_or_path: str | Path, checkpoints: str | Path | None = None) -> Captioner:
    """A captioner by registry name (from ``checkpoints``, default the repository's) or checkpoint folder."""
    from musiccap.models.base import load_captioner

    if str(name_or_path) in REGISTRY:
        if entry(str(name_or_path)).role != CAPTIONER:
            raise ValueError(f"{name_or_path!r} is a component, not a captioner")
        folder = Path(checkpoints or CHECKPOINTS) / REGISTRY[str(name_or_path)].source
    else:
        folder = Path(name_or_path)
    return load_captioner(folder)


def caption(
    audio_file: str | Path, model: str | Path = "csa", window: str = "first", *, clean_text: bool = True
) -> list[CaptionResult]:
    """Caption a file's 10 s windows (``first``, ``middle`` or ``all``) with one captioner."""
    from musiccap.audio import load_audio, windows
    from musiccap.clip import Clip

    captioner = load(model)
    decoding = captioner.default_decoding.replace(clean_text=clean_text, dedupe_sentences=clean_text)
    clips = [Clip(w) for w in windows(load_audio(audio_file), window)]
    return captioner.caption_batch(clips, decoding)
