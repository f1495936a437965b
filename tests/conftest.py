"""Shared test set-up: offline, deterministic, small thread counts, and where ../shared is."""

import os
from pathlib import Path

import pytest

from musiccap.registry import REPO

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

SHARED = REPO.parent / "shared"
FIXTURES = REPO / "tests" / "fixtures"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = SHARED / "data"
    if not path.is_dir():
        pytest.skip("../shared/data is not beside this clone")
    return path
