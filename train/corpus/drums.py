"""Drum grooves written onto a piece's bar grid (General MIDI percussion, channel 10).

A groove is a bar of steps per instrument; `steps_per_beat` sets the grid (4 = sixteenths,
3 = triplet eighths for swing and shuffle). Grooves are only offered for metres they fit.
Corpus v2 adds more groove families (`MORE_GROOVES`) and fills: a tom run ending a bar, a crash after it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FILL_NOTES = (50, 48, 47, 45, 43, 41)  # the fill's tom run, high tom down to low floor tom
KICK, SIDE_STICK, SNARE, CLAP, CLOSED_HAT, PEDAL_HAT, OPEN_HAT, CRASH, RIDE, TAMBOURINE, SHAKER = (
    36,
    37,
    38,
    39,
    42,
    44,
    46,
    49,
    51,
    54,
    70,
)


@dataclass(frozen=True)
class Groove:
    name: str  # as a caption says it: "rock beat", "bossa nova groove", ...
    beats_per_bar: int
    steps_per_beat: int
    hits: dict[int, tuple[int, ...]]  # drum note -> steps within the bar
    accents: tuple[int, ...] = (0,)  # louder steps


GROOVES: tuple[Groove, ...] = (
    Groove(
        "rock",
        4,
        4,
        {KICK: (0, 8, 10), SNARE: (4, 12), CLOSED_HAT: (0, 2, 4, 6, 8, 10, 12, 14)},
        (0, 4, 8, 12),
    ),
    Groove(
        "pop",
        4,
        4,
        {KICK: (0, 6, 8), SNARE: (4, 12), CLOSED_HAT: tuple(range(16)), TAMBOURINE: (4, 12)},
        (0, 4, 8, 12),
    ),
    Groove(
        "four-on-the-floor",
        4,
        4,
        {KICK: (0, 4, 8, 12), CLAP: (4, 12), OPEN_HAT: (2, 6, 10, 14)},
        (0, 4, 8, 12),
    ),
    Groove("swing", 4, 3, {RIDE: (0, 3, 5, 6, 9, 11), PEDAL_HAT: (3, 9), KICK: (0, 6)}, (3, 9)),
    Groove("shuffle", 4, 3, {CLOSED_HAT: (0, 2, 3, 5, 6, 8, 9, 11), KICK: (0, 6), SNARE: (3, 9)}, (3, 9)),
    Groove(
        "bossa nova",
        4,
        4,
        {
            KICK: (0, 3, 4, 7, 8, 11, 12, 15),
            SIDE_STICK: (0, 3, 6, 10, 13),
            CLOSED_HAT: (0, 2, 4, 6, 8, 10, 12, 14),
        },
        (0, 8),
    ),
    Groove(
        "ballad", 4, 4, {KICK: (0, 10), SIDE_STICK: (8,), CLOSED_HAT: (0, 2, 4, 6, 8, 10, 12, 14)}, (0, 8)
    ),
    Groove("reggae one-drop", 4, 4, {KICK: (8,), SIDE_STICK: (8,), CLOSED_HAT: (2, 6, 10, 14)}, (8,)),
    Groove("funk", 4, 4, {KICK: (0, 3, 10), SNARE: (4, 7, 12, 15), CLOSED_HAT: tuple(range(16))}, (0, 4, 12)),
    Groove("waltz", 3, 4, {KICK: (0,), SNARE: (4, 8), CLOSED_HAT: (0, 4, 8)}, (0,)),
    Groove("country waltz", 3, 4, {KICK: (0,), SIDE_STICK: (4, 8), SHAKER: tuple(range(0, 12, 2))}, (0,)),
    Groove("6/8", 6, 2, {KICK: (0, 10), SNARE: (6,), CLOSED_HAT: tuple(range(0, 12, 2))}, (0, 6)),
    Groove("march", 2, 4, {KICK: (0, 4), SNARE: (2, 4, 6, 7)}, (0,)),
    Groove("polka", 2, 4, {KICK: (0, 4), SNARE: (2, 6), CLOSED_HAT: (2, 6)}, (0, 4)),
)


EIGHTHS = (0, 2, 4, 6, 8, 10, 12, 14)
# Corpus v2's further groove families (v1 draws from GROOVES alone, so its clips are unchanged).
MORE_GROOVES: tuple[Groove, ...] = (
    Groove("hip-hop", 4, 4, {KICK: (0, 7, 10), SNARE: (4, 12), CLOSED_HAT: EIGHTHS}, (4, 12)),
    Groove(
        "disco",
        4,
        4,
        {KICK: (0, 4, 8, 12), SNARE: (4, 12), CLOSED_HAT: (0, 4, 8, 12), OPEN_HAT: (2, 6, 10, 14)},
        (0, 4, 8, 12),
    ),
    Groove("half-time", 4, 4, {KICK: (0, 3), SNARE: (8,), CLOSED_HAT: EIGHTHS}, (0, 8)),
    Groove("motown", 4, 4, {KICK: (0, 6, 8), SNARE: (0, 4, 8, 12), CLOSED_HAT: EIGHTHS}, (4, 12)),
    Groove("train beat", 4, 4, {KICK: (0, 8), SNARE: tuple(range(16))}, (4, 12)),
    Groove(
        "samba",
        4,
        4,
        {KICK: (0, 3, 4, 8, 11, 12), SIDE_STICK: (2, 5, 7, 10, 13), SHAKER: tuple(range(16))},
        (0, 8),
    ),
    Groove("jazz waltz", 3, 3, {RIDE: (0, 3, 5, 6), PEDAL_HAT: (3, 6), KICK: (0,)}, (0,)),
    Groove("two-step", 2, 4, {KICK: (0, 4), SNARE: (2, 6), CLOSED_HAT: (0, 1, 2, 3, 4, 5, 6, 7)}, (2, 6)),
)


def grooves_for(beats_per_bar: int, beat_unit: int, more: bool = False) -> list[Groove]:
    """Grooves whose bar fits the metre (6/8 is six eighths: two dotted-quarter beats); `more` adds
    corpus v2's families."""
    pool = GROOVES + MORE_GROOVES if more else GROOVES
    if (beats_per_bar, beat_unit) == (6, 8):
        return [g for g in pool if g.name == "6/8"]
    if beat_unit != 4:
        return []
    return [g for g in pool if g.beats_per_bar == beats_per_bar and g.name != "6/8"]


def write_groove(
    groove: Groove,
    downbeats: np.ndarray,
    bar_s: float,
    start: float,
    end: float,
    rng: np.random.Generator,
    fill: bool = False,
) -> np.ndarray:
    """Drum notes (pitch, start, end, velocity) of `groove` on every bar overlapping [start, end).

    `fill`: the last bar whose next downbeat is inside the window (else the last bar that ends, or starts,
    in it) closes with a tom run over its last beat (a dotted quarter in 6/8); a crash marks that downbeat.
    """
    steps = groove.beats_per_bar * groove.steps_per_beat
    step_s = bar_s / steps
    rows = []
    fill_from = fill_until = np.inf  # groove hits in [fill_from, fill_until) give way to the fill
    if fill:
        bars = [b for b in downbeats if start <= b < end]
        landing = [b for b in bars if b + bar_s + 0.25 <= end]  # the crash after the fill is heard
        whole = [b for b in bars if b + bar_s <= end + 1e-6]
        fill_bar = (landing or whole or bars)[-1]
        fill_s = bar_s / (2 if groove.beats_per_bar in (2, 6) else groove.beats_per_bar)
        fill_from, fill_until = fill_bar + bar_s - fill_s, fill_bar + bar_s
        count = 6 if groove.beats_per_bar == 6 else 4
        for k in range(count):
            t = fill_from + k * fill_s / count
            if t < end:
                rows.append(
                    (FILL_NOTES[k * len(FILL_NOTES) // count], t, t + 0.1, 96 + int(rng.integers(-6, 7)))
                )
        if fill_bar + bar_s < end:
            rows.append((CRASH, fill_until, fill_until + 0.5, 100))
    crash_done = False
    for bar_start in downbeats:
        if bar_start >= end or bar_start + bar_s <= start:
            continue
        for note, positions in groove.hits.items():
            for step in positions:
                t = bar_start + step * step_s
                if not start <= t < end:
                    continue
                if fill_from <= t < fill_until:
                    continue
                velocity = 100 if step in groove.accents else 78
                if note in (CLOSED_HAT, SHAKER, RIDE):
                    velocity -= 18
                velocity += int(rng.integers(-6, 7))  # a drummer is never perfectly even
                rows.append((note, t, t + 0.1, velocity))
        if not crash_done and start <= bar_start < end and rng.random() < 0.3:
            rows.append((CRASH, bar_start, bar_start + 0.5, 92))  # a fill lands on a crash now and then
            crash_done = True
    return np.array(sorted(rows, key=lambda r: r[1]), dtype=np.float64).reshape(-1, 4)
