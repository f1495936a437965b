"""musiccap bench: the anchor ratios and how they are written (synthetic results, nothing timed)."""

from musiccap.bench import ratios, summary, write_markdown


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
