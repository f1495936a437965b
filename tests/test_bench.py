"""musiccap bench: the anchor ratios, the streaming arrivals and how they are written (synthetic results
and hand-made updates, nothing timed)."""

import os
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile

from musiccap.audio import from_array, windows
from musiccap.bench import (
    app_settings,
    long_track_file,
    ratios,
    resident_mb,
    streaming,
    summary,
    timed_updates,
    wait_until_settled,
    write_markdown,
)
from musiccap.models.base import CaptionResult
from musiccap.studio import ModelCaption, WindowComparison
from musiccap.ui.compare import caption_cards


def results():
    return {
        "command": "musiccap bench",
        "machine": {
            "cpu": "cpu",
            "cores": 2,
            "torch_threads": 1,
            "python": "3",
            "torch": "2",
            "transformers": "5",
            "gradio": "6",
            "numpy": "2",
            "date": "today",
        },
        "matmul_gflops": 100.0,
        "app": {
            "start": summary([10.0]),
            "first_request": summary([3.0, 3.0]),
            "compare_request": summary([1.0, 1.0, 2.0]),
            "torch_threads": "1",
            "by_threads": {},
        },
        "long_track": {"minutes": 3.0, "windows": 18, "captions": 36, "wall": summary([20.0, 24.0])},
        "anchor": {
            "cold_s": 5.0,
            "caption": summary([4.0, 4.0, 6.0]),
            "threads": 1,
            "beams": 5,
            "new_tokens": 60,
        },
        "load": "load average 1.00 / 1.00 / 1.00 on 2 cores",
    }


def test_ratios_are_anchor_over_app():
    found = ratios(results())
    assert found["compare_request"] == 4.0  # anchor median 4 s / request median 1 s
    assert found["compare_request_p90"] == round(5.6 / 1.8, 2)
    assert found["first_request_over_warm"] == 3.0
    assert found["long_track"] == round(18 * 4.0 / 22.0, 2)  # 18 anchor captions / the CLI's median


def test_no_anchor_no_ratios():
    data = results()
    del data["anchor"]
    assert ratios(data) == {}


def test_markdown_states_the_ratio_the_target_and_the_load(tmp_path):
    data = results()
    data["ratios"] = ratios(data)
    write_markdown(data, tmp_path / "BENCHMARKS.md")
    text = (tmp_path / "BENCHMARKS.md").read_text()
    assert "| compare request, medians | 4.0 ✅ | ≥ 3.0 |" in text
    assert "18 windows per captioner" in text and "22.000 ✅ s median" in text
    assert "Load while measuring: load average 1.00" in text


def test_markdown_states_the_caption_workers_and_the_apps_memory(tmp_path):
    data = results()
    data["app"]["caption_workers"] = 2
    data["app"]["resident_mb"] = summary([1500.0, 1600.0])
    write_markdown(data, tmp_path / "BENCHMARKS.md")
    text = (tmp_path / "BENCHMARKS.md").read_text()
    assert "with 2 caption worker process(es) (`MUSICCAP_CAPTION_WORKERS`" in text
    assert "| resident memory after the requests, app and caption workers (MB) | 1550.0 |" in text


def test_resident_memory_counts_a_process_and_its_children():
    alone = resident_mb(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.5)
        assert alone > 10 and resident_mb(os.getpid()) > alone + 5  # a Python interpreter is more than 5 MB
    finally:
        child.kill()
        child.wait()


def test_an_app_has_settled_when_it_and_its_children_are_idle():
    wait_until_settled(os.getpid(), timeout_s=10)  # this test process, idle while it waits
    busy_child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        with pytest.raises(RuntimeError, match="still busy"):
            wait_until_settled(os.getpid(), timeout_s=3)  # its busy child counts
    finally:
        busy_child.kill()
        busy_child.wait()


def test_markdown_states_several_listeners_against_one(tmp_path):
    data = results()
    data["app"]["concurrent"] = {
        "users": 4,
        "request": summary([2.0, 3.0, 4.0]),
        "failures": 0,
        "over_single": 3.0,
    }
    write_markdown(data, tmp_path / "BENCHMARKS.md")
    text = (tmp_path / "BENCHMARKS.md").read_text()
    assert "| compare request, 4 listeners at once | 3.0 (3.0× one listener's ❌) |" in text
    data["app"]["concurrent"] |= {"request": summary([1.5, 2.0, 2.5]), "over_single": 2.0}
    write_markdown(data, tmp_path / "BENCHMARKS.md")
    assert "(2.0× one listener's ✅)" in (tmp_path / "BENCHMARKS.md").read_text()


def compare_updates():
    """The /compare outputs of a two-captioner request as the client receives them: csa's caption alone
    (blap pending, no scores), then blap's with csa's heatmap figure, then the scored window."""
    window = windows(from_array(np.zeros(10 * 16000, dtype=np.float32), 16000), "first")[0]
    captions = []
    for model in ("csa", "blap"):
        caption = ModelCaption(model, window, latency_s=0.1)
        caption.result = CaptionResult(model, f"a song by {model}", tokens=["a"], window=(0.0, 10.0))
        captions.append(caption)
    papers = {"csa": "CSA", "blap": "BLAP"}
    scored = WindowComparison(0, window, captions, None, {"csa": 0.2, "blap": 0.3}, {}, 0.1)

    def outputs(answered, completed, heatmap):
        cards = caption_cards([window], {0: answered}, completed, papers, 10.0)
        return ("status", cards, {"__type__": "update"}, None, {}, heatmap, {})

    unchanged, figure = {"__type__": "update"}, {"type": "plotly", "plot": "{}"}
    for caption in captions:
        caption.clap_similarity = None
    pending = [outputs(captions[:1], {}, unchanged), outputs(captions, {}, figure)]
    for caption, score in zip(captions, (0.2, 0.3)):
        caption.clap_similarity = score
    return [*pending, outputs(captions, {0: scored}, unchanged)]


def test_timed_updates_find_the_first_caption_each_captioners_the_heatmap_and_the_scores():
    first, second, third = compare_updates()
    timed = timed_updates(2.5, [(0.4, first), (1.1, second), (1.3, third), (2.0, third)])
    assert (timed.first_caption_s, timed.first_captioner) == (0.4, "csa")
    assert timed.caption_s == {"csa": 0.4, "blap": 1.1}
    assert (timed.heatmap_s, timed.scores_s, timed.seconds, timed.updates) == (1.1, 1.3, 2.5, 4)


def test_timed_updates_of_a_request_without_captions_say_so():
    pending = ("status", '<article class="mc-card mc-pending"><h4 class="mc-name">csa</h4>', None)
    timed = timed_updates(1.0, [(0.5, (*pending, None, None, {"__type__": "update"}, None))])
    assert timed.first_caption_s is None and timed.caption_s == {} and timed.scores_s is None


def test_streaming_summarises_every_requests_arrivals():
    first, second, third = compare_updates()
    requests = [
        timed_updates(2.0, [(0.2, first), (0.8, second), (1.0, third)]),
        timed_updates(3.0, [(0.4, first), (1.2, second), (1.4, third)]),
        timed_updates(4.0, [(0.6, second), (1.6, third)]),  # both captions in one update
    ]
    found = streaming(requests)
    assert found["first_caption"] == summary([0.2, 0.4, 0.6])
    assert found["first_captioner"] == "csa"
    assert found["captions"] == {"csa": summary([0.2, 0.4, 0.6]), "blap": summary([0.8, 1.2, 0.6])}
    assert found["heatmap"] == summary([0.8, 1.2, 0.6]) and found["scores"] == summary([1.0, 1.4, 1.6])
    assert found["request"] == summary([2.0, 3.0, 4.0])


def test_app_settings_vary_one_thing_at_a_time_from_the_served_one():
    assert app_settings(("1",), ("2",)) == [("1", "2")]
    assert app_settings(("1", "2"), ("2", "1")) == [("1", "2"), ("2", "2"), ("1", "1")]


def test_markdown_states_the_first_caption_against_its_target_and_each_concurrency(tmp_path):
    data = results()
    first, second, third = compare_updates()
    stream = streaming([timed_updates(1.0, [(0.3, first), (0.7, second), (0.9, third)])])
    data["app"] |= {"streaming": stream, "compare_concurrency": "2"}
    for limit, over_single in (("2", 2.0), ("1", 3.0)):
        row = {
            "compare_request": summary([1.0]),
            "concurrent": {
                "users": 4,
                "request": summary([over_single]),
                "failures": 0,
                "over_single": over_single,
                "streaming": stream,
            },
        }
        data["app"].setdefault("by_concurrency", {})[limit] = row
    data["app"]["concurrent"] = data["app"]["by_concurrency"]["2"]["concurrent"]
    write_markdown(data, tmp_path / "BENCHMARKS.md")
    text = (tmp_path / "BENCHMARKS.md").read_text()
    assert "| first caption on screen (csa's) | 0.300 ✅ | 0.3 | 1 | 0.6 |" in text
    assert "| blap's caption | 0.7 | 0.7 | 1 | — |" in text
    assert "| first CLAP score and fact check (each caption's comes with it) | 0.9 |" in text
    assert "| compare request, 4 listeners at once (concurrency 2) | 2.0 (2.0× one listener's ✅) |" in text
    assert "| 1 | 1.0 | 3.0 (3.0× one listener's ❌) | 3.0 | 1 (0) | 0.3 |" in text
    assert "`Client.submit`" in text  # how the streaming figures are taken


def test_the_long_track_has_no_two_windows_alike(tmp_path):
    samples, rate = soundfile.read(long_track_file(tmp_path, minutes=3.0), dtype="float32")
    assert len(samples) == 180 * rate
    windows = [samples[i * 10 * rate : (i + 1) * 10 * rate] for i in range(18)]
    assert len({window.tobytes() for window in windows}) == 18
