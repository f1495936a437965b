"""The studio as a user meets it: started from app.py, driven in headless Chromium and over the API.

One app process serves every test in this file (start-up loads every checkpoint once).
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.served_app import served_app

ARTIFACTS = REPO / "test-artifacts"
EXAMPLE = REPO / "examples" / "real-parrotte-desert.ogg"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shipped_captioners() -> list[str]:
    from musiccap.models.base import read_config

    return [
        p.name
        for p in sorted((REPO / "checkpoints").iterdir())
        if (p / "config.json").is_file() and read_config(p).get("architecture") not in (None, "clap")
    ]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    if not shipped_captioners():
        pytest.skip("no shipped checkpoints")
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "MUSICCAP_ARENA_DB": str(tmp_path_factory.mktemp("arena") / "votes.sqlite"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    log_path = tmp_path_factory.mktemp("app") / "app.log"
    with served_app([sys.executable, "app.py"], env, port, log_path) as url:
        yield url


def test_api_compare_returns_every_caption(app_url):
    from gradio_client import Client, handle_file

    client = Client(app_url, verbose=False)
    outputs = client.predict(
        handle_file(str(EXAMPLE)),
        "first",
        "",
        "a calm piano melody.",
        0,
        0,
        -1,
        False,
        0,
        api_name="/compare",
    )
    status, table = outputs[0], outputs[1]
    models = {row[1] for row in table["data"]}
    assert models == set(shipped_captioners()), status
    assert all(row[2] and not row[2].startswith("(failed") for row in table["data"])
    assert "done:" in status


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed")
def test_browser_upload_captions_heatmaps_and_errors(app_url, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    bad = tmp_path / "notes.wav"
    bad.write_text("this is a text file, not audio")
    args = [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.goto(app_url)
        caption_button = page.get_by_role("button", name="Caption", exact=True)
        expect(caption_button).to_be_visible(timeout=60_000)

        # a corrupt upload shows a message and the session stays usable
        page.locator("input[type=file]").first.set_input_files(str(bad))
        page.wait_for_timeout(1500)
        caption_button.click()
        expect(page.get_by_text("not a readable audio file").first).to_be_visible(timeout=60_000)
        page.screenshot(path=str(ARTIFACTS / "compare-error.png"))

        page.reload()
        expect(caption_button).to_be_visible(timeout=60_000)
        page.locator("input[type=file]").first.set_input_files(str(EXAMPLE))
        page.wait_for_timeout(1500)
        caption_button.click()
        expect(page.locator("#compare-status")).to_contain_text("done:", timeout=120_000)
        table = page.locator("#captions-table")
        for name in shipped_captioners():
            expect(table).to_contain_text(name)
        expect(page.locator("#heatmap-plot .js-plotly-plot")).to_be_visible(timeout=30_000)
        if (REPO / "checkpoints" / "clap" / "config.json").is_file():
            expect(page.locator("#similarity-plot .js-plotly-plot")).to_be_visible(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "compare.png"), full_page=True)
        browser.close()
