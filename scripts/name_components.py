"""Rewrite checkpoint configs to name their components by registry name (``"clap_path": "clap"``).

Checkpoints saved before the registry (musiccap/registry.py) name the CLAP and BLAP's LM by path
(``"checkpoints/clap"``, ``"../clap"``). They load as they are; this script only makes their
configs say what new saves say. A path is replaced by a name only when the name finds the very
same folder from the checkpoint; weights and every other key stay as they are. The config's bytes
change, so the checkpoint's hash (``musiccap.checkpoint.checkpoint_hash``, recorded with arena
votes) changes too: the script prints old and new hashes.

    python scripts/name_components.py              # what it would change
    python scripts/name_components.py --write      # change it
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from musiccap.checkpoint import CONFIG_NAME, checkpoint_hash, read_config
from musiccap.hub import local_folder
from musiccap.registry import CHECKPOINTS, COMPONENT, REGISTRY, component_folder

COMPONENT_KEYS = ("clap_path", "lm_path")


def renamed(folder: Path) -> dict[str, tuple[str, str]]:
    """{key: (path, registry name)} for every component this checkpoint names by a path."""
    config = read_config(folder).get("config", {})  # a T5 folder (blap_lm) has no component
    changes = {}
    for key in COMPONENT_KEYS:
        value = config.get(key)
        if not value or value in REGISTRY:
            continue
        found = local_folder(value, folder)
        for name, entry in REGISTRY.items():
            by_name = component_folder(name, folder)
            if entry.role == COMPONENT and found and by_name and by_name.resolve() == found.resolve():
                changes[key] = (value, name)
    return changes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoints", default=str(CHECKPOINTS))
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    for folder in sorted(p for p in Path(args.checkpoints).iterdir() if (p / CONFIG_NAME).is_file()):
        changes = renamed(folder)
        if not changes:
            continue
        before = checkpoint_hash(folder)
        if args.write:
            document = read_config(folder)
            for key, (_, name) in changes.items():
                document["config"][key] = name
            (folder / CONFIG_NAME).write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
        after = checkpoint_hash(folder) if args.write else "(unchanged: --write to apply)"
        described = ", ".join(f"{key}: {old!r} -> {new!r}" for key, (old, new) in changes.items())
        print(f"{folder.name}: {described}; hash {before} -> {after}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
