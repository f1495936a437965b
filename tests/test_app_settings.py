"""The app's settings read from the environment."""

from __future__ import annotations

import pytest

from musiccap.ui.app import serving_threads


def test_serving_threads_default_to_one_and_read_the_environment(monkeypatch):
    monkeypatch.delenv("MUSICCAP_TORCH_THREADS", raising=False)
    assert serving_threads() == 1
    monkeypatch.setenv("MUSICCAP_TORCH_THREADS", "4")
    assert serving_threads() == 4


@pytest.mark.parametrize("value", ["0", "two", "-1", ""])
def test_serving_threads_refuse_what_is_not_a_positive_count(monkeypatch, value):
    monkeypatch.setenv("MUSICCAP_TORCH_THREADS", value)
    with pytest.raises(ValueError, match="MUSICCAP_TORCH_THREADS"):
        serving_threads()
