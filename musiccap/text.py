"""Caption text as people read it: one clean-up for every captioner.

Decoders give text in their tokenizer's shape: WordPiece decoding spaces out hyphens, slashes and
sharps (``four - on - the - floor``, ``6 / 8``, ``f # major``) and is lower case; a caption cut at
``max_new_tokens`` ends mid-sentence; small decoders repeat a sentence word for word. The metrics in
docs/RESULTS.md score the text as decoded (paper-faithful decoding); the studio shows it cleaned.
Both settings are :class:`~musiccap.decoding.DecodingConfig` fields (``clean_text``,
``dedupe_sentences``), applied to every captioner's result in ``Captioner.caption_batch``.
"""

from __future__ import annotations

import re

# Proper nouns and abbreviations of the training captions (every word the corpus capitalises
# mid-sentence apart from key names, which KEY_NAME restores).
PROPER_NOUNS = {
    word.lower(): word
    for word in ("BPM", "Bach", "German", "Latin", "English", "Rhodes", "FM", "Playford", "Christmas")
}
_PROPER_NOUN = re.compile(r"\b(" + "|".join(PROPER_NOUNS) + r")\b", re.IGNORECASE)
# A tonic before "major"/"minor" ("f# major", "eb minor"), but not the article in "a major key".
_KEY_NAME = re.compile(r"\b([a-gA-G])([#b]?)(?= (?:major|minor)\b(?! (?:key|scale|mode|tonality)\b))")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_DETOKENIZE = (
    (re.compile(r"\s+([.,;:!?%)])"), r"\1"),  # "slow ." -> "slow."
    (re.compile(r"\(\s+"), "("),
    (re.compile(r"(?<=\w)\s*([-/])\s*(?=\w)"), r"\1"),  # "four - on - the - floor", "6 / 8"
    (re.compile(r"\b([a-gA-G])\s+#"), r"\1#"),  # "f # major"
    (re.compile(r"(?<=\w)\s*'\s*(s|t|re|ve|ll|d|m)\b"), r"'\1"),  # "it ' s"
    (re.compile(r"\s+"), " "),
)


def detokenize(text: str) -> str:
    """Undo tokenizer spacing: no space before punctuation, none around hyphens, slashes, sharps."""
    for pattern, replacement in _DETOKENIZE:
        text = pattern.sub(replacement, text)
    return text.strip()


def split_sentences(text: str) -> list[str]:
    return [sentence for sentence in _SENTENCE_END.split(text.strip()) if sentence]


def sentence_case(text: str) -> str:
    """Capitalise each sentence, the key names and the corpus's proper nouns; leave the rest as written."""
    text = _KEY_NAME.sub(lambda m: m.group(1).upper() + m.group(2), text)
    text = _PROPER_NOUN.sub(lambda m: PROPER_NOUNS[m.group(1).lower()], text)
    return " ".join(sentence[:1].upper() + sentence[1:] for sentence in split_sentences(text))


def complete_sentences(text: str, *, hit_length_limit: bool) -> str:
    """End on a full stop: a sentence cut by the length limit is dropped (unless it is the only one);
    a caption the model ended itself only lacks the stop."""
    sentences = split_sentences(text)
    if not sentences or sentences[-1][-1] in ".!?":
        return text
    if hit_length_limit and len(sentences) > 1:
        sentences = sentences[:-1]
    else:
        sentences[-1] = sentences[-1].rstrip(",;:- ") + "."
    return " ".join(sentences)


def drop_repeated_sentences(text: str) -> str:
    """Keep the first of sentences that repeat word for word (case and spacing aside)."""
    kept, seen = [], set()
    for sentence in split_sentences(text):
        key = " ".join(sentence.lower().split())
        if key not in seen:
            seen.add(key)
            kept.append(sentence)
    return " ".join(kept)


def clean_caption(text: str, *, hit_length_limit: bool = False, dedupe: bool = True) -> str:
    """The caption as shown: detokenized, complete sentences, repeats dropped, sentence case."""
    text = complete_sentences(detokenize(text), hit_length_limit=hit_length_limit)
    if dedupe:
        text = drop_repeated_sentences(text)
    return sentence_case(text)
