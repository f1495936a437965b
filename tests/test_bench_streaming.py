"""Streaming, with real small things: the Compare handler yields each caption as it is written, and those
yields reach a Gradio client through the queue one by one, timed as ``musiccap bench`` times them.

Two shipped captioners: random (reads no audio features, so it answers at once) and MusCaps (computes
the window's features, then decodes, and attends over audio time, so it has a heatmap). Each caption's
CLAP score and fact check come with it; random's, which came before the window's features, with MusCaps's.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from musiccap.audio import from_array, load_audio, windows
from musiccap.bench import _free_port, timed_compare
from musiccap.models.base import CaptionResult
from musiccap.registry import REPO
from musiccap.studio import ModelCaption, Studio, WindowComparison
from musiccap.ui.compare import build_compare_tab, caption_cards, run_compare

EXAMPLE = REPO / "examples" / "real-parrotte-desert.ogg"
MODELS = ["random", "muscaps"]


def card_kinds(cards: str) -> dict[str, str]:
    """Each captioner's card kind in the Compare tab's HTML: model (its caption is in), pending, failed."""
    found = re.findall(r'<article class="mc-card mc-(\w+)"><h4 class="mc-name">([^<]*)</h4>', cards)
    return {name: kind for kind, name in found}


def card_meta(cards: str, model: str) -> str:
    """A captioner's card's meta line (latency, CLAP, grounding) and its fact-check badges, as text."""
    card = re.search(rf'<article class="mc-card mc-\w+"><h4 class="mc-name">{model}</h4>.*?</article>', cards)
    return re.sub(r"<[^>]+>", " ", card.group(0).split('<p class="mc-caption">')[1].split("</p>", 1)[1])


@pytest.fixture(scope="module")
def studio():
    if not all((REPO / "checkpoints" / model / "config.json").is_file() for model in MODELS):
        pytest.skip("the shipped random and muscaps checkpoints are not here")
    return Studio(models=MODELS)


def test_the_compare_handler_yields_the_first_caption_before_the_last_captioner_answers(studio):
    outputs = run_compare(studio, str(EXAMPLE), "first", "", "", 0, 0, -1, False, 0)
    first = next(outputs)
    assert card_kinds(first[1]) == {"random": "model", "muscaps": "pending"}
    # random's caption came before the window's features: sent at once, its scores pending
    assert "CLAP …" in card_meta(first[1], "random") and "grounding …" in card_meta(first[1], "random")
    assert "mc-analysis" not in first[1]
    second = next(outputs)
    assert card_kinds(second[1]) == {"random": "model", "muscaps": "model"}
    for model in MODELS:  # MusCaps's caption brings its scores and random's, before the window's comparison
        meta = card_meta(second[1], model)
        assert re.search(r"CLAP -?\d\.\d{3}", meta) and re.search(r"grounding (\d\.\d\d|–)", meta), meta
        assert "tempo" in meta  # the fact-check badges
    assert "What the audio says" in second[1]  # the analysis the badges were checked against
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
        assert timed.first_caption_s <= timed.caption_s["muscaps"] == timed.scores_s <= timed.seconds
        assert timed.heatmap_s is not None and timed.updates >= 3
    finally:
        demo.close()


def test_a_caption_comes_scored_once_its_windows_features_are_computed(studio):
    events, scored_when_sent = [], []
    for event in studio.compare(load_audio(EXAMPLE)):
        events.append(event)
        captions = [e for e in events if isinstance(e, ModelCaption)]
        scored_when_sent.append([c.clap_similarity is not None and c.facts is not None for c in captions])
    random, muscaps, window = events
    assert isinstance(window, WindowComparison)
    # random's caption came before the window's audio features (it reads none), so it was sent unscored;
    # MusCaps computed them, and its caption came with its scores and random's
    assert scored_when_sent[:2] == [[False], [True, True]]
    assert random.analysis is muscaps.analysis is window.analysis
    assert {model: window.similarity[model] for model in MODELS} == {
        "random": random.clap_similarity,
        "muscaps": muscaps.clap_similarity,
    }


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
