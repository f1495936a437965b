"""Streaming, with real small things: the Compare handler yields each caption as it is written, and those
yields reach a Gradio client through the queue one by one, timed as ``musiccap bench`` times them.

Two shipped captioners: random (reads no audio features, so it answers at once) and MusCaps (computes
the window's features, then decodes, and attends over audio time, so it has a heatmap).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from musiccap.audio import from_array, windows
from musiccap.bench import _free_port, timed_compare
from musiccap.models.base import CaptionResult
from musiccap.registry import REPO
from musiccap.studio import ModelCaption, Studio
from musiccap.ui.compare import build_compare_tab, caption_cards, run_compare

EXAMPLE = REPO / "examples" / "real-parrotte-desert.ogg"
MODELS = ["random", "muscaps"]


def card_kinds(cards: str) -> dict[str, str]:
    """Each captioner's card kind in the Compare tab's HTML: model (its caption is in), pending, failed."""
    found = re.findall(r'<article class="mc-card mc-(\w+)"><h4 class="mc-name">([^<]*)</h4>', cards)
    return {name: kind for kind, name in found}


@pytest.fixture(scope="module")
def studio():
    if not all((REPO / "checkpoints" / model / "config.json").is_file() for model in MODELS):
        pytest.skip("the shipped random and muscaps checkpoints are not here")
    return Studio(models=MODELS)


def test_the_compare_handler_yields_the_first_caption_before_the_last_captioner_answers(studio):
    outputs = run_compare(studio, str(EXAMPLE), "first", "", "", 0, 0, -1, False, 0)
    first = next(outputs)
    assert card_kinds(first[1]) == {"random": "model", "muscaps": "pending"}
    assert "CLAP …" in first[1]  # the scores come with the window's last caption
    second = next(outputs)
    assert card_kinds(second[1]) == {"random": "model", "muscaps": "model"}
    heatmap = second[5]  # MusCaps's heatmap is drawn as soon as its caption is in, not at the end
    assert heatmap.layout.title.text == "muscaps @ 00:00–00:10"
    assert second[4]["value"] == "muscaps @ 00:00–00:10"
    *_, last = outputs
    assert last[5] is heatmap and re.search(r"CLAP -?\d", last[1])  # the same figure, not drawn again


@pytest.mark.slow
def test_each_caption_reaches_a_gradio_client_through_the_queue_as_it_is_written(studio):
    import gradio as gr
    from gradio_client import Client, handle_file

    with gr.Blocks() as demo:
        build_compare_tab(studio, [], concurrency_limit=1)
    demo.queue()
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        clip = handle_file(str(EXAMPLE))
        job = client.submit(audio=clip, api_name="/compare")
        job.result()
        received = [card_kinds(outputs[1]) for outputs in job.outputs()]
        assert {"random": "model", "muscaps": "pending"} in received  # an intermediate yield came through
        assert received[-1] == {"random": "model", "muscaps": "model"}
        assert "done:" in job.outputs()[-1][0]

        timed = timed_compare(client, clip)
        assert timed.first_captioner == "random" and set(timed.caption_s) == set(MODELS)
        assert timed.first_caption_s <= timed.caption_s["muscaps"] <= timed.scores_s <= timed.seconds
        assert timed.heatmap_s is not None and timed.updates >= 3
    finally:
        demo.close()


def test_cards_keep_their_places_whichever_captioner_answers_first():
    window = windows(from_array(np.zeros(10 * 16000, dtype=np.float32), 16000), "first")[0]
    papers = {"random": "floor", "muscaps": "MusCaps", "csa": "CSA"}
    late = ModelCaption("csa", window)
    late.result = CaptionResult("csa", "a calm song", tokens=["a"], window=(0.0, 10.0))
    cards = caption_cards([window], {0: [late]}, {}, papers, 10.0)
    assert list(card_kinds(cards).items()) == [
        ("random", "pending"),
        ("muscaps", "pending"),
        ("csa", "model"),
    ]
