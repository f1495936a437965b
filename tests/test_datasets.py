"""Caption-set loaders on small fixtures the tests write themselves."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from train.datasets import (
    CaptionItem,
    load_caption_set,
    load_caption_table,
    load_musiccaps,
    load_song_describer,
    load_synthetic,
)

SHARED_MUSICCAPS = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "musiccaps" / "musiccaps-public.csv"
)
MUSICCAPS_COLUMNS = [
    "ytid",
    "start_s",
    "end_s",
    "audioset_positive_labels",
    "aspect_list",
    "caption",
    "author_id",
    "is_balanced_subset",
    "is_audioset_eval",
]


def _tone(path: Path, seconds: float = 0.5) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(16000 * seconds)) / 16000
    soundfile.write(path, 0.3 * np.sin(2 * np.pi * 440 * t), 16000)
    return path


def _write_csv(path: Path, columns: list[str], rows: list[dict]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def musiccaps(tmp_path) -> tuple[Path, Path]:
    rows = [
        {"ytid": "aaa", "caption": "A calm piano piece.", "is_audioset_eval": "False"},
        {"ytid": "bbb", "caption": "Loud rock with drums.", "is_audioset_eval": "True"},
        {"ytid": "ccc", "caption": "A sad violin.", "is_audioset_eval": "True"},
        {"ytid": "-dd_d", "caption": "Fast techno.", "is_audioset_eval": "False"},
    ]
    for row in rows:
        row.update(
            start_s=30,
            end_s=40,
            audioset_positive_labels="",
            aspect_list="[]",
            author_id=1,
            is_balanced_subset="False",
        )
    csv_path = _write_csv(tmp_path / "musiccaps-public.csv", MUSICCAPS_COLUMNS, rows)
    audio_dir = tmp_path / "mc_audio"
    _tone(audio_dir / "aaa.wav")
    _tone(audio_dir / "nested" / "bbb.flac")
    _tone(audio_dir / "-dd_d.mp3.wav")  # a different stem: not "-dd_d", so it counts as missing
    return csv_path, audio_dir


def test_musiccaps_official_split_and_missing_files(musiccaps):
    csv_path, audio_dir = musiccaps
    train = load_musiccaps(csv_path, audio_dir, "train")
    assert [item.id for item in train] == ["aaa"]
    assert train.missing == ["-dd_d"]
    assert train[0] == CaptionItem("aaa", audio_dir / "aaa.wav", "A calm piano piece.", piece="aaa")
    test = load_musiccaps(csv_path, audio_dir, "test")
    assert [item.id for item in test] == ["bbb"] and test[0].audio.suffix == ".flac"
    assert test.missing == ["ccc"]
    assert "1 skipped without audio" in test.summary()
    everything = load_musiccaps(csv_path, audio_dir, "all")
    assert len(everything) == 2 and len(everything.missing) == 2
    with pytest.raises(ValueError):
        load_musiccaps(csv_path, audio_dir, "validation")


def test_dispatch_recognises_musiccaps(musiccaps):
    csv_path, audio_dir = musiccaps
    assert [i.id for i in load_caption_set(csv_path, "test", audio_dir)] == ["bbb"]
    with pytest.raises(ValueError, match="MusicCaps needs"):
        load_caption_set(csv_path, "test")


@pytest.mark.skipif(not SHARED_MUSICCAPS.is_file(), reason="needs ../shared/data/musiccaps")
def test_real_musiccaps_csv_without_audio_counts_every_row(tmp_path):
    train = load_musiccaps(SHARED_MUSICCAPS, tmp_path, "train")
    test = load_musiccaps(SHARED_MUSICCAPS, tmp_path, "test")
    assert len(train) == len(test) == 0
    assert len(test.missing) == 2858 and len(train.missing) + len(test.missing) == 5521


def test_song_describer(tmp_path):
    columns = [
        "caption_id",
        "track_id",
        "caption",
        "is_valid_subset",
        "familiarity",
        "artist_id",
        "album_id",
        "path",
        "duration",
    ]
    rows = [
        {
            "caption_id": "1",
            "track_id": "10",
            "caption": "Dreamy synths.",
            "is_valid_subset": "True",
            "path": "00/10.mp3",
        },
        {
            "caption_id": "2",
            "track_id": "10",
            "caption": "Slow ambient.",
            "is_valid_subset": "False",
            "path": "00/10.mp3",
        },
        {
            "caption_id": "3",
            "track_id": "11",
            "caption": "Folk guitar.",
            "is_valid_subset": "True",
            "path": "01/11.mp3",
        },
        {
            "caption_id": "4",
            "track_id": "12",
            "caption": "Gone.",
            "is_valid_subset": "True",
            "path": "02/12.mp3",
        },
    ]
    csv_path = _write_csv(tmp_path / "song_describer.csv", columns, rows)
    audio_dir = tmp_path / "audio"
    _tone(audio_dir / "00" / "10.2min.mp3")  # the released files carry ".2min"
    _tone(audio_dir / "01" / "11.mp3")
    dataset = load_song_describer(csv_path, audio_dir)
    assert [(i.id, i.piece) for i in dataset] == [("1", "10"), ("2", "10"), ("3", "11")]
    assert dataset.missing == ["4"]
    assert dataset[0].audio == audio_dir / "00" / "10.2min.mp3"
    assert [i.id for i in load_song_describer(csv_path, audio_dir, valid_only=True)] == ["1", "3"]
    assert len(load_caption_set(csv_path, audio_dir=audio_dir)) == 3


def test_generic_csv_and_jsonl_tables(tmp_path):
    _tone(tmp_path / "clips" / "one.wav")
    _tone(tmp_path / "clips" / "two.wav")
    absolute = _tone(tmp_path / "elsewhere" / "three.wav")
    csv_path = _write_csv(
        tmp_path / "table.csv",
        ["audio", "caption", "lyrics"],
        [
            {"audio": "clips/one.wav", "caption": "Piano.", "lyrics": ""},
            {"audio": "clips/two.wav", "caption": "A song.", "lyrics": "la la la"},
            {"audio": str(absolute), "caption": "Absolute path.", "lyrics": ""},
            {"audio": "clips/missing.wav", "caption": "Nothing.", "lyrics": ""},
        ],
    )
    table = load_caption_table(csv_path)
    assert [(i.id, i.lyrics) for i in table] == [("one", None), ("two", "la la la"), ("three", None)]
    assert table.missing == ["missing"]

    jsonl = tmp_path / "meta" / "set.jsonl"
    jsonl.parent.mkdir()
    jsonl.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"id": "x1", "audio": "clips/one.wav", "caption": "Piano.", "piece": "p1"},
                {"audio": "clips/two.wav", "caption": "Song.", "lyrics": "hey"},
            ]
        )
        + "\n"
    )
    rows = load_caption_table(jsonl, audio_root=tmp_path)
    assert [(i.id, i.piece, i.lyrics) for i in rows] == [("x1", "p1", None), ("two", None, "hey")]
    assert len(load_caption_set(jsonl, audio_dir=tmp_path)) == 2

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"file": "a.wav", "text": "x"}) + "\n")
    with pytest.raises(ValueError, match="'audio' and 'caption'"):
        load_caption_table(bad)


def test_synthetic_manifest(tmp_path):
    _tone(tmp_path / "audio" / "train" / "train-00000.flac")
    records = [
        {
            "id": "train-00000",
            "audio": "audio/train/train-00000.flac",
            "caption": "A flute plays.",
            "lyrics": None,
            "piece": "nottingham/jigs1",
            "source": "nottingham",
            "licence": "GPL-3.0",
            "attributes": {"instruments": ["Flute"], "mood": "happy"},
        },
        {
            "id": "train-00001",
            "audio": "audio/train/train-00001.flac",
            "caption": "A choir sings.",
            "lyrics": "Jesu",
            "piece": "music21/bach/bwv1.6",
            "source": "music21",
            "licence": "PD",
            "attributes": {"instruments": ["Choir Aahs"]},
        },
    ]
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    dataset = load_synthetic(tmp_path, "train")
    assert len(dataset) == 1 and dataset.missing == ["train-00001"]
    item = dataset[0]
    assert (
        item.attributes["instruments"] == ["Flute"]
        and item.piece == "nottingham/jigs1"
        and item.lyrics is None
    )
    assert load_caption_set(tmp_path, "train").items == dataset.items
