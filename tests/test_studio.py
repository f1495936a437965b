"""Studio.compare: the one path from audio to a comparison, as typed events."""

import numpy as np
import pytest

from musiccap import conditioning
from musiccap.audio import from_array, load_audio, windows
from musiccap.clip import LYRICS, Clip
from musiccap.decoding import DecodingConfig
from musiccap.registry import CHECKPOINTS
from musiccap.studio import (
    MEAN_VIEW,
    NEIGHBOUR,
    REFERENCE,
    CompareOptions,
    ModelCaption,
    Studio,
    WindowComparison,
)

EXAMPLE = CHECKPOINTS.parent / "examples" / "real-parrotte-desert.ogg"


class Broken:
    default_decoding = DecodingConfig()

    def caption(self, clip, decoding=None):
        raise RuntimeError("out of order")

    def caption_batch(self, clips, decoding=None):
        raise RuntimeError("out of order")


@pytest.fixture(scope="module")
def studio():
    if not all((CHECKPOINTS / name / "config.json").is_file() for name in ("clap", "nearest", "csa")):
        pytest.skip("no shipped checkpoints")
    return Studio(models=["nearest", "csa"])


def test_compare_yields_each_caption_then_its_window(studio, monkeypatch):
    audio = load_audio(EXAMPLE)
    options = CompareOptions("first", reference="a folk tune on a synth", decoding={"max_new_tokens": 40})
    events = list(studio.compare(audio, options))
    assert [type(e) for e in events] == [ModelCaption, ModelCaption, WindowComparison]
    nearest, csa, window = events
    assert window.captions == [nearest, csa] and window.index == 0
    assert set(window.similarity) == {"nearest", "csa", NEIGHBOUR, REFERENCE}
    assert csa.clap_similarity == window.similarity["csa"]
    assert window.neighbour is not None and window.neighbour.text == nearest.result.text
    assert window.tags and window.features_s > 0
    assert csa.latency_s >= 0 and csa.result.decoding["max_new_tokens"] == 40
    assert csa.result.text[0].isupper() and csa.result.decoded_text  # the studio shows clean text
    heatmap = csa.heatmap
    assert heatmap.views[MEAN_VIEW].shape[0] == len(heatmap.tokens) and heatmap.offset_s == 0.0


def scored_as_they_come(events):
    """Each event and, for a caption, whether it had its scores when it came (a caption is scored in
    place, so the list of events alone cannot tell)."""
    return [(e, isinstance(e, ModelCaption) and e.analysis is not None) for e in events]


def test_each_caption_comes_scored_and_its_window_scores_only_what_is_left(studio, monkeypatch):
    scored_texts, analyses, embeddings = [], [], []
    similarity, analyze, embed_audio = studio.similarity, conditioning.analyze, studio.scorer.embed_audio

    def counted(calls, function):
        def call(*args):
            calls.append(args[-1])
            return function(*args)

        return call

    monkeypatch.setattr(studio, "similarity", counted(scored_texts, similarity))
    monkeypatch.setattr(conditioning, "analyze", counted(analyses, analyze))
    monkeypatch.setattr(studio.scorer, "embed_audio", counted(embeddings, embed_audio))
    options = CompareOptions("first", reference="a folk tune on a synth", decoding={"max_new_tokens": 20})
    events = scored_as_they_come(studio.compare(load_audio(EXAMPLE), options))
    (nearest, nearest_scored), (csa, csa_scored), (window, _) = events
    assert nearest_scored and csa_scored  # both read the audio's features: scored before they are sent
    assert nearest.facts is not None and nearest.analysis is window.analysis and csa.grounding is not None
    # one CLAP text pass per caption; the window's only scores the neighbour and the user's caption
    assert scored_texts == [
        [nearest.result.text],
        [csa.result.text],
        [window.neighbour.text, options.reference],
    ]
    assert len(analyses) == 1 and len(embeddings) == 1  # the analysis and the audio embedding: once
    assert list(window.similarity) == ["nearest", "csa", NEIGHBOUR, REFERENCE]
    assert (window.similarity["nearest"], window.similarity["csa"]) == (
        nearest.clap_similarity,
        csa.clap_similarity,
    )


def test_a_failing_captioner_is_reported_and_the_others_still_answer(studio, monkeypatch):
    monkeypatch.setitem(studio.captioners, "broken", Broken())
    events = list(studio.compare(load_audio(EXAMPLE)))
    window = events[-1]
    broken = next(c for c in window.captions if c.model == "broken")
    assert broken.result is None and "out of order" in broken.error
    assert "broken" not in window.similarity and window.similarity["csa"] is not None


def test_batched_windows_caption_each_bench_clip_as_it_alone_would():
    """The long-audio path and the caption workers (several requests' windows at once) batch windows;
    every shipped captioner must say, byte for byte, what it says on each window alone: the bench clips
    (examples/), one with lyrics, and a short upload beside them (padded in the batch)."""
    if not (CHECKPOINTS / "clap" / "config.json").is_file():
        pytest.skip("no shipped checkpoints")
    studio = Studio()
    files = sorted(p for p in EXAMPLE.parent.iterdir() if p.suffix in {".ogg", ".flac"})
    clips = [Clip(windows(load_audio(path), "first")[0], clip_id=path.name) for path in files]
    clips[1].put(LYRICS, "walking down the desert road tonight")
    tone = 0.3 * np.sin(2 * np.pi * 330.0 * np.arange(3 * 16_000) / 16_000).astype(np.float32)
    clips.append(Clip(windows(from_array(tone, 16_000), "first")[0], clip_id="3 s upload"))
    for name in studio.captioners:
        batched = [result.text for result in studio.caption_clips(clips, name)]
        alone = [studio.caption_clip(clip, name).text for clip in clips]
        assert batched == alone, name


def test_compare_in_window_batches_yields_what_one_window_at_a_time_does(studio):
    audio = load_audio(EXAMPLE)
    track = from_array(np.tile(audio.samples, 3), audio.sample_rate)  # 30 s: three windows
    options = CompareOptions("all", max_windows=None)
    one_by_one = [e for e in studio.compare(track, options) if isinstance(e, WindowComparison)]
    batched_as_they_came = scored_as_they_come(studio.compare(track, options, window_batch=2))
    assert not any(scored for _, scored in batched_as_they_came)  # the long-audio path scores per window
    batched = [event for event, _ in batched_as_they_came]
    models = [(e.model, e.window.label) for e in batched if isinstance(e, ModelCaption)]
    assert models == [("nearest", "00:00–00:10"), ("nearest", "00:10–00:20"), ("csa", "00:00–00:10")] + [
        ("csa", "00:10–00:20"),
        ("nearest", "00:20–00:30"),
        ("csa", "00:20–00:30"),
    ]
    windows_batched = [e for e in batched if isinstance(e, WindowComparison)]
    assert [w.index for w in windows_batched] == [0, 1, 2]
    for alone, together in zip(one_by_one, windows_batched, strict=True):
        assert [c.result.text for c in alone.captions] == [c.result.text for c in together.captions]
        assert alone.similarity == pytest.approx(together.similarity)


def test_warm_up_runs_every_captioner_and_loads_the_scorer(studio):
    comparison = studio.warm_up()
    assert [c.model for c in comparison.captions] == list(studio.captioners)
    assert all(c.result is not None for c in comparison.captions)
    assert studio._scorer is not None and comparison.similarity


def test_a_captioner_failing_on_a_batch_of_windows_fails_on_each_and_the_others_answer(studio, monkeypatch):
    monkeypatch.setitem(studio.captioners, "broken", Broken())
    audio = load_audio(EXAMPLE)
    track = from_array(np.tile(audio.samples, 2), audio.sample_rate)
    events = studio.compare(track, CompareOptions("all", max_windows=None), window_batch=2)
    comparisons = [e for e in events if isinstance(e, WindowComparison)]
    assert len(comparisons) == 2
    for comparison in comparisons:
        broken = next(c for c in comparison.captions if c.model == "broken")
        assert broken.result is None and "out of order" in broken.error
        assert comparison.similarity["csa"] is not None
