"""The synthetic corpus: a tiny build checked against its contract, its MIDI and its own captions.

The tiny build uses `../shared/data/symbolic` when present and the music21 chorales (shipped with the
music21 package) otherwise, so it runs on a clone too. The v2 recipe (the default) is checked in full;
the v1 recipe (the shipped checkpoints' corpus) for its own, v2-free, format.
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
from train.corpus.arrange import Arrangement, Track, _change_mode
from train.corpus.build import TINY_RENDERERS, ClipMaker, assign_splits, part_renderers, plan_jobs, recaption
from train.corpus.captions import write_caption, write_captions
from train.corpus.drums import FILL_NOTES, grooves_for, write_groove
from train.corpus.instruments import CAPTION_NAMES, gm_name
from train.corpus.produce import codec_round_trip, draw_part_mix, draw_production, mix_parts, produce
from train.corpus.render import (
    CLIP_SAMPLES,
    SAMPLE_RATE,
    QualityError,
    RenderedClip,
    check_clip,
    find_soundfont,
)
from train.corpus.sources import PieceRef
from train.corpus.stats import balance_table, corpus_stats, markdown_table
from train.data import CaptionSampler, FeatureItem, reference_captions

SPLITS = ("train", "validation", "test", "unseen")
RESERVED = ("musescore", "csound")
CONTRACT_KEYS = {"id", "audio", "caption", "captions", "lyrics", "piece", "source", "licence", "attributes"}
V1_ROW_KEYS = {*CONTRACT_KEYS - {"captions"}, "midi", "title", "window_start_s", "caption_facts"}
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


@pytest.fixture(scope="module")
def tiny_v1(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus_v1")
    build_corpus(out, size="tiny", seed=3, recipe="v1")
    return out


def _records(corpus: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (corpus / f"{split}.jsonl").read_text().splitlines()]


def test_tiny_manifests_follow_the_contract(tiny):
    counts = {split: len(_records(tiny, split)) for split in SPLITS}
    assert counts == {"train": 16, "validation": 3, "test": 3, "unseen": 4}
    config = json.loads((tiny / "build_config.json").read_text())
    for split in SPLITS:
        for record in _records(tiny, split):
            assert CONTRACT_KEYS <= record.keys()
            assert len(record["captions"]) >= 3 and len(set(record["captions"])) == len(record["captions"])
            assert record["caption"] == record["captions"][0]
            attributes = record["attributes"]
            assert ATTRIBUTE_KEYS <= attributes.keys()
            assert attributes["renderer"] in config["renderers"] + config["held_out_renderers"]
            assert attributes["renderer"] == attributes["renderers"][attributes["roles"].index("melody")]
            assert len(attributes["renderers"]) == len(attributes["programs"])
            assert (attributes["drum_renderer"] is not None) == attributes["drums"]
            assert attributes["tempo_class"] == tempo_class(attributes["tempo_bpm"])
            assert attributes["mood"] == mood(
                attributes["mode"], attributes["tempo_class"], attributes["dynamics"]
            )
            assert set(attributes["families"]) <= set(FAMILIES)
            assert attributes["key"].endswith(attributes["mode"])
            assert (tiny / record["audio"]).is_file()


def test_splits_share_no_composition(tiny):
    pieces = [{r["piece"] for r in _records(tiny, split)} for split in SPLITS]
    for i, first in enumerate(pieces):
        for second in pieces[i + 1 :]:
            assert not first & second


def test_renderers_several_none_reserved_and_unseen_held_out(tiny):
    config = json.loads((tiny / "build_config.json").read_text())
    assert len(config["renderers"]) >= 3
    assert config["held_out_renderers"] and not set(config["held_out_renderers"]) & set(config["renderers"])
    assert not any(
        word in name.lower()
        for name in config["renderers"] + config["held_out_renderers"]
        for word in RESERVED
    )
    training = set().union(*(part_renderers(r) for split in SPLITS[:3] for r in _records(tiny, split)))
    unseen = set().union(*(part_renderers(r) for r in _records(tiny, "unseen")))
    assert training <= set(config["renderers"]) and len(training) >= 2
    assert unseen == set(config["held_out_renderers"])
    # Renderers are drawn per part: some clip mixes two soundfonts.
    assert any(len(part_renderers(r)) > 1 for r in _records(tiny, "train"))


def test_find_soundfont_refuses_the_reserved_ones(tmp_path):
    for name in ("MuseScore_General.sf3", "csound.sf2"):
        (tmp_path / name).write_bytes(b"")
        with pytest.raises(ValueError, match="reserved"):
            find_soundfont(str(tmp_path / name))
    (tmp_path / "default-GM.sf2").symlink_to(
        tmp_path / "MuseScore_General.sf3"
    )  # a link decides by its target
    with pytest.raises(ValueError, match="reserved"):
        find_soundfont(str(tmp_path / "default-GM.sf2"))


def test_v1_recipe_keeps_its_format(tiny_v1):
    """The shipped checkpoints' corpus: one soundfont, one caption, three splits, no v2 attribute. (That
    its clips are identical, byte for byte, to the pre-v2 generator's was checked against that code.)"""
    config = json.loads((tiny_v1 / "build_config.json").read_text())
    assert config == {
        "size": "tiny",
        "seed": 3,
        "soundfont": "TimGM6mb.sf2",
        "sources": config["sources"],
        "symbolic_dir": config["symbolic_dir"],
    }
    assert not (tiny_v1 / "unseen.jsonl").exists()
    assert {s: len(_records(tiny_v1, s)) for s in SPLITS[:3]} == {"train": 10, "validation": 3, "test": 3}
    for split in SPLITS[:3]:
        for record in _records(tiny_v1, split):
            assert record.keys() == V1_ROW_KEYS
            assert (
                not {"renderer", "production", "texture", "tone", "drum_fill"} & record["attributes"].keys()
            )
            assert record["attributes"]["reverb"] in ("dry", "room", "hall")


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
            attributes = record["attributes"]
            for caption in record["captions"]:
                _check_instruments_named(caption, attributes)


def _check_instruments_named(caption: str, attributes: dict) -> None:
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


def test_stats_table(tiny, tiny_v1):
    rows = corpus_stats(tiny)
    assert [r.name for r in rows] == ["train", "validation", "test", "unseen", "all"]
    assert rows[-1].clips == 26 and rows[-1].mean_words > 20 and rows[-1].captions_per_clip == 5
    assert "| all | 26 |" in markdown_table(rows)
    table = balance_table(tiny)
    for dimension in (
        "tempo class",
        "mode",
        "key",
        "drums",
        "renderer (melody)",
        "renderers (parts)",
        "codec",
    ):
        assert f"| {dimension} |" in table
    assert [r.name for r in corpus_stats(tiny_v1)] == ["train", "validation", "test", "all"]


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
    first = ClipMaker(tmp_path / "a", soundfont).make(job)  # recipe v1
    second = ClipMaker(tmp_path / "b", soundfont).make(job)
    assert first == second
    assert (tmp_path / "a" / first["audio"]).read_bytes() == (tmp_path / "b" / second["audio"]).read_bytes()


def test_several_captions_are_independent_and_distinct():
    arrangement = _arrangement([73, 0, 33], ["melody", "harmony", "bass"], drums=True, drum_pattern="samba")
    captions, facts = write_captions(arrangement.attributes, None, np.random.default_rng(0), 5)
    assert len(set(captions)) == 5 and len(facts) == 5
    assert len({c.split(".")[0] for c in captions}) > 1  # different openings: orders and phrasings vary
    for caption in captions:
        _check_instruments_named(caption, arrangement.attributes | {"drums": True})
        assert "samba" in caption.lower() or "drums" not in " ".join(facts[captions.index(caption)])


def test_mode_change_moves_the_third_and_sixth():
    c_major = np.array([[p, i, i + 1, 80] for i, p in enumerate((60, 62, 64, 65, 67, 69, 71, 72))], float)
    minor = _change_mode(c_major, 0, "minor")
    assert list(minor[:, 0]) == [60, 62, 63, 65, 67, 68, 71, 72]  # harmonic minor keeps the leading tone
    assert list(_change_mode(minor, 0, "major")[:, 0]) == list(c_major[:, 0])


def test_more_grooves_only_for_v2_and_fills_replace_the_bar_end():
    v1 = [g.name for g in grooves_for(4, 4)]
    assert "hip-hop" not in v1 and "rock" in v1
    more = {g.name for g in grooves_for(4, 4, more=True)}
    assert {"hip-hop", "disco", "half-time", "samba"} <= more and set(v1) <= more
    groove = next(g for g in grooves_for(4, 4) if g.name == "rock")
    downbeats = np.arange(0, 12, 2.0)  # 2 s bars
    plain = write_groove(groove, downbeats, 2.0, 0.0, 10.0, np.random.default_rng(0))
    filled = write_groove(groove, downbeats, 2.0, 0.0, 10.0, np.random.default_rng(0), fill=True)
    toms = filled[np.isin(filled[:, 0], FILL_NOTES)]
    assert len(toms) == 4 and toms[:, 1].min() >= 7.5 and toms[:, 1].max() < 8.0  # the last beat of bar 4
    others = filled[~np.isin(filled[:, 0], FILL_NOTES)]
    assert not ((others[:, 1] >= 7.5) & (others[:, 1] < 8.0)).any()
    assert len(plain[(plain[:, 1] >= 7.5) & (plain[:, 1] < 8.0)]) > 0


def test_production_is_recorded_and_keeps_the_clip_length():
    rng = np.random.default_rng(0)
    t = np.arange(CLIP_SAMPLES) / SAMPLE_RATE
    parts = [0.3 * np.sin(2 * np.pi * 220 * t), 0.3 * np.sin(2 * np.pi * 110 * t)]
    bus = mix_parts(parts, [draw_part_mix("melody", rng), draw_part_mix("bass", rng)])
    assert bus.shape == (2, CLIP_SAMPLES)
    seen = set()
    for seed in range(12):
        production, summary = draw_production("medium", np.random.default_rng(seed))
        seen.add(production["reverb"]["shape"])
        assert (summary["quality"] == "low") == bool(summary["degradations"])
        audio = produce(bus, production, np.random.default_rng(seed))
        assert audio.shape == (CLIP_SAMPLES,) and np.isfinite(audio).all() and np.abs(audio).max() > 0.01
    assert len(seen) >= 3
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    for codec in ({"format": "mp3", "vbr_quality": 9}, {"format": "ogg", "level": 1.0}):
        decoded = codec_round_trip(tone, codec)
        assert decoded.shape == tone.shape
        assert np.corrcoef(decoded[SAMPLE_RATE:-SAMPLE_RATE], tone[SAMPLE_RATE:-SAMPLE_RATE])[0, 1] > 0.9


def _item(caption: str, captions: tuple[str, ...] = ()) -> FeatureItem:
    return FeatureItem("c", caption, None, None, "p", None, captions=captions)


def test_training_samples_a_caption_per_step_and_evaluation_uses_them_all():
    batches = []
    sampler = CaptionSampler(lambda items: [item.caption for item in items], seed=0)
    several, single = _item("a", ("a", "b", "c")), _item("only")
    for _ in range(30):
        batches.append(sampler([several, single]))
    assert {batch[0] for batch in batches} == {"a", "b", "c"}
    assert {batch[1] for batch in batches} == {"only"}  # a v1 row is left as it is
    assert reference_captions([several, single]) == [["a", "b", "c"], ["only"]]


def test_v2_clip_is_deterministic(tmp_path):
    from train.corpus.build import ALL_SOURCES, SIZES_V2, default_symbolic_dir
    from train.corpus.sources import list_pieces

    refs = list_pieces(default_symbolic_dir(), ALL_SOURCES)
    clips = SIZES_V2["tiny"].clips
    job = plan_jobs(assign_splits(refs, clips, seed=5), clips, seed=5, max_pieces=2)[0]
    first = ClipMaker(tmp_path / "a", renderers=TINY_RENDERERS).make(job)
    second = ClipMaker(tmp_path / "b", renderers=TINY_RENDERERS).make(job)
    assert first == second and len(first["captions"]) >= 3
    assert (tmp_path / "a" / first["audio"]).read_bytes() == (tmp_path / "b" / second["audio"]).read_bytes()


def test_v2_captions_always_state_tempo_key_and_drums(tiny):
    for split in ("train", "validation", "test", "unseen"):
        for record in _records(tiny, split):
            for caption, facts in zip(record["captions"], record["captions_facts"], strict=True):
                assert {"tempo", "key", "drums"} <= set(facts), caption
                attributes = record["attributes"]
                assert attributes["mode"] in caption or attributes["key"] in caption


def test_recaption_rewrites_exactly_what_a_fresh_build_writes(tiny, tmp_path):
    import shutil

    copy = tmp_path / "corpus"
    shutil.copytree(tiny, copy, ignore=shutil.ignore_patterns("*.flac", "*.mid"))
    fresh = {split: (tiny / f"{split}.jsonl").read_text() for split in ("train", "unseen")}
    # An older build's captions (as if drawn by other rules) are replaced by the current ones.
    rows = _records(copy, "train")
    rows[0]["captions"] = ["An old caption."]
    (copy / "train.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n")
    counts = recaption(copy)
    assert counts["train"] == len(rows)
    for split, text in fresh.items():
        assert (copy / f"{split}.jsonl").read_text() == text
    record = json.loads((copy / "records" / "train" / f"{rows[0]['id']}.json").read_text())
    assert record == json.loads(fresh["train"].splitlines()[0])
    with pytest.raises(ValueError, match="not a recipe v2"):
        legacy = tmp_path / "v1"
        legacy.mkdir()
        (legacy / "build_config.json").write_text(json.dumps({"size": "tiny", "seed": 0}))
        recaption(legacy)
