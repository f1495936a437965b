"""The Arena and Leaderboard tabs as a listener meets them, in headless Chromium on the app started from
app.py: an explained empty board, a pair already loaded, the countdown, the vote, the names and scores
revealed, and the board updated, with the stored scores compared with the vote.

The minimum listening time is shortened with MUSICCAP_ARENA_MIN_LISTEN_S so the test waits seconds, not 8.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.served_app import served_app
from tests.test_app_e2e import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, free_port, shipped_captioners

MIN_LISTEN_S = 4
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed"),
]


@pytest.fixture(scope="module")
def arena_app(tmp_path_factory):
    if len(shipped_captioners()) < 2:
        pytest.skip("the arena needs two shipped captioners")
    folder = tmp_path_factory.mktemp("arena-app")
    port = free_port()
    env = {
        **{name: value for name, value in os.environ.items() if not name.startswith(("MUSICCAP_", "SPACE_"))},
        "GRADIO_SERVER_PORT": str(port),
        "MUSICCAP_ARENA_DB": str(folder / "arena.sqlite"),
        "MUSICCAP_ARENA_MIN_LISTEN_S": str(MIN_LISTEN_S),
        "MUSICCAP_CAPTION_WORKERS": "0",  # the arena captions in the app's process: no workers to start
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    with served_app([sys.executable, "app.py"], env, port, folder / "app.log") as url:
        yield url


def test_vote_in_the_arena_and_see_the_board(arena_app):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    captioners = shipped_captioners()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1600})

        # before any vote the board explains itself instead of showing empty tables
        page.goto(arena_app)
        page.get_by_role("tab", name="Leaderboard").click()
        expect(page.locator("#leaderboard-empty")).to_contain_text("No votes yet", timeout=60_000)
        expect(page.locator("#leaderboard-empty")).to_contain_text("Arena")
        page.screenshot(path=str(ARTIFACTS / "leaderboard-empty.png"))

        # a fresh page: the arena has its pair without pressing "New pair"
        page.reload()
        page.get_by_role("tab", name="Arena").click()
        vote = page.locator("#arena-vote")
        expect(page.get_by_role("textbox", name="Caption A")).to_have_value(
            re.compile(r"\w"), timeout=120_000
        )
        expect(page.get_by_role("textbox", name="Caption B")).to_have_value(re.compile(r"\w"))
        countdown = page.locator("#arena-countdown")
        expect(countdown).to_contain_text(re.compile(r"Voting opens in \d+ s"), timeout=10_000)
        expect(vote).to_be_disabled()
        page.screenshot(path=str(ARTIFACTS / "arena-countdown.png"))
        page.get_by_role("radio", name="Caption A").first.check()
        page.get_by_role("radio", name="Too similar to tell").nth(1).check()
        expect(countdown).to_contain_text("You can vote now", timeout=MIN_LISTEN_S * 1000 + 15_000)
        expect(vote).to_be_enabled()
        vote.click()

        reveal = page.locator("#arena-reveal")
        expect(reveal).to_contain_text("CLAP similarity", timeout=60_000)
        expect(page.locator("#arena-status")).to_contain_text("your vote is saved")
        revealed = reveal.inner_text()
        assert len([name for name in captioners if re.search(rf"\b{name}\b", revealed)]) == 2, revealed
        if (REPO / "checkpoints" / "clap" / "config.json").is_file():
            assert len(re.findall(r"-?\d\.\d{3}", revealed)) == 2, revealed  # both captions' CLAP scores
        expect(vote).to_be_disabled()  # this pair is spent
        page.screenshot(path=str(ARTIFACTS / "arena.png"), full_page=True)

        page.get_by_role("tab", name="Leaderboard").click()
        expect(page.locator("#leaderboard-summary")).to_contain_text("1 vote fitted", timeout=60_000)
        expect(page.locator("#leaderboard-empty")).to_be_hidden()
        expect(page.locator("#win-matrix")).to_contain_text("1 of 1", timeout=30_000)
        # the vote had a winner (accuracy: caption A): the scores it stored are compared with it
        metric_table = page.locator("#metric-vs-listener")
        expect(metric_table).to_contain_text("did the caption the automatic score rates higher win")
        if (REPO / "checkpoints" / "clap" / "config.json").is_file():
            expect(metric_table).to_contain_text("CLAP similarity")
        page.screenshot(path=str(ARTIFACTS / "leaderboard.png"), full_page=True)
        browser.close()
