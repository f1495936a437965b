"""The attribute reader (``musiccap.metrics.attributes.read_caption``) on hand-written captions and on
captions the corpus generator writes: negation, synonyms, stated BPMs, and the corpus's own phrasings."""

import numpy as np
import pytest

from musiccap.attributes import mood, program_family, tempo_class
from musiccap.metrics.attributes import read_caption
from train.corpus import instruments as gm
from train.corpus.captions import _GROOVE_NAMES, _STYLE_PHRASES, write_caption

HAND_WRITTEN = [
    # negation: before the mention (no, without, isn't, nor) and after it (absent, missing)
    ("A piano ballad with no drums, without vocals.", dict(families={"piano"}, drums=False)),
    ("There isn't any percussion; the guitar plays alone.", dict(families={"guitar"}, drums=False)),
    ("Neither drums nor bass: just a violin.", dict(families={"strings"}, drums=False)),
    ("The drums are absent and the singer is missing. A flute plays.", dict(families={"pipe"}, drums=False)),
    ("No percussion is used, but a drum kit plays later.", dict(families=set(), drums=True)),
    # one phrase, one family: role words and compound names are not two instruments
    ("A tuba plays the bass line and a bassoon doubles it.", dict(families={"brass", "reed"}, drums=None)),
    ("Bass guitar, synth strings, steel drums, a thumb piano and a bass drum.",
     dict(families={"bass", "strings", "percussive", "ethnic"}, drums=True)),
    ("A fiddle, timpani and a double bass.", dict(families={"ethnic", "strings"}, drums=None)),
    # numbers: a stated BPM gives its band, and wins over a tempo word
    ("It moves at around 125 beats per minute.", dict(tempo_class="medium")),
    ("A slow tempo of about 131 BPM.", dict(tempo_class="fast")),
    ("The groove sits at 72bpm.", dict(tempo_class="slow")),
    # tempo words that are tempi only next to "tempo"/"pace"
    ("The pace is relaxed, and the mood is happy.", dict(tempo_class="slow", mood="happy")),
    ("It is played at a moderate volume. The texture is moderately busy.", dict(tempo_class=None)),
    ("A moderate tempo and a relaxed mood.", dict(tempo_class="medium", mood="calm")),
    ("The tempo is medium.", dict(tempo_class="medium")),
    ("An unhurried waltz; later it turns brisk.", dict(tempo_class="slow")),
    # instrument names are not tempo or mood words
    ("Slow strings and a bright piano. It sounds upbeat.",
     dict(families={"strings", "piano"}, tempo_class=None, mood="energetic")),
    # mode and mood synonyms, negated moods
    ("Not sad at all: a joyful tune in D major.", dict(mode="major", mood="happy")),
    ("A gloomy piece in F# minor.", dict(mode="minor", mood="melancholic")),
    # "driving" describes the groove, not the mood
    ("A driving two-step groove on the drums. It feels melancholic.", dict(drums=True, mood="melancholic")),
    ("The dynamics are soft and gentle.", dict(mood=None)),
    # "bright" and "dark" in a sentence about the sound describe the timbre; elsewhere the mood
    ("The mix sounds bright and crisp. The mood is sad.", dict(mood="melancholic")),
    ("There is a dense, bright plate reverb. It sounds dark and tense.", dict(mood="dramatic")),
    ("The sound is warm and dark, with soft highs.", dict(mood=None)),
    ("The atmosphere is bright.", dict(mood="happy")),
]  # fmt: skip


@pytest.mark.parametrize("caption,expected", HAND_WRITTEN)
def test_hand_written_captions(caption, expected):
    read = read_caption(caption).__dict__
    assert {key: read[key] for key in expected} == expected


def test_every_corpus_instrument_name_reads_as_its_family():
    """Each of the corpus's names for a General MIDI program names exactly that program's family
    and nothing else (no tempo, mood, mode or drum kit)."""
    for program, names in gm.CAPTION_NAMES.items():
        for name in names:
            read = read_caption(f"The melody is played by {name}. It sounds upbeat.")
            assert read.families == {program_family(program)}, name
            assert (read.tempo_class, read.mode, read.drums, read.mood) == (None, None, None, "energetic"), (
                name
            )


def _random_attributes(rng: np.random.Generator) -> dict:
    """Attributes as ``train.corpus.arrange.arrange`` writes them, drawn at random."""
    voice = rng.random() < 0.2
    melody = int(rng.choice(gm.VOICE_MELODY_PROGRAMS if voice else gm.MELODY_PROGRAMS))
    programs, roles = [melody], ["melody"]
    for role, pool in (("harmony", gm.HARMONY_PROGRAMS), ("bass", gm.BASS_PROGRAMS),
                       ("counter", gm.MELODY_PROGRAMS)):  # fmt: skip
        names = {gm.caption_name(p) for p in programs}
        choices = [p for p in pool if gm.caption_name(p) not in names]
        if rng.random() < 0.6 and choices:
            programs.append(int(rng.choice(choices)))
            roles.append(role)
    drums = bool(rng.random() < 0.5)
    bpm = int(rng.integers(60, 170))
    mode = str(rng.choice(["major", "minor"]))
    dynamics = str(rng.choice(["soft", "medium", "loud"]))
    quality = str(rng.choice(["clean", "low"]))
    return {
        "programs": programs,
        "roles": roles,
        "families": sorted({program_family(p) for p in programs} | ({"drums"} if drums else set())),
        "melody_program": melody,
        "drums": drums,
        "drum_pattern": str(rng.choice(list(_GROOVE_NAMES))) if drums and rng.random() < 0.8 else None,
        "tempo_bpm": bpm,
        "tempo_class": tempo_class(bpm),
        "key": f"{rng.choice(['C', 'D', 'F#', 'Bb'])} {mode}",
        "mode": mode,
        "time_signature": str(rng.choice(["4/4", "3/4", "6/8", "2/4"])),
        "dynamics": dynamics,
        "density": str(rng.choice(["sparse", "moderate", "dense"])),
        "register": str(rng.choice(["low", "middle", "high"])),
        "reverb": str(rng.choice(["dry", "room", "hall", "plate", "spring"])),
        "tone": str(rng.choice(["bright", "dark", "neutral"])),  # v2's tone sentence names no mood
        "quality": quality,
        "degradations": ["noise", "distortion"] if quality == "low" else [],
        "style": str(rng.choice(list(_STYLE_PHRASES))),
        "mood": mood(mode, tempo_class(bpm), dynamics),
    }


def test_reader_reads_back_what_the_corpus_generator_states():
    """Captions written by the corpus generator: every attribute a caption states (its facts) is read
    back right, and one it does not state is read as unstated (never as a wrong value)."""
    rng = np.random.default_rng(0)
    for _ in range(400):
        attributes = _random_attributes(rng)
        lyrics = "la la la" if attributes["melody_program"] in gm.VOICE_MELODY_PROGRAMS else None
        caption, facts = write_caption(attributes, lyrics, rng)
        read = read_caption(caption)
        assert read.families == set(attributes["families"]) - {"drums"}, caption
        stated = {"drums": "drums", "tempo_class": "tempo", "mode": "key", "mood": "mood"}
        for attribute, fact in stated.items():
            expected = attributes[attribute] if fact in facts else None
            assert getattr(read, attribute) == expected, (attribute, caption)


def test_attribute_token_ids_keep_whole_attribute_words_only():
    from musiccap.metrics.attributes import attribute_token_ids, attribute_words

    vocabulary = {"piano": 1, "minor": 2, "no": 3, "the": 4, "##s": 5, "170": 6, "3": 7}

    def encode(text: str) -> list[int]:  # word level; splits "glockenspiel"; unknown words give no id
        word = text.strip().lower()
        return [9, 5] if word == "glockenspiel" else [vocabulary[word]] if word in vocabulary else []

    ids = attribute_token_ids(encode)
    assert {1, 2, 3, 6} <= ids and not {4, 5, 7} & ids  # a BPM's number counts; a "3" of "3/4" does not
    assert {"piano", "minor", "drums", "fast", "calm"} <= attribute_words()
