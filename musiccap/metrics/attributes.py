"""Attribute accuracy: read a caption back into `musiccap.attributes` labels and compare with the truth.

On the synthetic corpus every clip carries the attributes it was made from (DESIGN.md, Corpus
contract), so a caption can be scored for being right, not only for n-gram overlap.

How a caption is read (the lexicon is `FAMILY_WORDS`, `TEMPO_WORDS`, `MODE_WORDS`, `MOOD_WORDS`,
`DRUM_WORDS` below; matching is on lower-cased whole words, plurals included):

- A mention is *negated* when one of `NEGATIONS` ("no", "without", "not", ...) occurs among the
  three words before it in the same clause (punctuation ends a clause) ("there are no drums", "without any vocals"); negated mentions state absence.
- Instrument families: the set of families with a non-negated mention. Scored against the clip's
  `families` with micro precision / recall / F1 over all clips. "drums" is left out of both sets:
  it has its own accuracy.
- Tempo class, mode, mood: the label of the first mention in the caption (captions name the overall
  character first; "slow intro, then fast" counts as slow).
- Drums: True on a non-negated drum mention, False on a negated one (or on "no percussion" alone).
- A caption that states nothing about an attribute counts as **wrong** for that attribute's
  accuracy: saying nothing is not credited as a correct guess.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from musiccap.attributes import FAMILIES, MODES, MOODS, TEMPO_CLASSES

# Phrases are regular expressions over lower-cased text; each gets word boundaries and an optional plural.
FAMILY_WORDS: dict[str, tuple[str, ...]] = {
    "piano": ("piano", "pianist", "keyboard", "rhodes", "harpsichord", "clavinet", "clavichord"),
    "mallet": ("glockenspiel", "vibraphone", "marimba", "xylophone", "celesta", "music box", "tubular bell",
               "dulcimer", "mallet", "chime"),
    "organ": ("organ", "accordion", "harmonica", "harmonium", "bandoneon"),
    "guitar": ("guitar", "guitarist"),
    "bass": (r"bass(?! drum)(?!oon)", "bassline", "bassist", "double bass", "contrabass"),
    "strings": ("violin", "viola", "cello", "string", "fiddle", "harp", "orchestra", "orchestral", "pizzicato",
                "violinist", "cellist"),
    "voice": ("vocal", "voice", "singer", "singing", "sings", "sung", "choir", "choral", "vocalist", "humming"),
    "brass": ("trumpet", "trombone", "tuba", "brass", "french horn", "flugelhorn", "cornet"),
    "reed": ("saxophone", "sax", "clarinet", "oboe", "bassoon", "english horn", "saxophonist"),
    "pipe": ("flute", "piccolo", "recorder", "pan flute", "panpipe", "whistle", "ocarina", "shakuhachi", "flautist"),
    "synth": ("synth", "synthesizer", "synthesiser", "synth pad", "pad"),
    "ethnic": ("sitar", "banjo", "shamisen", "koto", "kalimba", "bagpipe", "shanai", "steel drum"),
    "percussive": ("timpani", "taiko", "woodblock", "wood block", "agogo", "tinkle bell", "steel drum"),
    "effects": ("sound effect", "sfx", "helicopter", "seashore", "applause", "gunshot"),
}  # fmt: skip
DRUM_WORDS: tuple[str, ...] = ("drum", "drummer", "drum kit", "percussion", "snare", "hi-hat",
                               "hihat", "hi hat", "kick", "cymbal", "drumming", "tom")  # fmt: skip
TEMPO_WORDS: dict[str, tuple[str, ...]] = {
    "slow": ("slow", "slowly", "slow-paced", "slow tempo", "leisurely", "largo", "adagio", "andante"),
    "medium": ("medium tempo", "medium-tempo", "medium paced", "medium-paced", "moderate", "moderately",
               "mid-tempo", "mid tempo", "moderato"),
    "fast": ("fast", "quick", "quickly", "rapid", "uptempo", "up-tempo", "allegro", "presto", "fast-paced"),
}  # fmt: skip
MODE_WORDS: dict[str, tuple[str, ...]] = {"major": ("major",), "minor": ("minor",)}
MOOD_WORDS: dict[str, tuple[str, ...]] = {
    "calm": ("calm", "calming", "relaxing", "relaxed", "peaceful", "soothing", "serene", "tranquil", "gentle"),
    "happy": ("happy", "joyful", "joyous", "cheerful", "uplifting", "bright", "playful", "upbeat"),
    "energetic": ("energetic", "lively", "powerful", "driving", "exciting", "vigorous", "groovy"),
    "melancholic": ("melancholic", "melancholy", "sad", "sorrowful", "mournful", "somber", "sombre", "wistful"),
    "dramatic": ("dramatic", "tense", "intense", "dark", "epic", "suspenseful", "ominous", "menacing"),
}  # fmt: skip
NEGATIONS = frozenset({"no", "without", "not", "lacks", "lacking", "absent", "none", "nor", "never"})

assert set(FAMILY_WORDS) == set(FAMILIES) - {"drums"}
assert (
    set(TEMPO_WORDS) == set(TEMPO_CLASSES) and set(MODE_WORDS) == set(MODES) and set(MOOD_WORDS) == set(MOODS)
)


def _pattern(phrases: Sequence[str]) -> re.Pattern:
    # Longest first so "drum kit" wins over "drum" and "double bass" over "bass".
    alternatives = sorted(phrases, key=len, reverse=True)
    return re.compile(r"(?<![a-z0-9-])(?:" + "|".join(alternatives) + r")(?:e?s)?(?![a-z0-9-])")


_FAMILY_PATTERNS = {family: _pattern(words) for family, words in FAMILY_WORDS.items()}
_DRUM_PATTERN = _pattern(DRUM_WORDS)
_TEMPO_PATTERNS = {label: _pattern(words) for label, words in TEMPO_WORDS.items()}
_MODE_PATTERNS = {label: _pattern(words) for label, words in MODE_WORDS.items()}
_MOOD_PATTERNS = {label: _pattern(words) for label, words in MOOD_WORDS.items()}
_WORD = re.compile(r"[a-z0-9'-]+")


_CLAUSE_END = re.compile(r"[.;:,!?]")


def _negated(text: str, start: int) -> bool:
    clause = _CLAUSE_END.split(text[:start])[-1]
    return bool(NEGATIONS.intersection(_WORD.findall(clause)[-3:]))


def _mentions(text: str, pattern: re.Pattern) -> list[tuple[int, bool]]:
    """(position, negated) of every match."""
    return [(m.start(), _negated(text, m.start())) for m in pattern.finditer(text)]


def _first_label(text: str, patterns: Mapping[str, re.Pattern]) -> str | None:
    first: tuple[int, str] | None = None
    for label, pattern in patterns.items():
        for position, negated in _mentions(text, pattern):
            if not negated and (first is None or position < first[0]):
                first = (position, label)
    return first[1] if first else None


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
    families = {
        family
        for family, pattern in _FAMILY_PATTERNS.items()
        if any(not negated for _, negated in _mentions(text, pattern))
    }
    drum_mentions = _mentions(text, _DRUM_PATTERN)
    drums = None
    if any(not negated for _, negated in drum_mentions):
        drums = True
    elif drum_mentions:
        drums = False
    return CaptionAttributes(
        families=families,
        drums=drums,
        tempo_class=_first_label(text, _TEMPO_PATTERNS),
        mode=_first_label(text, _MODE_PATTERNS),
        mood=_first_label(text, _MOOD_PATTERNS),
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
    true_positives = predicted = actual = 0
    correct = {"tempo_class": 0, "mode": 0, "drums": 0, "mood": 0}
    for caption, truth in zip(predictions, attributes):
        read = read_caption(caption)
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
    n = len(predictions)
    return AttributeAccuracy(
        instrument_precision=precision,
        instrument_recall=recall,
        instrument_f1=f1,
        tempo_acc=correct["tempo_class"] / n,
        mode_acc=correct["mode"] / n,
        drums_acc=correct["drums"] / n,
        mood_acc=correct["mood"] / n,
    )
