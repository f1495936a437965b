"""The caption clean-up (musiccap/text.py) and where it applies (Captioner.caption_batch)."""

import pytest

from musiccap.clip import Clip
from musiccap.decoding import DecodingConfig
from musiccap.models.baselines import RandomCaptioner
from musiccap.text import clean_caption, complete_sentences, detokenize, sentence_case


def test_detokenize_joins_what_wordpiece_spaces_out():
    assert detokenize("the rhythm section lays down a four - on - the - floor beat .") == (
        "the rhythm section lays down a four-on-the-floor beat."
    )
    assert detokenize("a 6 / 8 groove , set in f # major ; it ' s slow") == (
        "a 6/8 groove, set in f# major; it's slow"
    )


def test_sentence_case_restores_keys_and_proper_nouns_but_not_the_article():
    text = sentence_case("the piece is in a major key, f# major. around 94 bpm. a bach chorale in german.")
    assert text == "The piece is in a major key, F# major. Around 94 BPM. A Bach chorale in German."
    assert sentence_case("the music is set in eb minor.") == "The music is set in Eb minor."


def test_a_sentence_cut_by_the_length_limit_is_dropped():
    assert complete_sentences("it is slow. the music is set", hit_length_limit=True) == "it is slow."
    # Ended by the model (EOS) or the only sentence: kept, with the full stop added.
    assert complete_sentences("it is slow. the mood is calm", hit_length_limit=False) == (
        "it is slow. the mood is calm."
    )
    assert complete_sentences("the music is set", hit_length_limit=True) == "the music is set."


def test_repeated_sentences_are_kept_once_only_when_asked():
    text = "it is played at a medium tempo. it is played at a medium tempo. the mood is calm."
    assert clean_caption(text) == "It is played at a medium tempo. The mood is calm."
    assert clean_caption(text, dedupe=False).count("It is played at a medium tempo.") == 2


def test_clean_text_is_idempotent_on_clean_captions():
    text = "A steel-string guitar carries the lead melody. The percussion plays a 6/8 groove in Ab major."
    assert clean_caption(text) == text


def test_caption_batch_cleans_only_when_the_decoding_says_so():
    captioner = RandomCaptioner(["the music is set in f # major . a four - on - the - floor beat ."])
    clip = Clip(None, clip_id="c1")
    raw = captioner.caption(clip)
    assert raw.text == "the music is set in f # major . a four - on - the - floor beat ."
    assert raw.decoded_text == ""
    cleaned = captioner.caption(clip, DecodingConfig(clean_text=True, dedupe_sentences=True))
    assert cleaned.text == "The music is set in F# major. A four-on-the-floor beat."
    assert cleaned.decoded_text == raw.text
    assert cleaned.to_json()["decoded_text"] == raw.text


def test_dedupe_without_clean_text_is_refused():
    with pytest.raises(ValueError, match="clean_text"):
        DecodingConfig(dedupe_sentences=True)
