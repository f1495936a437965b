"""The General MIDI programs the arranger may choose, what a caption calls them, and where they sound well.

Captions name an instrument by one of `CAPTION_NAMES[program]` (the first is the canonical name; the
others are synonyms a listener would use). Two programs with the same canonical name never share a
clip, so "the instruments a caption names" and "the programs in the MIDI" map one to one.
"""

from __future__ import annotations

import pretty_midi

# program -> caption names (canonical first)
CAPTION_NAMES: dict[int, tuple[str, ...]] = {
    0: ("piano", "acoustic piano", "grand piano"),
    1: ("bright piano", "bright acoustic piano"),
    2: ("electric grand piano",),
    3: ("honky-tonk piano", "saloon piano"),
    4: ("electric piano", "Rhodes-style electric piano"),
    5: ("electric piano", "FM electric piano"),
    6: ("harpsichord",),
    7: ("clavinet",),
    8: ("celesta",),
    9: ("glockenspiel",),
    10: ("music box",),
    11: ("vibraphone", "vibes"),
    12: ("marimba",),
    13: ("xylophone",),
    14: ("tubular bells", "chimes"),
    16: ("organ", "electric organ", "drawbar organ"),
    17: ("percussive organ", "organ"),
    18: ("rock organ", "organ"),
    19: ("church organ", "pipe organ"),
    20: ("reed organ", "harmonium"),
    21: ("accordion",),
    22: ("harmonica", "mouth harp"),
    23: ("bandoneon", "tango accordion"),
    24: ("nylon-string guitar", "classical guitar", "acoustic guitar"),
    25: ("steel-string guitar", "acoustic guitar"),
    26: ("jazz guitar", "hollow-body electric guitar"),
    27: ("clean electric guitar", "electric guitar"),
    28: ("muted electric guitar", "palm-muted guitar"),
    29: ("overdriven guitar", "crunchy electric guitar"),
    30: ("distorted guitar", "distorted electric guitar"),
    32: ("upright bass", "acoustic bass"),
    33: ("electric bass", "bass guitar"),
    34: ("picked bass", "bass guitar"),
    35: ("fretless bass",),
    36: ("slap bass",),
    37: ("slap bass",),
    38: ("synth bass", "synthesizer bass"),
    39: ("synth bass", "synthesizer bass"),
    40: ("violin",),
    41: ("viola",),
    42: ("cello", "violoncello"),
    43: ("double bass", "contrabass"),
    44: ("tremolo strings",),
    45: ("pizzicato strings", "plucked strings"),
    46: ("harp", "orchestral harp"),
    47: ("timpani",),
    48: ("string ensemble", "strings", "string section"),
    49: ("string section", "strings", "slow strings"),
    50: ("synth strings",),
    51: ("synth strings",),
    52: ("choir", "choir singing aah"),
    53: ("voice", "vocal oohs"),
    54: ("synth voice",),
    55: ("orchestra hit",),
    56: ("trumpet",),
    57: ("trombone",),
    58: ("tuba",),
    59: ("muted trumpet",),
    60: ("french horn", "horn"),
    61: ("brass section", "brass ensemble", "horns"),
    62: ("synth brass",),
    63: ("synth brass",),
    64: ("soprano saxophone", "soprano sax"),
    65: ("alto saxophone", "alto sax", "saxophone"),
    66: ("tenor saxophone", "tenor sax", "saxophone"),
    67: ("baritone saxophone", "baritone sax"),
    68: ("oboe",),
    69: ("english horn", "cor anglais"),
    70: ("bassoon",),
    71: ("clarinet",),
    72: ("piccolo",),
    73: ("flute",),
    74: ("recorder",),
    75: ("pan flute", "panpipes"),
    76: ("blown bottle",),
    77: ("shakuhachi",),
    78: ("whistle",),
    79: ("ocarina",),
    80: ("square-wave synth lead", "synth lead"),
    81: ("sawtooth synth lead", "synth lead"),
    82: ("calliope synth",),
    83: ("chiff synth lead",),
    84: ("charang synth lead",),
    85: ("synth voice lead",),
    86: ("fifths synth lead",),
    87: ("bass-and-lead synth",),
    88: ("new age synth pad", "synth pad"),
    89: ("warm synth pad", "warm pad"),
    90: ("polysynth pad", "polysynth"),
    91: ("choir-like synth pad",),
    92: ("bowed synth pad",),
    93: ("metallic synth pad",),
    94: ("halo synth pad",),
    95: ("sweeping synth pad",),
    96: ("rain synth effect",),
    97: ("soundtrack synth effect",),
    98: ("crystal synth effect",),
    99: ("atmospheric synth",),
    100: ("brightness synth",),
    101: ("goblin synth effect",),
    102: ("echo synth effect",),
    103: ("sci-fi synth effect",),
    104: ("sitar",),
    105: ("banjo",),
    106: ("shamisen",),
    107: ("koto",),
    108: ("kalimba", "thumb piano"),
    109: ("bagpipe", "bagpipes"),
    110: ("fiddle",),
    111: ("shanai",),
    112: ("tinkle bell",),
    113: ("agogo",),
    114: ("steel drums", "steelpan"),
    115: ("woodblock",),
    116: ("taiko drum",),
    117: ("melodic tom",),
    118: ("synth drum",),
    119: ("reverse cymbal",),
    120: ("guitar fret noise",),
    121: ("breath noise",),
    122: ("seashore sound effect",),
    123: ("bird tweet effect",),
    124: ("telephone ring effect",),
    125: ("helicopter sound effect",),
    126: ("applause effect",),
    127: ("gunshot effect",),
    15: ("dulcimer", "hammered dulcimer"),
    31: ("guitar harmonics",),
}

# Role pools: programs that carry that role convincingly in both soundfonts.
MELODY_PROGRAMS = (
    0,
    4,
    6,
    11,
    12,
    13,
    21,
    22,
    24,
    25,
    26,
    27,
    29,
    40,
    42,
    46,
    56,
    57,
    60,
    65,
    66,
    68,
    71,
    73,
    74,
    75,
    80,
    81,
    104,
    105,
    109,
    110,
)
VOICE_MELODY_PROGRAMS = (52, 53)  # lines with lyrics: a choir or a solo "ooh" voice carries the text
HARMONY_PROGRAMS = (0, 1, 4, 5, 6, 16, 19, 21, 24, 25, 27, 46, 48, 49, 61, 88, 89)
BASS_PROGRAMS = (32, 33, 34, 35, 38, 43, 58, 70)
CHORALE_ENSEMBLES = (  # four-voice textures for chorales: (soprano, alto, tenor, bass)
    (40, 40, 41, 42),  # string quartet
    (19, 19, 19, 19),  # church organ
    (56, 60, 57, 58),  # brass quartet
    (73, 68, 71, 70),  # wind quartet
    (48, 48, 48, 43),  # string orchestra
    (0, 0, 0, 0),  # piano
    (52, 52, 52, 52),  # choir
)

# Comfortable median pitch (MIDI) per role/program family: parts are moved by octaves into this range.
_RANGES = {"bass": (36, 52), "low": (40, 60), "mid": (55, 74), "high": (62, 84)}
_HIGH = {9, 10, 13, 22, 40, 68, 71, 72, 73, 74, 75, 78, 79, 80, 81, 109, 110}
_LOW = {42, 43, 57, 58, 70, 32, 33, 34, 35, 38}


def caption_name(program: int) -> str:
    return CAPTION_NAMES[program][0]


def gm_name(program: int) -> str:
    """The General MIDI program name stored in the attributes ("Acoustic Grand Piano", ...)."""
    return pretty_midi.program_to_instrument_name(program)


def comfortable_range(program: int, role: str) -> tuple[int, int]:
    if role == "bass" or program in (32, 33, 34, 35, 38, 43, 58):
        return _RANGES["bass"]
    if program in _LOW:
        return _RANGES["low"]
    if program in _HIGH:
        return _RANGES["high"]
    return _RANGES["mid"]
