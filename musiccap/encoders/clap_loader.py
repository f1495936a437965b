"""One loader for both CLAP backends, chosen by what the folder holds.

* the embedded CLAP (``checkpoints/clap``): ``config.json`` is ``{"architecture": "clap", ...}``
  -> :class:`~musiccap.encoders.embedded_clap.EmbeddedClap`;
* a ``transformers`` LAION CLAP (``save_pretrained`` of a ``ClapModel`` with its feature extractor
  and tokenizer): ``config.json`` has ``"model_type": "clap"``
  -> :class:`~musiccap.encoders.htsat_clap.HtsatClap` (the full profile).

A name that is no local folder is a Hub id (``laion/larger_clap_music``): ``musiccap.hub`` fetches it.
"""

from __future__ import annotations

import json
from pathlib import Path

from musiccap.hub import pretrained_folder

EMBEDDED, HTSAT = "embedded", "htsat"
# What a LAION CLAP repository needs for HtsatClap: weights (safetensors only), configs, tokenizer.
HUB_FILES = ["*.json", "*.safetensors", "*.txt"]


def clap_folder(name: str | Path, base: Path | None = None) -> Path:
    """The local folder of a CLAP given as a path (absolute, or from ``base``, the working directory,
    the repository) or a Hub id (downloaded on first use)."""
    return pretrained_folder(name, base, HUB_FILES)


def clap_kind(folder: Path) -> str:
    """``EMBEDDED`` or ``HTSAT``, from the folder's config.json."""
    config_file = Path(folder) / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{folder} is not a CLAP checkpoint (no config.json)")
    config = json.loads(config_file.read_text())
    if config.get("architecture") == "clap":
        return EMBEDDED
    if config.get("model_type") == "clap":
        return HTSAT
    raise ValueError(f"{folder} holds neither the embedded CLAP nor a transformers ClapModel")


def load_clap(name: str | Path, base: Path | None = None):
    """EmbeddedClap or HtsatClap, whichever the folder (or Hub repository) holds."""
    folder = clap_folder(name, base)
    if clap_kind(folder) == EMBEDDED:
        from musiccap.encoders.embedded_clap import EmbeddedClap

        return EmbeddedClap.from_pretrained(folder)
    from musiccap.encoders.htsat_clap import HtsatClap

    return HtsatClap.from_pretrained(folder)


def feature_encoder(name: str | Path, base: Path | None = None):
    """What ``train/data.py`` caches for a model reading this CLAP: the embedded audio encoder, or the
    CLAP's log-mel (:class:`~musiccap.encoders.clap.ClapMel`) without loading HTSAT itself."""
    folder = clap_folder(name, base)
    if clap_kind(folder) == EMBEDDED:
        from musiccap.features import embedded_encoder

        return embedded_encoder()
    from musiccap.encoders.clap import ClapMel

    return ClapMel.from_pretrained(str(folder), local_files_only=True)
