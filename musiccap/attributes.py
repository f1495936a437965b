"""The musical attributes the synthetic corpus controls and the metrics read back from captions.

One vocabulary shared by the corpus generator (train/corpus), the attribute-accuracy metrics
(musiccap/metrics) and the app, so a label written by one is the label checked by the other.
"""

from __future__ import annotations

# General MIDI program families (programs 0..127 in groups of 8), named as a caption would name them.
GM_FAMILIES: tuple[str, ...] = (
    "piano",  # 0-7
    "mallet",  # 8-15 chromatic percussion: celesta, glockenspiel, vibraphone, marimba...
    "organ",  # 16-23
    "guitar",  # 24-31
    "bass",  # 32-39
    "strings",  # 40-47 solo strings
    "strings",  # 48-55 ensemble strings, choir, orchestra hit
    "brass",  # 56-63
    "reed",  # 64-71 saxophones, oboe, clarinet, bassoon
    "pipe",  # 72-79 flutes, recorder, whistle
    "synth",  # 80-87 synth lead
    "synth",  # 88-95 synth pad
    "synth",  # 96-103 synth effects
    "ethnic",  # 104-111 sitar, banjo, koto, bagpipe...
    "percussive",  # 112-119
    "effects",  # 120-127
)

# Programs inside the 48-55 block that are voices rather than strings.
VOICE_PROGRAMS = frozenset({52, 53, 54})  # choir aahs, voice oohs, synth voice

FAMILIES: tuple[str, ...] = (
    "piano",
    "mallet",
    "organ",
    "guitar",
    "bass",
    "strings",
    "voice",
    "brass",
    "reed",
    "pipe",
    "synth",
    "ethnic",
    "percussive",
    "effects",
    "drums",
)

TEMPO_CLASSES: tuple[str, ...] = ("slow", "medium", "fast")
MODES: tuple[str, ...] = ("major", "minor")
DYNAMICS: tuple[str, ...] = ("soft", "medium", "loud")
MOODS: tuple[str, ...] = ("calm", "happy", "energetic", "melancholic", "dramatic")


def program_family(program: int) -> str:
    """Family of a General MIDI program number (0-based)."""
    if not 0 <= program <= 127:
        raise ValueError(f"General MIDI programs are 0..127, got {program}")
    if program in VOICE_PROGRAMS:
        return "voice"
    return GM_FAMILIES[program // 8]


def tempo_class(bpm: float) -> str:
    """Slow below 90 BPM, fast from 130 BPM: the bands MusicCaps captions use for slow/medium/fast."""
    if bpm < 90:
        return "slow"
    if bpm < 130:
        return "medium"
    return "fast"


def mood(mode: str, tempo: str, dynamics: str) -> str:
    """The documented rule that derives a clip's mood from how it was made.

    minor + slow or soft  -> melancholic
    minor otherwise       -> dramatic
    major + fast or loud  -> energetic (happy when fast but soft)
    major + slow and soft -> calm
    major otherwise       -> happy
    """
    if mode not in MODES or tempo not in TEMPO_CLASSES or dynamics not in DYNAMICS:
        raise ValueError(f"unknown attribute combination: {mode}, {tempo}, {dynamics}")
    if mode == "minor":
        return "melancholic" if tempo == "slow" or dynamics == "soft" else "dramatic"
    if tempo == "fast":
        return "happy" if dynamics == "soft" else "energetic"
    if dynamics == "loud":
        return "energetic"
    if tempo == "slow" and dynamics == "soft":
        return "calm"
    return "happy"
