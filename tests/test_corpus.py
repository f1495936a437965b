"""The synthetic corpus: a tiny build checked against its contract, its MIDI and its own captions.

The tiny build uses `../shared/data/symbolic` when present and the music21 chorales (shipped with the
music21 package) otherwise, so it runs on a clone too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
import soundfile

from musiccap.attributes import FAMILIES, mood, program_family, tempo_class
from train.corpus import build_corpus
from train.corpus.arrange import Arrangement, Track
from train.corpus.build import ClipMaker, assign_splits, plan_jobs
from train.corpus.captions import write_caption
from train.corpus.instruments import CAPTION_NAMES, gm_name
from train.corpus.render import (
    CLIP_SAMPLES,
    SAMPLE_RATE,
    QualityError,
    RenderedClip,
    check_clip,
    find_soundfont,
)
from train.corpus.sources import PieceRef
from train.corpus.stats import corpus_stats, markdown_table

SPLITS = ("train", "validation", "test")
CONTRACT_KEYS = {"id", "audio", "caption", "lyrics", "piece", "source", "licence", "attributes"}
ATTRIBUTE_KEYS = {
    "instruments",
    "families",
    "melody",
    "drums",
    "drum_pattern",
    "tempo_bpm",
    "tempo_class",
    "key",
    "mode",
    "time_signature",
    "dynamics",
    "reverb",
    "quality",
    "style",
    "mood",
}
VOICE_WORDS = ("choir", "voice", "singer", "vocal")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus")
    build_corpus(out, size="tiny", seed=3)
    return out


def _records(corpus: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (corpus / f"{split}.jsonl").read_text().splitlines()]


def test_tiny_manifests_follow_the_contract(tiny):
    counts = {split: len(_records(tiny, split)) for split in SPLITS}
    assert counts == {"train": 10, "validation": 3, "test": 3}
    for split in SPLITS:
        for record in _records(tiny, split):
            assert CONTRACT_KEYS <= record.keys()
            attributes = record["attributes"]
            assert ATTRIBUTE_KEYS <= attributes.keys()
            assert attributes["tempo_class"] == tempo_class(attributes["tempo_bpm"])
            assert attributes["mood"] == mood(
                attributes["mode"], attributes["tempo_class"], attributes["dynamics"]
            )
            assert set(attributes["families"]) <= set(FAMILIES)
            assert attributes["key"].endswith(attributes["mode"])
            assert (tiny / record["audio"]).is_file()


def test_splits_share_no_composition(tiny):
    pieces = [{r["piece"] for r in _records(tiny, split)} for split in SPLITS]
    assert not (pieces[0] & pieces[1]) and not (pieces[0] & pieces[2]) and not (pieces[1] & pieces[2])


def test_audio_is_ten_seconds_unclipped_and_audible(tiny):
    for split in SPLITS:
        for record in _records(tiny, split):
            audio, rate = soundfile.read(tiny / record["audio"], dtype="float32")
            assert rate == SAMPLE_RATE and audio.ndim == 1 and len(audio) == CLIP_SAMPLES
            peak = float(np.abs(audio).max())
            assert 0.05 < peak < 1.0
            # Music throughout: no second of the clip is near-silent.
            seconds = np.sqrt(np.mean(audio.reshape(10, -1) ** 2, axis=1))
            assert seconds.min() > peak * 1e-3, record["id"]


def test_attributes_agree_with_the_midi(tiny):
    for split in SPLITS:
        for record in _records(tiny, split):
            attributes = record["attributes"]
            midi = pretty_midi.PrettyMIDI(str(tiny / record["midi"]))
            assert midi.get_tempo_changes()[1][0] == pytest.approx(attributes["tempo_bpm"], abs=0.01)
            pitched = [inst for inst in midi.instruments if not inst.is_drum]
            assert [inst.program for inst in pitched] == attributes["programs"]
            assert [gm_name(inst.program) for inst in pitched] == attributes["instruments"]
            assert attributes["drums"] == any(inst.is_drum for inst in midi.instruments)
            families = {program_family(i.program) for i in pitched} | (
                {"drums"} if attributes["drums"] else set()
            )
            assert families == set(attributes["families"])
            for inst in midi.instruments:  # every named instrument has notes inside the window
                assert any(0 <= note.start < 10.0 for note in inst.notes), (record["id"], inst.program)


def _names_instrument(caption: str, program: int) -> bool:
    names = CAPTION_NAMES[program] + (VOICE_WORDS if program in (52, 53, 54) else ())
    return any(re.search(rf"\b{re.escape(name.lower())}\b", caption.lower()) for name in names)


def test_captions_name_exactly_the_recorded_instruments(tiny):
    for split in SPLITS:
        for record in _records(tiny, split):
            attributes, caption = record["attributes"], record["caption"]
            for program in attributes["programs"]:
                assert _names_instrument(caption, program), (caption, program)
            present_names = " | ".join(n for p in attributes["programs"] for n in CAPTION_NAMES[p])
            for program in {0, 24, 40, 56, 65, 73} - set(attributes["programs"]):
                name = CAPTION_NAMES[program][0]
                if name in present_names:  # "piano" inside "electric piano" is not a claim of a piano
                    continue
                assert not re.search(rf"\b{name}\b", caption.lower()), (caption, program)
            if attributes["drums"]:
                assert re.search(r"\b(drums?|drummer|percussion|drum kit)\b", caption.lower()), caption


def test_lyrics_only_with_a_singing_voice(tiny):
    for split in SPLITS:
        for record in _records(tiny, split):
            if record["lyrics"] is not None:
                assert record["attributes"]["melody_program"] in (52, 53)
                assert record["lyrics"].strip()


def test_stats_table(tiny):
    rows = corpus_stats(tiny)
    assert [r.name for r in rows] == ["train", "validation", "test", "all"]
    assert rows[-1].clips == 16 and rows[-1].mean_words > 20
    assert "| all | 16 |" in markdown_table(rows)


def _arrangement(programs, roles, **overrides) -> Arrangement:
    attributes = {
        "programs": programs,
        "roles": roles,
        "melody_program": programs[roles.index("melody")],
        "instruments": [gm_name(p) for p in programs],
        "drums": False,
        "drum_pattern": None,
        "tempo_bpm": 120,
        "tempo_class": "medium",
        "key": "G major",
        "mode": "major",
        "time_signature": "4/4",
        "dynamics": "medium",
        "density": "moderate",
        "register": "middle",
        "reverb": "dry",
        "quality": "clean",
        "degradations": [],
        "style": "reel",
        "mood": "happy",
    }
    attributes.update(overrides)
    tracks = [Track(p, False, r, np.array([[60.0, 0.5, 1.0, 80]])) for p, r in zip(programs, roles)]
    return Arrangement("p", "test", "none", "t", tracks, 0.0, None, attributes)


def test_captions_vary_and_name_every_instrument():
    arrangement = _arrangement(
        [73, 0, 33], ["melody", "harmony", "bass"], drums=True, drum_pattern="bossa nova"
    )
    captions = set()
    for seed in range(40):
        caption, facts = write_caption(arrangement.attributes, None, np.random.default_rng(seed))
        captions.add(caption)
        assert "instruments" in facts and "drums" in facts
        for program in (73, 0, 33):
            assert _names_instrument(caption, program), caption
        assert "bossa nova" in caption.lower()
        assert not re.search(r"\b(violin|(?<!bass )guitar|trumpet|choir)\b", caption.lower()), caption
        if "tempo" in facts:
            assert re.search(r"\b(medium|moderate|120 (bpm|beats))\b", caption.lower()), caption
    assert len(captions) == 40


def test_quality_checks_reject_bad_clips():
    arrangement = _arrangement([0], ["melody"])
    tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(CLIP_SAMPLES) / SAMPLE_RATE)).astype(np.float32)
    check_clip(arrangement, RenderedClip(tone, synth_peak=0.5))
    with pytest.raises(QualityError, match="length"):
        check_clip(arrangement, RenderedClip(tone[:-1], synth_peak=0.5))
    with pytest.raises(QualityError, match="clipped"):
        check_clip(arrangement, RenderedClip(tone, synth_peak=1.0))
    with pytest.raises(QualityError, match="silent"):
        check_clip(arrangement, RenderedClip(np.zeros_like(tone), synth_peak=0.0))
    gap = tone.copy()
    gap[SAMPLE_RATE * 2 : SAMPLE_RATE * 5] = 0
    with pytest.raises(QualityError, match="silent for"):
        check_clip(arrangement, RenderedClip(gap, synth_peak=0.5))
    arrangement.tracks[0].notes[:, 1] = 11.0
    with pytest.raises(QualityError, match="no notes"):
        check_clip(arrangement, RenderedClip(tone, synth_peak=0.5))


def test_split_assignment_keeps_pieces_apart():
    refs = [PieceRef(f"{source}/{i}", source, "") for source in ("pop909", "nottingham") for i in range(50)]
    assignment = assign_splits(refs, {"train": 80, "validation": 10, "test": 10}, seed=1)
    seen = {}
    for split, by_source in assignment.items():
        for pieces in by_source.values():
            for ref in pieces:
                assert seen.setdefault(ref.id, split) == split
    assert len(seen) == len(refs)
    jobs = plan_jobs(assignment, {"train": 30, "validation": 5, "test": 5}, seed=1, max_pieces=None)
    for job in jobs:
        assert all(seen[ref.id] == job.split for ref in job.candidates)


def test_same_seed_same_clip(tmp_path):
    from train.corpus.build import ALL_SOURCES, SIZES, default_symbolic_dir
    from train.corpus.sources import list_pieces

    refs = list_pieces(default_symbolic_dir(), ALL_SOURCES)
    assignment = assign_splits(refs, SIZES["tiny"].clips, seed=5)
    job = plan_jobs(assignment, SIZES["tiny"].clips, seed=5, max_pieces=2)[0]
    soundfont = find_soundfont("TimGM6mb.sf2")
    first = ClipMaker(tmp_path / "a", soundfont).make(job)
    second = ClipMaker(tmp_path / "b", soundfont).make(job)
    assert first == second
    assert (tmp_path / "a" / first["audio"]).read_bytes() == (tmp_path / "b" / second["audio"]).read_bytes()
