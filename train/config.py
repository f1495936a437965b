"""A training config: the YAML file (``train/configs/*.yaml``) with ``section.key=value`` overrides."""

from __future__ import annotations

from pathlib import Path

import yaml


def load_config(path: str | Path, overrides: list[str]) -> dict:
    config = yaml.safe_load(Path(path).read_text()) or {}
    for override in overrides:
        if "=" not in override:
            raise SystemExit(f"override {override!r} is not section.key=value")
        dotted, raw = override.split("=", 1)
        target = config
        *parents, leaf = dotted.split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = parse_value(raw)
    return config


def parse_value(raw: str):
    """YAML scalars, plus the numbers YAML 1.1 leaves as strings (``3e-3`` has no dot)."""
    value = yaml.safe_load(raw)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value
