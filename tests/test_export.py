"""musiccap/export.py (JSON rows, SRT, WebVTT) and the Compare tab's cards and downloads."""

import json
import re

import numpy as np
import pytest

from musiccap import export
from musiccap.audio import from_array, windows
from musiccap.models.base import CaptionResult, Neighbour
from musiccap.studio import ModelCaption, WindowComparison
from musiccap.ui.compare import caption_cards, write_downloads

RATE = 16000


def audio_of(seconds: float):
    t = np.arange(int(seconds * RATE)) / RATE
    return from_array((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), RATE)


def comparison(window, texts: dict[str, str | None]) -> WindowComparison:
    """A finished window: ``texts`` by model, None for a captioner that failed."""
    captions = []
    for model, text in texts.items():
        caption = ModelCaption(model, window, latency_s=0.123456, clap_similarity=0.25 if text else None)
        if text is None:
            caption.error = "RuntimeError: out of order"
        else:
            caption.result = CaptionResult(
                model,
                text,
                tokens=text.split(),
                window=(window.start_s, window.end_s),
                decoding={"num_beams": 3},
            )
        captions.append(caption)
    similarity = {c.model: c.clap_similarity for c in captions if c.result is not None}
    return WindowComparison(
        window.index, window, captions, Neighbour("a near tune.", 0.8), similarity, {}, 0.1
    )


def test_timestamps_are_hours_minutes_seconds_and_rounded_milliseconds():
    assert export.timestamp(0, ",") == "00:00:00,000"
    assert export.timestamp(9.9996, ",") == "00:00:10,000"  # rounded, never 00:00:09,1000
    assert export.timestamp(61.5, ".") == "00:01:01.500"
    assert export.timestamp(3 * 3600 + 125.042, ".") == "03:02:05.042"
    with pytest.raises(ValueError, match="negative"):
        export.timestamp(-0.5, ",")


def test_a_one_minute_file_gives_a_cue_per_ten_seconds_in_both_formats():
    clip_windows = windows(audio_of(60), "all")
    # given out of order: cues still come in time order, and each cue keeps the studio's model order
    comparisons = [
        comparison(w, {"csa": f"tune {w.index}.", "nearest": "a folk song."}) for w in clip_windows
    ]
    srt = export.srt(reversed(comparisons))
    vtt = export.webvtt(comparisons)
    starts = [f"00:00:{10 * i:02d}" if i < 6 else "00:01:00" for i in range(7)]
    expected = [f"{starts[i]},000 --> {starts[i + 1]},000" for i in range(6)]
    assert re.findall(r"^\S+ --> \S+$", srt, flags=re.M) == expected
    assert re.findall(r"^\S+ --> \S+$", vtt, flags=re.M) == [e.replace(",", ".") for e in expected]
    blocks = srt.strip().split("\n\n")
    assert [b.splitlines()[0] for b in blocks] == ["1", "2", "3", "4", "5", "6"]
    assert blocks[2].splitlines()[2:] == ["csa: tune 2.", "nearest: a folk song."]
    assert vtt.startswith("WEBVTT\n\n1\n00:00:00.000 --> 00:00:10.000\ncsa: tune 0.\n")


def test_cues_end_where_the_audio_ends_and_skip_windows_without_captions():
    clip_windows = windows(audio_of(24.5), "all")  # the last window is 4.5 s of audio and padding
    comparisons = [comparison(clip_windows[0], {"csa": None}), comparison(clip_windows[1], {"csa": "x."})]
    comparisons.append(comparison(clip_windows[2], {"csa": "y.", "blap": None}))
    assert re.findall(r"^\S+ --> \S+$", export.srt(comparisons), flags=re.M) == [
        "00:00:10,000 --> 00:00:20,000",
        "00:00:20,000 --> 00:00:24,500",
    ]
    assert "blap" not in export.webvtt(comparisons)  # a failed captioner has no line


def test_caption_text_cannot_break_a_cue_or_become_markup():
    window = windows(audio_of(10), "first")[0]
    nasty = 'a <i>loud</i> riff & a\n\nbreak --> "drop" {\\an8}'
    comparisons = [comparison(window, {"csa": nasty})]
    srt, vtt = export.srt(comparisons), export.webvtt(comparisons)
    srt_lines, vtt_lines = srt.splitlines(), vtt.splitlines()
    assert srt_lines[2] == 'csa: a ‹i›loud‹/i› riff & a break --› "drop" {\\an8}'
    assert vtt_lines[4] == 'csa: a &lt;i&gt;loud&lt;/i&gt; riff &amp; a break --&gt; "drop" {\\an8}'
    # the blank line inside the caption is gone: one blank line ends the cue (SRT), one follows the header
    assert srt.count("\n\n") == 1 and vtt.count("\n\n") == 1 and len(vtt_lines) == 5


def test_json_rows_have_the_caption_json_shape():
    window = windows(audio_of(30), "all")[1]
    rows = export.result_rows("song.ogg", [comparison(window, {"csa": "a song.", "blap": None})])
    assert len(rows) == 1  # the failed captioner is left out, as in the CLI
    row = rows[0]
    assert set(row) >= {"file", "model", "window", "text", "tokens", "attention_shape", "neighbour"}
    assert set(row) >= {"clap_similarity", "latency_s", "decoding"}
    assert row["file"] == "song.ogg" and row["window"] == [10.0, 20.0] and row["latency_s"] == 0.1235
    assert json.loads(export.json_document(rows)) == rows
    assert (
        export.text_line(comparison(window, {"csa": "a song."}).captions[0])
        == "[00:10–00:20] csa      a song."
    )


def test_downloads_are_json_srt_and_webvtt_named_after_the_clip(tmp_path):
    window = windows(audio_of(10), "first")[0]
    paths = write_downloads(tmp_path, "my song (live).ogg", [comparison(window, {"csa": "a song."})])
    names = [p.rsplit("/", 1)[1] for p in paths]
    assert names == ["my_song_live_.captions.json", "my_song_live_.srt", "my_song_live_.vtt"]
    assert json.loads(open(paths[0]).read())[0]["file"] == "my song (live).ogg"


def test_caption_cards_escape_model_output_and_label_windows_on_a_timeline():
    clip_windows = windows(audio_of(60), "all", max_windows=3)
    done = comparison(clip_windows[0], {"csa": "<script>alert(1)</script> ${x} {{y}}", "blap": None})
    answered = {0: done.captions, 1: done.captions[:1], 2: []}
    papers = {"csa": "CSA (Kim & Park)", "blap": "BLAP"}
    page = caption_cards(clip_windows, answered, {0: done}, papers, 60.0, reference="my <b>tune</b>")
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "${" not in page and "{{" not in page  # gr.HTML's templates must not evaluate captions
    assert "CSA (Kim &amp; Park)" in page and "latency 0.12 s" in page and "CLAP 0.250" in page
    assert 'title="decoding: num_beams=3"' in page
    assert "failed: RuntimeError: out of order" in page and "a near tune." in page
    assert "my &lt;b&gt;tune&lt;/b&gt;" in page
    assert [label for label in re.findall(r'mc-time">([^<]+)<', page)] == [w.label for w in clip_windows]
    assert page.count("captioning…") == 1 + 2  # window 2 waits for blap, window 3 for both
    assert "window 3 of 3" in page
