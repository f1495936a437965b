"""The app's settings read from the environment."""

from __future__ import annotations

import pytest

from musiccap.ui import arena_setup
from musiccap.ui.app import (
    COMPARE_CONCURRENCY,
    caption_batch_windows,
    caption_workers,
    compare_concurrency,
    server_address,
    serving_threads,
    trusted_proxies,
)
from musiccap.ui.arena_setup import arena_db_path
from musiccap.worker_pool import BATCH_WINDOWS

SETTINGS = [(serving_threads, "MUSICCAP_TORCH_THREADS", 1),
            (compare_concurrency, "MUSICCAP_COMPARE_CONCURRENCY", COMPARE_CONCURRENCY),
            (caption_batch_windows, "MUSICCAP_CAPTION_BATCH_WINDOWS", BATCH_WINDOWS)]  # fmt: skip


@pytest.mark.parametrize("setting, variable, default", SETTINGS)
def test_counts_default_to_the_chosen_value_and_read_the_environment(monkeypatch, setting, variable, default):
    monkeypatch.delenv(variable, raising=False)
    assert setting() == default
    monkeypatch.setenv(variable, "4")
    assert setting() == 4


@pytest.mark.parametrize("value", ["0", "two", "-1", ""])
@pytest.mark.parametrize("setting, variable, default", SETTINGS)
def test_counts_refuse_what_is_not_a_positive_count(monkeypatch, setting, variable, default, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=variable):
        setting()


def test_caption_workers_two_on_two_cores_zero_on_one_and_zero_allowed(monkeypatch):
    monkeypatch.delenv("MUSICCAP_CAPTION_WORKERS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert caption_workers() == 2
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    assert caption_workers() == 0  # one core: a worker would only add the trips between processes
    monkeypatch.setenv("MUSICCAP_CAPTION_WORKERS", "0")
    assert caption_workers() == 0
    monkeypatch.setenv("MUSICCAP_CAPTION_WORKERS", "3")
    assert caption_workers() == 3
    for value in ("-1", "two", ""):
        monkeypatch.setenv("MUSICCAP_CAPTION_WORKERS", value)
        with pytest.raises(ValueError, match="MUSICCAP_CAPTION_WORKERS must be an integer of at least 0"):
            caption_workers()


def test_server_address_reads_gradios_variables_then_port(monkeypatch):
    for name in ("GRADIO_SERVER_NAME", "GRADIO_SERVER_PORT", "PORT"):
        monkeypatch.delenv(name, raising=False)
    assert server_address() == ("127.0.0.1", 7860)
    monkeypatch.setenv("PORT", "8000")
    assert server_address() == ("127.0.0.1", 8000)
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7861")
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    assert server_address() == ("0.0.0.0", 7861)
    monkeypatch.setenv("GRADIO_SERVER_PORT", "http")
    with pytest.raises(ValueError, match="GRADIO_SERVER_PORT"):
        server_address()


def test_trusted_proxies_one_on_a_space_zero_elsewhere(monkeypatch):
    monkeypatch.delenv("MUSICCAP_TRUSTED_PROXIES", raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert trusted_proxies() == 0
    monkeypatch.setenv("SPACE_ID", "someone/musiccap")
    assert trusted_proxies() == 1
    monkeypatch.setenv("MUSICCAP_TRUSTED_PROXIES", "2")
    assert trusted_proxies() == 2
    monkeypatch.setenv("MUSICCAP_TRUSTED_PROXIES", "yes")
    with pytest.raises(ValueError, match="MUSICCAP_TRUSTED_PROXIES"):
        trusted_proxies()


def test_arena_database_on_persistent_storage_only_on_a_space_that_has_it(monkeypatch, tmp_path):
    monkeypatch.delenv("MUSICCAP_ARENA_DB", raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    storage = tmp_path / "data"
    monkeypatch.setattr(arena_setup, "SPACE_PERSISTENT_STORAGE", storage)
    assert arena_db_path() == arena_setup.DEFAULT_DB
    monkeypatch.setenv("SPACE_ID", "someone/musiccap")
    assert arena_db_path() == arena_setup.DEFAULT_DB  # a Space without persistent storage
    storage.mkdir()
    assert arena_db_path() == storage / "musiccap" / "arena.sqlite"
    monkeypatch.setenv("MUSICCAP_ARENA_DB", str(tmp_path / "mine.sqlite"))
    assert arena_db_path() == tmp_path / "mine.sqlite"
