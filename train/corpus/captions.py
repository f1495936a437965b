"""Captions in MusicCaps' register, written only from what the arranger decided.

A caption is a handful of sentences, one per fact (style, instruments, drums, tempo, key, dynamics,
room, recording quality, mood, ...), each drawn from several phrasings with synonyms, in a varied
order. Every instrument in the clip is named, and nothing the generator did not control is claimed
(no "this song could be played at a party"). `write_caption` also returns which facts it stated, so
an evaluator knows what a reference caption commits to. Corpus v2 gives each clip several independent
captions (`write_captions`) and states its further facts (reverb shapes, codec artefacts, tone, fills);
a v1 clip has none of those attributes and draws exactly as before.
"""

from __future__ import annotations

import numpy as np

from train.corpus.instruments import CAPTION_NAMES

_STYLE_PHRASES = {
    "pop": ("pop song", "pop instrumental", "instrumental pop tune", "piece of pop music"),
    "pop ballad": ("pop ballad", "ballad in a pop style", "instrumental pop ballad"),
    "reel": ("reel", "folk reel", "traditional reel"),
    "jig": ("jig", "folk jig", "traditional jig"),
    "slip jig": ("slip jig", "traditional slip jig"),
    "hornpipe": ("hornpipe", "folk hornpipe", "traditional hornpipe"),
    "folk waltz": ("folk waltz", "waltz", "traditional waltz"),
    "morris dance tune": ("morris dance tune", "English morris tune"),
    "English country dance": ("English country dance", "country dance tune", "Playford-style country dance"),
    "English folk tune": ("English folk tune", "traditional folk melody", "folk tune"),
    "Christmas carol": ("Christmas carol", "carol", "traditional carol"),
    "baroque chorale": (
        "baroque chorale",
        "Bach chorale",
        "four-part chorale",
        "chorale harmonisation by Bach",
    ),
    "instrumental band arrangement": (
        "instrumental band piece",
        "band arrangement",
        "instrumental for a small band",
    ),
}
_MOOD_WORDS = {
    "calm": ("calm", "relaxing", "peaceful", "serene", "soothing"),
    "happy": ("happy", "cheerful", "joyful", "bright", "uplifting"),
    "energetic": ("energetic", "lively", "upbeat", "exciting", "spirited"),
    "melancholic": ("melancholic", "sad", "wistful", "sorrowful", "gloomy"),
    "dramatic": ("dramatic", "intense", "tense", "serious", "dark"),
}
_TEMPO_WORDS = {
    "slow": ("slow", "slow", "unhurried", "relaxed"),
    "medium": ("medium", "medium", "moderate"),
    "fast": ("fast", "fast", "quick", "brisk"),
}
_DRUM_WORDS = ("drums", "drum kit", "percussion", "drummer")
_GROOVE_NAMES = {
    "rock": ("rock beat", "straight rock beat", "simple rock groove"),
    "pop": ("pop beat", "steady pop groove", "sixteenth-note pop beat"),
    "four-on-the-floor": (
        "four-on-the-floor beat",
        "dance beat with the kick on every beat",
        "four-on-the-floor groove",
    ),
    "swing": ("swing rhythm", "swinging ride-cymbal pattern", "jazzy swing beat"),
    "shuffle": ("shuffle beat", "shuffle groove", "bluesy shuffle"),
    "bossa nova": ("bossa nova groove", "bossa nova rhythm", "Latin bossa nova beat"),
    "ballad": ("soft ballad beat", "ballad groove with a side stick", "laid-back ballad beat"),
    "reggae one-drop": ("reggae one-drop beat", "one-drop reggae rhythm"),
    "funk": ("funk beat", "syncopated funk groove", "funky sixteenth-note beat"),
    "waltz": ("waltz beat", "oom-pah-pah waltz rhythm", "beat in three"),
    "country waltz": ("country waltz beat", "gentle country waltz rhythm"),
    "6/8": ("6/8 groove", "rolling compound-time beat", "beat in six"),
    "march": ("march beat", "military march rhythm", "marching snare pattern"),
    "polka": ("polka beat", "bouncy polka rhythm"),
    "hip-hop": ("hip-hop beat", "laid-back hip-hop groove", "boom-bap beat"),
    "disco": (
        "disco beat",
        "disco groove with open hi-hats on the off-beats",
        "four-to-the-floor disco rhythm",
    ),
    "half-time": ("half-time groove", "half-time beat with the snare on three", "slow half-time feel"),
    "motown": ("Motown beat", "soul groove with the snare on every beat", "Motown-style backbeat"),
    "train beat": ("train beat", "chugging train beat on the snare", "country train beat"),
    "samba": ("samba groove", "samba rhythm", "Brazilian samba beat"),
    "jazz waltz": ("jazz waltz beat", "swinging jazz waltz on the ride cymbal", "jazz waltz groove"),
    "two-step": ("two-step beat", "country two-step rhythm", "driving two-step groove"),
}
_DEGRADATION_PHRASES = {
    "noise": (
        "there is audible hiss",
        "a layer of background noise sits under the music",
        "the recording is noisy",
    ),
    "band-limited": (
        "it sounds muffled and thin",
        "the sound is band-limited, like it comes through a phone",
        "the highs and lows are cut off",
    ),
    "distortion": (
        "the sound is distorted",
        "there is audible distortion",
        "it sounds overdriven and crackly",
    ),
    "low-bitrate": (
        "it sounds like a low-bitrate MP3",
        "there are audible compression artefacts",
        "the audio is heavily compressed, like a low-quality stream",
    ),
}
_VOICE_PROGRAMS = {52, 53, 54}


def _is_plural(name: str) -> bool:
    """ "strings", "bagpipes", "steel drums" are plural; "bass" and "brass section" are not."""
    return name.endswith("s") and not name.endswith("ss")


def _a(phrase: str) -> str:
    if _is_plural(phrase):
        return phrase
    return ("an " if phrase[0].lower() in "aeiou" else "a ") + phrase


def _pick(rng: np.random.Generator, options) -> str:
    return options[int(rng.integers(len(options)))]


def _join(items: list[str]) -> str:
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def _name(program: int, rng: np.random.Generator) -> str:
    names = CAPTION_NAMES[program]
    return names[0] if rng.random() < 0.7 else _pick(rng, names)  # mostly the canonical name


def _cap(sentence: str) -> str:
    return sentence[0].upper() + sentence[1:]


def _style_sentence(attrs: dict, rng) -> str:
    style = _a(_pick(rng, _STYLE_PHRASES.get(attrs["style"], (attrs["style"],))))
    return _pick(
        rng,
        (
            f"This is {style}.",
            f"This music is {style}.",
            f"Here we have {style}.",
            f"The recording is {style}.",
            f"What we hear is {style}.",
        ),
    )


def _instrument_sentences(attrs: dict, lyrics: str | None, rng) -> list[str]:
    programs, roles = attrs["programs"], attrs["roles"]
    melody = attrs["melody_program"]
    lead = (
        _a(_name(melody, rng))
        if melody not in _VOICE_PROGRAMS
        else ("a choir" if melody == 52 else _pick(rng, ("a voice", "a solo voice", "a singer")))
    )
    if melody in _VOICE_PROGRAMS:
        sung = "sings the words" if lyrics else "sings the melody without words"
        text_note = (
            " in German" if lyrics and attrs["style"] == "baroque chorale" and rng.random() < 0.5 else ""
        )
        sentences = [
            _cap(
                _pick(
                    rng,
                    (
                        f"{lead} {sung}{text_note}",
                        f"the melody is sung by {lead}{' with lyrics' if lyrics else ''}{text_note}",
                        f"{lead} carries the tune and {sung}{text_note}",
                    ),
                )
            )
            + "."
        ]
    else:
        plural = _is_plural(lead)
        plays, carries = ("play", "carry") if plural else ("plays", "carries")
        sentences = [
            _cap(
                _pick(
                    rng,
                    (
                        f"the melody is played by {lead}",
                        f"{lead} {plays} the main melody",
                        f"{lead} {carries} the lead melody",
                        f"the lead is taken by {lead}",
                        f"{lead} {plays} the tune",
                    ),
                )
            )
            + "."
        ]
    others = [(p, r) for p, r in zip(programs, roles) if p != melody]
    if not others:
        sentences.append(
            _pick(
                rng,
                (
                    "There are no other instruments.",
                    "No other instruments accompany it.",
                    "It plays alone, with no accompaniment.",
                ),
            )
        )
        return sentences
    by_role: dict[str, list[str]] = {}
    for program, role in others:
        by_role.setdefault(role, []).append(_a(_name(program, rng)))
    clauses = []
    for role, names in by_role.items():
        who = _join(names)
        verb_s = "" if len(names) > 1 or _is_plural(names[0]) else "s"
        clauses.append(
            {
                "bass": _pick(
                    rng,
                    (
                        f"{who} play{verb_s} the bass line",
                        f"{who} hold{verb_s} down the low end",
                        f"the bass line comes from {who}",
                    ),
                ),
                "harmony": _pick(
                    rng,
                    (
                        f"{who} play{verb_s} the chords",
                        f"{who} provide{verb_s} the harmony",
                        f"{who} accompan{'y' if verb_s == '' else 'ies'} with chords",
                        f"the harmony is filled in by {who}",
                    ),
                ),
                "counter": _pick(
                    rng,
                    (
                        f"{who} play{verb_s} a countermelody",
                        f"{who} answer{verb_s} with a second melodic line",
                    ),
                ),
                "melody": f"{who} double{verb_s} the tune",
            }[role]
        )
    if len(clauses) > 1 and rng.random() < 0.5:
        sentences.append(_cap(_join(clauses)) + ".")
    else:
        sentences.extend(_cap(c) + "." for c in clauses)
    return sentences


def _drum_sentence(attrs: dict, rng, always: bool = False) -> str | None:
    if not attrs["drums"]:
        if not always and rng.random() < 0.5:
            return None
        return _pick(
            rng,
            (
                "There are no drums.",
                "There is no percussion.",
                "The piece has no drums.",
                "No percussion is used.",
            ),
        )
    kit = _pick(rng, _DRUM_WORDS)
    if attrs["drum_pattern"] is None:
        return _pick(
            rng,
            (
                f"The {kit} keep{'' if kit.endswith('s') else 's'} a steady beat.",
                "A drum part drives the rhythm.",
                "The rhythm is provided by a drum kit.",
            ),
        )
    groove = _pick(rng, _GROOVE_NAMES[attrs["drum_pattern"]])
    return _pick(
        rng,
        (
            f"The drums play {_a(groove)}.",
            f"{_cap(_a(groove))} on the {kit} keeps time.",
            f"The rhythm section lays down {_a(groove)} on the drums.",
            f"The percussion plays {_a(groove)}.",
        ),
    )


def _tempo_sentence(attrs: dict, rng) -> str:
    word = _pick(rng, _TEMPO_WORDS[attrs["tempo_class"]])
    bpm = attrs["tempo_bpm"]
    return _pick(
        rng,
        (
            f"The tempo is {word}.",
            f"It is played at {_a(word)} tempo.",
            f"The song moves at {_a(word)} tempo of about {bpm} BPM.",
            f"The pace is {word}, around {bpm} beats per minute.",
            f"This piece has {_a(word)} tempo.",
        ),
    )


def _key_sentence(attrs: dict, rng) -> str:
    key, mode = attrs["key"], attrs["mode"]
    return _pick(
        rng,
        (
            f"It is in {key}.",
            f"The piece is in a {mode} key.",
            f"The music is set in {key}.",
            f"The harmony is in {_a(mode)} key, {key}.",
            f"The key is {key}.",
        ),
    )


def _metre_sentence(attrs: dict, rng) -> str:
    ts = attrs["time_signature"]
    named = {"3/4": "triple meter", "6/8": "compound time", "2/4": "duple meter", "4/4": "common time"}
    return _pick(
        rng,
        (
            f"It is in {ts} time.",
            f"The time signature is {ts}.",
            f"The music is in {named.get(ts, ts + ' time')}.",
        ),
    )


def _dynamics_sentence(attrs: dict, rng) -> str:
    return _pick(
        rng,
        {
            "soft": (
                "It is played softly.",
                "The dynamics are soft and gentle.",
                "Everything is played quietly.",
            ),
            "medium": (
                "The dynamics are moderate.",
                "It is played at a moderate volume.",
                "The playing is neither loud nor soft.",
            ),
            "loud": (
                "It is played loudly.",
                "The dynamics are loud and strong.",
                "The instruments play forcefully.",
            ),
        }[attrs["dynamics"]],
    )


def _reverb_sentence(attrs: dict, rng) -> str:
    return _pick(
        rng,
        {
            "dry": (
                "The sound is dry, with almost no reverb.",
                "There is no reverb on the instruments.",
                "It is a dry, close recording.",
            ),
            "room": (
                "There is a little room reverb.",
                "It sounds like it was recorded in a small room.",
                "A touch of reverb gives it some space.",
            ),
            "hall": (
                "The sound is spacious, with a lot of reverb.",
                "It sounds like it was played in a large hall.",
                "There is a long, roomy reverb.",
            ),
            "plate": (
                "A bright plate reverb gives it a shimmering tail.",
                "There is a dense, bright plate reverb.",
                "The instruments sit in a smooth plate reverb.",
            ),
            "spring": (
                "There is a twangy spring reverb.",
                "A metallic spring reverb rings after the notes.",
                "It has the boingy sound of a spring reverb.",
            ),
        }[attrs["reverb"]],
    )


def _quality_sentence(attrs: dict, rng) -> str | None:
    if attrs["quality"] == "clean":
        if rng.random() < 0.7:
            return None
        return _pick(
            rng,
            ("The recording quality is good.", "The audio is clean and clear.", "The sound quality is high."),
        )
    details = _join([_pick(rng, _DEGRADATION_PHRASES[d]) for d in attrs["degradations"]])
    return _pick(
        rng,
        (
            f"The audio quality is poor: {details}.",
            f"This is a low quality recording; {details}.",
            f"The recording quality is low and {details}.",
        ),
    )


def _mood_sentence(attrs: dict, rng) -> str:
    words = _MOOD_WORDS[attrs["mood"]]
    first, second = rng.choice(len(words), size=2, replace=False)
    return _pick(
        rng,
        (
            f"The mood is {words[first]}.",
            f"It sounds {words[first]} and {words[second]}.",
            f"The atmosphere is {words[first]}.",
            f"Overall the piece feels {words[first]}.",
            f"This music has {_a(words[first])} feel.",
        ),
    )


def _texture_sentence(attrs: dict, rng) -> str:
    density = {
        "sparse": ("sparse", "thin", "uncluttered"),
        "moderate": ("moderately busy", "balanced"),
        "dense": ("dense", "busy", "full"),
    }[attrs["density"]]
    register = attrs["register"]
    return _pick(
        rng,
        (
            f"The texture is {_pick(rng, density)}.",
            f"The arrangement is {_pick(rng, density)}, and the melody sits in a {register} register.",
            f"The melody lies in a {register} register.",
        ),
    )


def _fill_sentence(rng) -> str:
    return _pick(
        rng,
        (
            "A drum fill on the toms leads into the next bar.",
            "The drummer plays a tom fill before a crash cymbal.",
            "There is a short drum fill rolling down the toms.",
        ),
    )


def _tone_sentence(attrs: dict, rng) -> str:
    return _pick(
        rng,
        {
            "bright": ("The mix sounds bright and crisp.", "The sound is bright, with prominent highs."),
            "dark": ("The mix sounds dark and muffled.", "The sound is warm and dark, with soft highs."),
        }[attrs["tone"]],
    )


def write_caption(
    attributes: dict, lyrics: str | None, rng: np.random.Generator, always: frozenset[str] = frozenset()
) -> tuple[str, list[str]]:
    """A caption for a clip and the attribute names it states.

    ``always``: facts stated in every caption ("drums", "tempo", "key"); a fact named there draws no
    coin from ``rng``, so an empty set reproduces the v1 captions draw for draw."""
    facts: list[tuple[str, float, str]] = []  # (fact, position preference, sentence)

    def add(fact: str, position: float, sentence: str | None) -> None:
        if sentence:
            facts.append((fact, position + rng.uniform(0, 2.5), sentence))

    if rng.random() < 0.85:
        facts.append(("style", -10 if rng.random() < 0.8 else 4, _style_sentence(attributes, rng)))
    instruments_at = -5 if rng.random() < 0.85 else 3
    for i, sentence in enumerate(_instrument_sentences(attributes, lyrics, rng)):
        facts.append(("instruments", instruments_at + i * 0.01, sentence))
    add("drums", 0, _drum_sentence(attributes, rng, "drums" in always))
    # v2 facts: a v1 clip has no such attribute and skips these lines without drawing from `rng`.
    if attributes.get("drum_fill") and rng.random() < 0.5:
        add("drum_fill", 0.5, _fill_sentence(rng))
    if "tempo" in always or rng.random() < 0.9:
        add("tempo", 0, _tempo_sentence(attributes, rng))
    if "key" in always or rng.random() < 0.65:
        add("key", 1, _key_sentence(attributes, rng))
    if rng.random() < 0.15:
        add("time_signature", 1, _metre_sentence(attributes, rng))
    if rng.random() < 0.45:
        add("dynamics", 1, _dynamics_sentence(attributes, rng))
    if rng.random() < 0.45:
        add("reverb", 2, _reverb_sentence(attributes, rng))
    add("quality", 2 if rng.random() < 0.7 else -12, _quality_sentence(attributes, rng))
    if rng.random() < 0.15:
        add("texture", 1, _texture_sentence(attributes, rng))
    if attributes.get("tone") in ("bright", "dark") and rng.random() < 0.35:
        add("tone", 2, _tone_sentence(attributes, rng))
    if not any(p in _VOICE_PROGRAMS for p in attributes["programs"]) and rng.random() < 0.3:
        add(
            "voices",
            2,
            _pick(
                rng,
                (
                    "There are no voices in this song.",
                    "This is an instrumental piece.",
                    "There is no singing.",
                ),
            ),
        )
    if rng.random() < 0.85:
        add("mood", 4, _mood_sentence(attributes, rng))
    # Sort on the position preference; instrument sentences keep their relative order.
    facts.sort(key=lambda f: f[1])
    mentioned = sorted({fact for fact, _, _ in facts})
    return " ".join(sentence for _, _, sentence in facts), mentioned


def write_captions(
    attributes: dict,
    lyrics: str | None,
    rng: np.random.Generator,
    count: int,
    always: frozenset[str] = frozenset(),
) -> tuple[list[str], list[list[str]]]:
    """`count` independently drawn, distinct captions of one clip (each its own sentence order, synonyms
    and optional sentences) and the facts each states."""
    captions: list[str] = []
    facts: list[list[str]] = []
    for _ in range(count * 10):
        caption, stated = write_caption(attributes, lyrics, rng, always)
        if caption not in captions:
            captions.append(caption)
            facts.append(stated)
        if len(captions) == count:
            return captions, facts
    raise RuntimeError(f"only {len(captions)} distinct captions in {count * 10} draws")
