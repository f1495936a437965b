"""Attribute accuracy: read a caption back into `musiccap.attributes` labels and compare with the truth.

On the synthetic corpus every clip carries the attributes it was made from (docs/CORPUS.md, the row
contract), so a caption can be scored for being right, not only for n-gram overlap.

How a caption is read (matching is on lower-cased whole words, plurals included):

- Instruments: every phrase of `FAMILY_WORDS` and `DRUM_WORDS` is one lexicon, matched longest
  first and without overlaps, so a phrase names one family: "bass guitar" is bass (not guitar),
  "synth strings" strings, "steel drums" percussive (not the drum kit), "thumb piano" ethnic. The
  families are those of `musiccap.attributes.program_family` (General MIDI blocks: a fiddle is
  "ethnic", timpani and the double bass are "strings"), the truth the corpus records. Instrument
  phrases are then blanked out for the other attributes ("slow strings" says nothing about tempo,
  "bright piano" nothing about mood).
- A mention is *negated* when one of `NEGATIONS` ("no", "without", "not", "isn't", ...) occurs among
  the three words before it in the same clause (punctuation ends a clause) ("there are no drums",
  "without any vocals"), or "absent"/"missing" among the three words after it ("drums are absent");
  negated mentions state absence.
- Instrument families: the set of families with a non-negated mention. Scored against the clip's
  `families` with micro precision / recall / F1 over all clips. "drums" is left out of both sets:
  it has its own accuracy.
- Tempo class: a stated BPM ("around 125 beats per minute", "128 BPM") gives its band
  (`musiccap.attributes.tempo_class`) and wins over words; otherwise the first tempo word. Words of
  `TEMPO_WORDS` count anywhere; those of `TEMPO_CONTEXT_WORDS` ("medium", "moderate", "relaxed")
  only next to "tempo"/"pace" ("a moderate tempo", "the pace is relaxed"), since "moderate volume",
  "moderately busy" and "relaxed mood" are not tempi.
- Mode, mood: the label of the first mention (captions name the overall character first; "slow
  intro, then fast" counts as slow). A word read as a tempo is not read again as a mood, nor "bright" or
  "dark" in a sentence about the sound itself ("the mix sounds bright and crisp", "a dense, bright plate
  reverb", "the sound is warm and dark, with soft highs"): there they describe the timbre.
- Drums: True on a non-negated drum mention, False on a negated one (or on "no percussion" alone).
- A caption that states nothing about an attribute counts as **wrong** for that attribute's
  accuracy: saying nothing is not credited as a correct guess.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from musiccap.attributes import FAMILIES, MODES, MOODS, TEMPO_CLASSES, tempo_class

# Plain phrases (lower case); each gets word boundaries and an optional plural. The corpus's own
# instrument names (train/corpus/instruments.py CAPTION_NAMES) all appear here under their family.
FAMILY_WORDS: dict[str, tuple[str, ...]] = {
    "piano": ("piano", "pianist", "keyboard", "rhodes", "harpsichord", "clavinet", "clavichord", "grand piano",
              "electric piano", "bright piano", "bright acoustic piano", "honky-tonk piano", "saloon piano"),
    "mallet": ("glockenspiel", "vibraphone", "vibes", "marimba", "xylophone", "celesta", "music box",
               "tubular bell", "dulcimer", "hammered dulcimer", "mallet", "chime"),
    "organ": ("organ", "accordion", "harmonica", "mouth harp", "harmonium", "bandoneon", "tango accordion",
              "pipe organ", "reed organ"),
    "guitar": ("guitar", "guitarist", "guitar harmonics"),
    "bass": ("bass", "bassist", "bass guitar", "electric bass", "upright bass",
             "acoustic bass", "fretless bass", "slap bass", "picked bass", "synth bass", "synthesizer bass"),
    "strings": ("violin", "viola", "cello", "violoncello", "string", "harp", "orchestra",
                "orchestral", "pizzicato", "violinist", "cellist", "double bass", "contrabass", "timpani",
                "synth strings", "slow strings", "string section", "string ensemble", "string quartet",
                "orchestra hit", "orchestral harp"),
    "voice": ("vocal", "voice", "singer", "singing", "sings", "sung", "choir", "choral", "vocalist", "humming",
              "vocal oohs", "synth voice", "choir singing aah"),
    "brass": ("trumpet", "trombone", "tuba", "brass", "french horn", "horn", "flugelhorn", "cornet",
              "synth brass", "brass section", "brass ensemble", "muted trumpet"),
    "reed": ("saxophone", "sax", "clarinet", "oboe", "bassoon", "english horn", "cor anglais", "saxophonist"),
    "pipe": ("flute", "piccolo", "recorder", "pan flute", "panpipe", "whistle", "ocarina", "shakuhachi",
             "flautist", "blown bottle"),
    "synth": ("synth", "synthesizer", "synthesiser", "synth pad", "pad", "polysynth", "synth lead",
              "synth voice lead", "synth effect", "bass-and-lead synth"),
    "ethnic": ("sitar", "banjo", "shamisen", "koto", "kalimba", "thumb piano", "bagpipe", "shanai", "fiddle"),
    "percussive": ("taiko", "taiko drum", "woodblock", "wood block", "agogo", "tinkle bell", "steel drum",
                   "steelpan", "melodic tom", "synth drum", "reverse cymbal"),
    "effects": ("sound effect", "sfx", "helicopter", "seashore", "applause", "gunshot", "bird tweet",
                "telephone ring", "guitar fret noise", "breath noise"),
}  # fmt: skip
DRUM_WORDS: tuple[str, ...] = ("drum", "drummer", "drum kit", "drum part", "percussion", "snare", "hi-hat",
                               "hihat", "hi hat", "kick", "cymbal", "drumming", "tom", "bass drum")  # fmt: skip
# A part's role, not an instrument: "a tuba plays the bass line" names brass only.
ROLE_WORDS: tuple[str, ...] = ("bass line", "bassline", "bass part", "bass register")
TEMPO_WORDS: dict[str, tuple[str, ...]] = {
    "slow": ("slow", "slowly", "slow-paced", "leisurely", "unhurried", "largo", "adagio", "andante"),
    "medium": ("medium tempo", "medium-tempo", "medium paced", "medium-paced", "mid-tempo", "mid tempo",
               "moderato"),
    "fast": ("fast", "quick", "quickly", "rapid", "brisk", "uptempo", "up-tempo", "allegro", "presto",
             "fast-paced"),
}  # fmt: skip
# Tempo words only where the clause is about the tempo (see `_about_tempo`).
TEMPO_CONTEXT_WORDS: dict[str, tuple[str, ...]] = {
    "slow": ("relaxed",),
    "medium": ("medium", "moderate", "moderately"),
}
MODE_WORDS: dict[str, tuple[str, ...]] = {"major": ("major",), "minor": ("minor",)}
# "driving" is not a mood word: captions use it for the rhythm ("a driving two-step groove", MusicCaps'
# "driving beat"), which would make a melancholic clip with a driving groove read as energetic.
MOOD_WORDS: dict[str, tuple[str, ...]] = {
    "calm": ("calm", "calming", "relaxing", "relaxed", "peaceful", "soothing", "serene", "tranquil"),
    "happy": ("happy", "joyful", "joyous", "cheerful", "uplifting", "bright", "playful"),
    "energetic": ("energetic", "lively", "upbeat", "spirited", "powerful", "exciting", "vigorous",
                  "groovy"),
    "melancholic": ("melancholic", "melancholy", "sad", "sorrowful", "mournful", "somber", "sombre", "wistful",
                    "gloomy"),
    "dramatic": ("dramatic", "tense", "intense", "dark", "epic", "suspenseful", "ominous", "menacing",
                 "serious"),
}  # fmt: skip
NEGATIONS = frozenset({"no", "without", "not", "lacks", "lacking", "absent", "none", "nor", "never", "neither",
                       "isn't", "aren't", "doesn't", "don't"})  # fmt: skip
NEGATIONS_AFTER = frozenset({"absent", "missing"})
TEMPO_NOUNS = ("tempo", "pace", "paced", "speed")

assert set(FAMILY_WORDS) == set(FAMILIES) - {"drums"}
assert (
    set(TEMPO_WORDS) == set(TEMPO_CLASSES) and set(MODE_WORDS) == set(MODES) and set(MOOD_WORDS) == set(MOODS)
)

_BEFORE = r"(?<![a-z0-9-])"
_AFTER = r"(?:e?s)?(?![a-z0-9-])"


def _lexicon_pattern(lexicon: Mapping[str, Sequence[str]]) -> tuple[re.Pattern, list[str]]:
    """One pattern over every phrase of every label, longest first (so "drum kit" wins over "drum" and
    "bass guitar" over "guitar"); group i of a match names its label ``labels[i]``."""
    entries = sorted(((p, label) for label, phrases in lexicon.items() for p in phrases),
                     key=lambda entry: len(entry[0]), reverse=True)  # fmt: skip
    alternatives = "|".join(f"({re.escape(phrase)})" for phrase, _ in entries)
    return re.compile(_BEFORE + "(?:" + alternatives + ")" + _AFTER), [label for _, label in entries]


_INSTRUMENTS = _lexicon_pattern({**FAMILY_WORDS, "drums": DRUM_WORDS, "role": ROLE_WORDS})
_TEMPI = _lexicon_pattern(TEMPO_WORDS)
_CONTEXT_TEMPI = _lexicon_pattern(TEMPO_CONTEXT_WORDS)
_MODES = _lexicon_pattern(MODE_WORDS)
_MOODS = _lexicon_pattern(MOOD_WORDS)
_BPM = re.compile(_BEFORE + r"(\d+(?:\.\d+)?)\s*-?\s*(?:bpm|beats per minute|beats a minute|beats/min)\b")
# Which reader read a caption, recorded with every listening block (train/listening.py) so a table never
# compares moods read two ways without saying so. 2: "bright"/"dark" about the sound are not moods.
READER_VERSION = 2
_WORD = re.compile(r"[a-z0-9'-]+")
_SENTENCE = re.compile(r"[^.!?]+[.!?]?")
# a sentence about the production: "the sound" as a noun, not "it sounds sorrowful" (a mood sentence)
_ABOUT_THE_SOUND = re.compile(r"\b(?:mix|reverb|highs|lows)\b|\b(?:the|a|its|this)\s+sound\b")
_TIMBRE_MOOD_WORDS = re.compile(r"\b(?:bright|dark)\b")
_CLAUSE_END = re.compile(r"[.;:,!?]")
_TEMPO_NOUN_AFTER = re.compile(r"[\s-]*(?:" + "|".join(TEMPO_NOUNS) + r")\b")
_TEMPO_NOUN_BEFORE = re.compile(
    r"\b(?:tempo|pace|speed)\s+(?:is|was|feels|seems|stays|remains)\s+(?:[a-z]+\s+)?$"
)


@dataclass
class Mention:
    label: str
    start: int
    end: int
    negated: bool


def _negated(text: str, start: int, end: int) -> bool:
    before = _CLAUSE_END.split(text[:start])[-1]
    after = _CLAUSE_END.split(text[end:])[0]
    return bool(NEGATIONS.intersection(_WORD.findall(before)[-3:])) or bool(
        NEGATIONS_AFTER.intersection(_WORD.findall(after)[:3])
    )


def _mentions(text: str, lexicon: tuple[re.Pattern, list[str]]) -> list[Mention]:
    pattern, labels = lexicon
    return [
        Mention(labels[m.lastindex - 1], m.start(), m.end(), _negated(text, m.start(), m.end()))
        for m in pattern.finditer(text)
    ]


def _blank(text: str, mentions: Sequence[Mention]) -> str:
    """``text`` with the mentions' characters replaced by spaces (positions unchanged)."""
    chars = list(text)
    for mention in mentions:
        chars[mention.start : mention.end] = " " * (mention.end - mention.start)
    return "".join(chars)


def _timbre_blanked(text: str) -> str:
    """``text`` with "bright" and "dark" blanked (positions unchanged) in sentences about the sound itself,
    where they describe the timbre, not the mood. Corpus v2 states the tone and a plate reverb that way
    before its mood sentence, so the first mention read 19 % of its test references' moods wrong."""

    def sentence(match: re.Match) -> str:
        text = match.group()
        if not _ABOUT_THE_SOUND.search(text):
            return text
        return _TIMBRE_MOOD_WORDS.sub(lambda word: " " * len(word.group()), text)

    return _SENTENCE.sub(sentence, text)


def _about_tempo(text: str, mention: Mention) -> bool:
    """Is this word about the tempo: followed by "tempo"/"pace", or its complement ("the tempo is
    moderate", "the pace is fairly relaxed")?"""
    return bool(
        _TEMPO_NOUN_AFTER.match(text, mention.end) or _TEMPO_NOUN_BEFORE.search(text[: mention.start])
    )


def _tempo_mentions(text: str) -> list[Mention]:
    """Tempo words and stated BPMs (label = the BPM's band), in order of position."""
    mentions = _mentions(text, _TEMPI)
    mentions += [m for m in _mentions(text, _CONTEXT_TEMPI) if _about_tempo(text, m)]
    for match in _BPM.finditer(text):
        label = tempo_class(float(match.group(1)))
        mentions.append(Mention(f"bpm:{label}", match.start(), match.end(), _negated(text, *match.span())))
    return sorted(mentions, key=lambda m: m.start)


def _first(mentions: Sequence[Mention]) -> str | None:
    stated = [m for m in mentions if not m.negated]
    return min(stated, key=lambda m: m.start).label if stated else None


@dataclass
class CaptionAttributes:
    """What a caption states; None where it states nothing."""

    families: set[str]
    drums: bool | None
    tempo_class: str | None
    mode: str | None
    mood: str | None


def read_caption(caption: str) -> CaptionAttributes:
    text = caption.lower()
    instruments = _mentions(text, _INSTRUMENTS)
    families = {m.label for m in instruments if not m.negated and m.label in FAMILY_WORDS}
    drum_mentions = [m for m in instruments if m.label == "drums"]
    drums = None
    if any(not m.negated for m in drum_mentions):
        drums = True
    elif drum_mentions:
        drums = False
    text = _blank(text, instruments)  # "slow strings", "bright piano" say nothing about tempo or mood
    tempi = _tempo_mentions(text)
    stated_bpm = _first([m for m in tempi if m.label.startswith("bpm:")])
    tempo = stated_bpm.removeprefix("bpm:") if stated_bpm else _first(tempi)
    rest = _blank(text, tempi)  # "a relaxed tempo" is a tempo, not a mood
    return CaptionAttributes(
        families=families,
        drums=drums,
        tempo_class=tempo,
        mode=_first(_mentions(rest, _MODES)),
        mood=_first(_mentions(_timbre_blanked(rest), _MOODS)),
    )


@dataclass
class AttributeAccuracy:
    instrument_precision: float
    instrument_recall: float
    instrument_f1: float
    tempo_acc: float
    mode_acc: float
    drums_acc: float
    mood_acc: float

    def to_metrics(self) -> dict[str, float]:
        return {f"attr_{name}": value for name, value in self.__dict__.items()}


def attribute_accuracy(predictions: Sequence[str], attributes: Sequence[Mapping]) -> AttributeAccuracy:
    """Score captions against the corpus attributes (`families`, `drums`, `tempo_class`, `mode`, `mood`)."""
    if len(predictions) != len(attributes) or not predictions:
        raise ValueError(f"{len(predictions)} predictions for {len(attributes)} attribute records")
    return score_reads([read_caption(caption) for caption in predictions], attributes)


def score_reads(reads: Sequence[CaptionAttributes], attributes: Sequence[Mapping]) -> AttributeAccuracy:
    """``attribute_accuracy`` of captions already read (``read_caption``), one per attribute record."""
    if len(reads) != len(attributes) or not reads:
        raise ValueError(f"{len(reads)} read captions for {len(attributes)} attribute records")
    true_positives = predicted = actual = 0
    correct = {"tempo_class": 0, "mode": 0, "drums": 0, "mood": 0}
    for read, truth in zip(reads, attributes):
        stated = read.families - {"drums"}
        expected = set(truth["families"]) - {"drums"}
        true_positives += len(stated & expected)
        predicted += len(stated)
        actual += len(expected)
        for name in correct:
            correct[name] += getattr(read, name) is not None and getattr(read, name) == truth[name]
    precision = true_positives / predicted if predicted else 0.0
    recall = true_positives / actual if actual else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    n = len(reads)
    return AttributeAccuracy(
        instrument_precision=precision,
        instrument_recall=recall,
        instrument_f1=f1,
        tempo_acc=correct["tempo_class"] / n,
        mode_acc=correct["mode"] / n,
        drums_acc=correct["drums"] / n,
        mood_acc=correct["mood"] / n,
    )


# A caption's stated BPM decides its tempo before any tempo word does (``_tempo_mentions``), so the number
# is an attribute word too: every whole number from 40 to 240 (corpus v2 draws 50-200 BPM).
STATED_BPMS = frozenset(str(bpm) for bpm in range(40, 241))


def attribute_words() -> set[str]:
    """Every single word the reader reads an attribute from, the negations that flip one and the numbers
    a tempo is stated in."""
    phrases = [p for words in FAMILY_WORDS.values() for p in words] + list(DRUM_WORDS)
    for lexicon in (TEMPO_WORDS, TEMPO_CONTEXT_WORDS, MODE_WORDS, MOOD_WORDS):
        phrases += [p for words in lexicon.values() for p in words]
    words = {word for phrase in phrases for word in re.split(r"[\s-]+", phrase)}
    words |= {word + "s" for word in words}  # plurals, as the reader reads
    return words | {"no", "without", "bpm"} | STATED_BPMS


def attribute_token_ids(encode: Callable[[str], list[int]]) -> set[int]:
    """The ids a tokenizer gives the attribute words, alone, after a space and capitalised (BPE and
    SentencePiece vocabularies spell a word differently at a sentence start and after a space). Only
    spellings that are one token count: the pieces of a split word ("▁", "##s") are shared with others."""
    ids: set[int] = set()
    for word in attribute_words():
        for spelling in (word, " " + word, word.capitalize(), " " + word.capitalize()):
            encoded = encode(spelling)
            if len(encoded) == 1:
                ids.update(encoded)
    return ids
