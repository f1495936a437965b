"""The Compare tab's fact check: badges on each caption card, the grounding score beside CLAP, and the
"What the audio says" panel (musiccap/ui/compare.py), rendered from hand-made analyses."""

import re

import numpy as np
import soundfile as sf

from musiccap.analysis import Analysis, facts, grounding
from musiccap.audio import from_array, windows
from musiccap.models.base import CaptionResult, Neighbour
from musiccap.studio import ModelCaption, WindowComparison
from musiccap.ui.compare import caption_cards, run_compare

RATE = 16000
PAPERS = {"csa": "CSA (Kim & Park)", "blap": "BLAP"}


def ten_seconds():
    t = np.arange(10 * RATE) / RATE
    return from_array((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), RATE)


def heard(**changes) -> Analysis:
    """A slow minor window with piano and drums, as the probes would report it."""
    values = dict(
        window=(0.0, 10.0),
        tempo_bpm=72.4,
        tempo_class="slow",
        key="A minor",
        mode="minor",
        drums=0.91,
        families={"piano": 0.83, "guitar": 0.12, "strings": 0.31, "bass": 0.05, "drums": 0.91},
        heard=["piano", "drums"],
        tags={"piano": 0.62, "classical": 0.41, "slow": 0.33, "drums": 0.2, "guitar": 0.1, "rock": 0.05},
        confidence={"tempo": 0.7, "key": 0.44, "mode": 0.86},
    )
    return Analysis(**{**values, **changes})


def comparison(window, texts: dict[str, str], analysis: Analysis | None) -> WindowComparison:
    """A finished window, each caption checked against ``analysis`` as Studio.compare does."""
    captions = []
    for model, text in texts.items():
        caption = ModelCaption(model, window, latency_s=0.1, clap_similarity=0.25)
        caption.result = CaptionResult(
            model, text, tokens=text.split(), window=(window.start_s, window.end_s)
        )
        if analysis is not None:
            caption.facts = facts(text, analysis)
            caption.grounding = grounding(caption.facts)
        captions.append(caption)
    similarity = {c.model: c.clap_similarity for c in captions}
    return WindowComparison(
        window.index, window, captions, Neighbour("a slow piano piece.", 0.8), similarity, {}, 0.1, analysis
    )


def card_of(page: str, model: str) -> str:
    (card,) = re.findall(
        rf'<article class="mc-card mc-model"><h4 class="mc-name">{model}</h4>.*?</article>', page
    )
    return card


def badges_of(card: str) -> dict[str, tuple[str, str, str]]:
    """{attribute: (kind, mark and name as shown, hover text)} of a card's badges."""
    found = re.findall(r'<span class="mc-badge mc-(\w+)" title="([^"]*)">([^<]*)</span>', card)
    return {text.split()[-1]: (kind, text, title) for kind, title, text in found}


def test_a_contradicting_caption_shows_red_crosses_with_what_was_said_and_heard():
    window = windows(ten_seconds(), "first")[0]
    done = comparison(window, {"csa": "A fast song in a major key with piano and drums."}, heard())
    page = caption_cards([window], {0: done.captions}, {0: done}, {"csa": PAPERS["csa"]}, 10.0)
    badges = badges_of(card_of(page, "csa"))
    assert list(badges) == ["tempo", "mode", "drums", "instruments"]
    assert badges["tempo"] == (
        "contradict",
        "✗ tempo",
        "tempo: said fast; heard slow (confidence 0.70) — contradicts",
    )
    assert (
        badges["mode"][:2] == ("contradict", "✗ mode")
        and "heard minor (confidence 0.86)" in badges["mode"][2]
    )
    assert badges["drums"] == (
        "agree",
        "✓ drums",
        "drums: said drums; heard drums (probability 0.91) — agrees",
    )
    assert badges["instruments"] == (
        "agree",
        "✓ instruments",
        "instruments: said piano; heard piano (piano 0.83) — agrees",
    )
    assert "CLAP 0.250 · grounding 0.50" in card_of(page, "csa")  # 2 of 4 statements agree


def test_a_caption_that_states_nothing_is_grey_and_has_no_grounding_score():
    window = windows(ten_seconds(), "first")[0]
    done = comparison(window, {"csa": "A song."}, heard())
    page = caption_cards([window], {0: done.captions}, {0: done}, {"csa": PAPERS["csa"]}, 10.0)
    card = card_of(page, "csa")
    badges = badges_of(card)
    assert {kind for kind, _, _ in badges.values()} == {"unstated"}
    assert "✓" not in card and "✗" not in card
    assert badges["tempo"][2] == "tempo: not stated; heard slow (confidence 0.70)"
    assert "grounding –" in card


def test_without_probes_the_analysis_cannot_tell_drums_and_the_panel_says_so():
    window = windows(ten_seconds(), "first")[0]
    rules_only = heard(drums=None, families={}, heard=[], confidence={})
    done = comparison(window, {"csa": "A slow song with drums."}, rules_only)
    page = caption_cards([window], {0: done.captions}, {0: done}, {"csa": PAPERS["csa"]}, 10.0)
    badges = badges_of(card_of(page, "csa"))
    assert badges["drums"] == ("unstated", "drums", "drums: said drums; the analysis cannot tell")
    assert badges["tempo"] == ("agree", "✓ tempo", "tempo: said slow; heard slow — agrees")
    assert "not analysed" in page and "no probe file" in page and "no confidence (DSP rule)" in page


def test_the_panel_shows_the_analysis_with_its_confidence_and_says_it_is_not_ground_truth():
    clip_windows = windows(ten_seconds(), "first")
    done = comparison(clip_windows[0], {"csa": "A song."}, heard())
    page = caption_cards(clip_windows, {0: done.captions}, {0: done}, {"csa": PAPERS["csa"]}, 10.0)
    (panel,) = re.findall(r'<aside class="mc-analysis">.*?</aside>', page)
    assert page.index(panel) < page.index('<div class="mc-cards">')  # above the window's captions
    text = re.sub(r"<[^>]+>", " ", panel)
    assert "What the audio says" in text and "not ground truth" in text and "app's own analysis" in text
    assert "72 BPM, slow" in text and "confidence 0.70" in text
    assert "A minor" in text and "confidence 0.44" in text and "confidence 0.86" in text
    assert "heard" in text and "probability 0.91" in text
    # the top four families but drums, most probable first, and the five top tags
    assert "heard piano" in text and "piano 0.83 · strings 0.31 · guitar 0.12 · bass 0.05" in text
    assert "piano 0.62 · classical 0.41 · slow 0.33 · drums 0.20 · guitar 0.10" in text
    assert "rock" not in text


def test_everything_is_escaped_and_neighbour_and_reference_are_checked_too():
    clip_windows = windows(ten_seconds(), "first")
    hostile = "<script>alert(1)</script> ${x} {{y}} a slow tune in a minor key"
    analysis = heard(key="<b>A</b> ${minor}", tags={"<img src=x onerror=alert(1)>": 0.9, "{{tag}}": 0.5})
    done = comparison(clip_windows[0], {"csa": hostile}, analysis)
    page = caption_cards(
        clip_windows,
        {0: done.captions},
        {0: done},
        {"csa": PAPERS["csa"]},
        10.0,
        reference="<i>fast</i> drums",
    )
    assert "<script>" not in page and "<img" not in page and "<b>A" not in page and "<i>" not in page
    assert "${" not in page and "{{" not in page  # gr.HTML's templates must not evaluate any of it
    assert "&lt;b&gt;A&lt;/b&gt;" in page and "&lt;img src=x" in page
    cards = re.findall(r'<article class="mc-card mc-(\w+)">.*?</article>', page)
    assert cards == ["model", "neighbour", "reference"]
    reference = re.search(r'<article class="mc-card mc-reference">.*?</article>', page).group(0)
    assert badges_of(reference)["tempo"][:2] == ("contradict", "✗ tempo")
    assert "grounding 0.50" in reference  # fast is wrong, drums are right
    neighbour = re.search(r'<article class="mc-card mc-neighbour">.*?</article>', page).group(0)
    assert "grounding 1.00" in neighbour  # "a slow piano piece."


def test_a_window_still_captioning_has_no_panel_and_its_grounding_is_pending():
    clip_windows = windows(ten_seconds(), "first")
    done = comparison(clip_windows[0], {"csa": "A fast song."}, heard())
    page = caption_cards(clip_windows, {0: done.captions}, {}, PAPERS, 10.0)
    assert "mc-analysis" not in page and "mc-badge" not in page
    assert "CLAP 0.250 · grounding …" in card_of(page, "csa")  # the window's comparison is not in yet


def test_a_caption_scored_before_its_window_is_complete_shows_its_scores_badges_and_the_panel():
    clip_windows = windows(ten_seconds(), "first")
    done = comparison(clip_windows[0], {"csa": "A fast song with piano.", "blap": "A slow song."}, heard())
    csa, blap = done.captions
    csa.analysis = done.analysis  # scored as it came (Studio.compare); blap's are still to come
    blap.clap_similarity, blap.facts, blap.grounding = None, None, None
    page = caption_cards(clip_windows, {0: done.captions}, {}, PAPERS, 10.0, reference="a slow song")
    assert "CLAP 0.250 · grounding 0.50" in card_of(page, "csa")
    assert [kind for kind, _, _ in badges_of(card_of(page, "csa")).values()] == [
        "contradict",
        "unstated",
        "unstated",
        "agree",
    ]
    assert "CLAP … · grounding …" in card_of(page, "blap") and "mc-badge" not in card_of(page, "blap")
    assert page.count('<aside class="mc-analysis">') == 1  # the analysis csa was checked against
    reference = re.search(r'<article class="mc-card mc-reference">.*?</article>', page).group(0)
    assert "CLAP … · grounding 1.00" in reference  # checked at once; its CLAP score comes with the window


class FakeStudio:
    """Studio.compare's events for one window, without models: what the Compare handler renders."""

    load_errors: dict[str, str] = {}

    def __init__(self, texts: dict[str, str], analysis: Analysis):
        self.texts, self.analysis = texts, analysis
        self.captioners = {model: type("Captioner", (), {"paper": PAPERS[model]})() for model in texts}

    def compare(self, audio, options):
        window = windows(audio, options.window_mode)[0]
        done = comparison(window, self.texts, self.analysis)
        yield from done.captions
        yield done


def test_the_compare_handler_ends_with_the_panel_and_every_captions_badges(tmp_path):
    path = tmp_path / "tone.wav"
    sf.write(path, ten_seconds().samples, RATE)
    studio = FakeStudio({"csa": "A fast song with piano.", "blap": "A song."}, heard())
    outputs = list(run_compare(studio, str(path), "first", "", "", 0, 0, -1, False, 0))
    first_cards, last_cards = outputs[0][1], outputs[-1][1]
    assert "mc-analysis" not in first_cards and "grounding …" in first_cards  # csa in, blap pending
    assert last_cards.count('<aside class="mc-analysis">') == 1
    assert [kind for kind, _, _ in badges_of(card_of(last_cards, "csa")).values()] == [
        "contradict",
        "unstated",
        "unstated",
        "agree",
    ]
    assert "grounding 0.50" in card_of(last_cards, "csa") and "grounding –" in card_of(last_cards, "blap")
