"""``musiccap caption --format json|text|srt|vtt`` on a one-minute file, with a tiny random captioner."""

import json
import re

import numpy as np
import pytest
import soundfile as sf

from musiccap.cli import main
from musiccap.models.baselines import RandomCaptioner

RATE = 16000


@pytest.fixture(scope="module")
def minute(tmp_path_factory):
    """(a one-minute WAV, a checkpoints folder holding only ``random``)."""
    folder = tmp_path_factory.mktemp("cli")
    RandomCaptioner(["a calm <piano> piece."]).save_pretrained(folder / "ckpt" / "random")
    t = np.arange(60 * RATE) / RATE
    sf.write(folder / "minute.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), RATE)
    return folder / "minute.wav", folder / "ckpt"


def caption(minute, capsys, *options):
    audio, checkpoints = minute
    argv = ["caption", str(audio), "--model", "random", "--checkpoints", str(checkpoints), *options]
    status = main(argv)
    out, err = capsys.readouterr()
    return status, out, err


def test_srt_and_vtt_cues_are_the_windows_times(minute, capsys):
    status, srt, _ = caption(minute, capsys, "--window", "all", "--format", "srt")
    assert status == 0
    times = re.findall(r"^(\S+) --> (\S+)$", srt, flags=re.M)
    assert times == [
        (f"00:00:{s:02d},000", f"00:{(s + 10) // 60:02d}:{(s + 10) % 60:02d},000") for s in range(0, 60, 10)
    ]
    assert srt.startswith("1\n00:00:00,000 --> 00:00:10,000\nrandom: A calm ‹piano› piece.\n\n2\n")
    status, vtt, _ = caption(minute, capsys, "--window", "all", "--format", "vtt")
    assert status == 0 and vtt.startswith("WEBVTT\n\n1\n00:00:00.000 --> 00:00:10.000\n")
    assert len(re.findall(r"-->", vtt)) == 6 and "random: A calm &lt;piano&gt; piece." in vtt


def test_max_windows_thins_the_cues_and_zero_keeps_every_window(minute, capsys):
    _, srt, _ = caption(minute, capsys, "--window", "all", "--max-windows", "2", "--format", "srt")
    assert re.findall(r"^(\S+) -->", srt, flags=re.M) == ["00:00:00,000", "00:00:50,000"]
    _, srt, _ = caption(minute, capsys, "--window", "all", "--max-windows", "0", "--format", "srt")
    assert len(re.findall(r"-->", srt)) == 6


def test_json_is_format_json_and_text_is_the_default(minute, capsys):
    _, with_flag, _ = caption(minute, capsys, "--json")
    _, with_format, _ = caption(minute, capsys, "--format", "json")
    rows = [json.loads(line) for line in with_format.splitlines()]
    assert [json.loads(line) | {"latency_s": 0} for line in with_flag.splitlines()] == [
        row | {"latency_s": 0} for row in rows
    ]
    assert len(rows) == 1 and rows[0]["model"] == "random" and rows[0]["window"] == [0.0, 10.0]
    assert {"file", "text", "tokens", "neighbour", "clap_similarity", "latency_s", "decoding"} <= set(rows[0])
    _, text, _ = caption(minute, capsys)
    assert text == "[00:00–00:10] random   A calm <piano> piece.\n"


def test_conflicting_or_unusable_format_options_exit_2(minute, capsys):
    audio, checkpoints = minute
    for options in (["--json", "--format", "srt"], ["--format", "xml"], ["--max-windows", "-1"]):
        status, _, err = caption(minute, capsys, *options)
        assert status == 2 and "musiccap" in err and "Traceback" not in err, options
    status = main(["caption", str(audio), str(audio), "--checkpoints", str(checkpoints), "--format", "vtt"])
    out, err = capsys.readouterr()  # two files cannot share one subtitle stream
    assert status == 2 and out == "" and "one audio file per call" in err


def test_listening_check_adds_each_rows_change_with_noise_and_another_clip(minute, capsys):
    status, out, _ = caption(
        minute, capsys, "--json", "--window", "all", "--max-windows", "2", "--listening-check"
    )
    rows = [json.loads(line) for line in out.splitlines()]
    assert status == 0 and len(rows) == 2
    for row in rows:
        check = row["listening_check"]
        assert set(check) == {"noise", "other clip"}
        assert check["noise"]["source"].startswith("pink noise") and check["other clip"]["source"].endswith(
            ", 00:00–00:10"
        )
        for change in check.values():  # random draws by the clip's id, kept with the replaced audio
            assert change["text"] == row["text"] and change["text_change"] == 0.0
            assert (
                change["attributes_stated"] == ["instruments", "mood"] and change["attribute_change"] == 0.0
            )
    status, _, err = caption(minute, capsys, "--listening-check")
    assert status == 2 and "--format json" in err


def test_decoding_flags_become_decoding_overrides():
    from musiccap.cli import _decoding_from_args, build_parser

    args = build_parser().parse_args(["caption", "a.wav", "--beams", "3", "--group-numbers"])
    overrides, config = _decoding_from_args(args)
    assert overrides == {"num_beams": 3, "group_numbers": True}
    assert config().replace(**overrides).group_numbers
    assert _decoding_from_args(build_parser().parse_args(["caption", "a.wav"]))[0] == {}
