"""Turn a parsed piece into one 10-second arrangement and the attributes that describe it.

Every attribute recorded here is a decision this module made (or a fact of the source it kept):
tempo, transposition, which General MIDI program plays which line, the drum groove, dynamics,
reverb, recording quality. Captions are written from these attributes only.

Two recipes (`build.py`'s `--recipe`): v1 draws exactly as the shipped checkpoints' corpus did; v2
(a `Palette` given) balances tempo classes, modes and keys, varies the texture (solo, duo, band), adds
groove families and fills, and draws per part a soundfont, gain, pan and EQ, and per clip a production
chain (`produce.py`). v2's draws come after or instead of v1's, never between them, so v1 is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from musiccap.attributes import mood, program_family, tempo_class
from train.corpus import instruments as gm
from train.corpus.drums import grooves_for, write_groove
from train.corpus.produce import draw_part_mix, draw_production
from train.corpus.sources import PITCH_CLASSES, Piece, key_correlation

CLIP_SECONDS = 10.0
MIN_MELODY_ONSETS = 4
MIN_PART_ONSETS = 2
_LAST_ONSET_MARGIN = 0.05  # a note starting in the final 50 ms would not be heard

# Tempo ranges (quarter notes per minute) the arranger draws from, per style.
_STYLE_TEMPI = {
    "reel": (150, 200),
    "jig": (140, 190),
    "slip jig": (140, 180),
    "hornpipe": (95, 140),
    "folk waltz": (100, 170),
    "morris dance tune": (100, 140),
    "English country dance": (90, 150),
    "English folk tune": (80, 150),
    "Christmas carol": (70, 110),
    "baroque chorale": (55, 100),
}
_DRUM_PROBABILITY = {"pop909": 0.75, "nottingham": 0.5, "music21": 0.1}
_DYNAMICS_VELOCITY = {"soft": 0.6, "medium": 0.85, "loud": 1.1}
_REVERBS = ("dry", "room", "hall")
_DEGRADATIONS = ("noise", "band-limited", "distortion")

# v2: tempo classes, each over its whole band (musiccap.attributes.tempo_class's bounds). Slow draws fail
# the checks more often (sparser windows, longer rests), so they are drawn a little more often: a build of
# 628 clips drawn evenly kept 28 % slow, 35 % medium, 37 % fast; the full build with these weights keeps
# 37 % slow, 31 % medium, 32 % fast.
_TEMPO_BANDS_V2 = {"slow": (50, 89), "medium": (90, 129), "fast": (130, 200)}
_TEMPO_P_V2 = (0.38, 0.31, 0.31)
_TEXTURES_V2 = ("solo", "duo", "band")
_TEXTURE_P_V2 = (0.15, 0.25, 0.6)
# v2: chance of an added drum groove, by texture and (for a band) source; a solo never has drums.
_DRUM_PROBABILITY_V2 = {"pop909": 0.85, "nottingham": 0.7, "music21": 0.4}
_DUO_DRUM_PROBABILITY_V2 = 0.5
_MAIN_RENDERER_SHARE = 0.6  # a pitched part takes the clip's main soundfont this often, another one otherwise
# Scale degrees (semitones above the tonic) moved to change mode: major <-> harmonic minor.
_MAJOR_TO_MINOR = {4: 3, 9: 8}
_MINOR_TO_MAJOR = {3: 4, 8: 9, 10: 11}


@dataclass(frozen=True)
class Palette:
    """v2: the soundfonts one clip may render with (a split's renderers) and the drum kits each has."""

    pitched: tuple[str, ...]  # General MIDI soundfonts
    drums: tuple[str, ...]  # soundfonts a drum part may use: the General MIDI ones and drum-only kits
    kits: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass
class Track:
    program: int  # General MIDI program; 0 for drums (channel 10 ignores it)
    is_drums: bool
    role: str
    notes: np.ndarray  # (pitch, start_s, end_s, velocity) inside [0, CLIP_SECONDS)
    renderer: str | None = None  # v2: the soundfont that plays this part
    kit: str | None = None  # v2 drums: the kit of that soundfont
    mix: dict | None = None  # v2: gain_db, pan, eq (produce.draw_part_mix)


@dataclass
class Arrangement:
    piece_id: str
    source: str
    licence: str
    title: str
    tracks: list[Track]
    window_start_s: float  # where the clip starts in the source, at the source's tempo
    lyrics: str | None
    attributes: dict

    @property
    def bpm(self) -> float:
        return float(self.attributes["tempo_bpm"])


def _onsets_in(notes: np.ndarray, start: float, end: float) -> np.ndarray:
    return notes[(notes[:, 1] >= start) & (notes[:, 1] < end - _LAST_ONSET_MARGIN)]


def _fit_register(notes: np.ndarray, program: int, role: str) -> np.ndarray:
    """Move a line by whole octaves so its median sits where the instrument sounds natural."""
    low, high = gm.comfortable_range(program, role)
    median = float(np.median(notes[:, 0]))
    shift = 0
    while median + shift < low:
        shift += 12
    while median + shift > high:
        shift -= 12
    moved = notes.copy()
    moved[:, 0] = np.clip(moved[:, 0] + shift, 21, 108)
    return moved


def _rearticulate(chords: np.ndarray, beat_s: float, pattern: str) -> np.ndarray:
    """Play held chords on every beat ("beats") or broken upward through each beat ("arpeggio")."""
    rows = []
    for onset in np.unique(chords[:, 1]):
        chord = chords[chords[:, 1] == onset]
        end = float(chord[:, 2].max())
        pitches = np.sort(chord[:, 0])
        velocity = float(chord[:, 3].mean())
        t, k = float(onset), 0
        while t < end - 1e-6:
            if pattern == "beats":
                rows += [(p, t, min(t + beat_s * 0.9, end), velocity) for p in pitches]
                t += beat_s
            else:
                step = beat_s / 2
                rows.append((pitches[k % len(pitches)], t, min(t + step, end), velocity))
                t += step
                k += 1
    return np.array(sorted(rows, key=lambda r: (r[1], r[0])), dtype=np.float64).reshape(-1, 4)


def _assemble_lyrics(lyrics: list[tuple[float, str, str]], start: float, end: float) -> str | None:
    """Words sung inside the window, joining hyphenated syllables; a word cut by the window is dropped."""
    words, current = [], ""
    inside = [(s, syl) for t, s, syl in lyrics if start <= t < end - _LAST_ONSET_MARGIN]
    while inside and inside[0][1] in ("middle", "end"):
        inside.pop(0)
    for text, syllabic in inside:
        current += text
        if syllabic in ("single", "end"):
            words.append(current)
            current = ""
    return " ".join(words) if words else None


def _choose_tempo(piece: Piece, rng: np.random.Generator) -> float:
    if piece.style in _STYLE_TEMPI:
        low, high = _STYLE_TEMPI[piece.style]
        return float(rng.integers(low, high + 1))
    return float(np.clip(round(piece.bpm * rng.uniform(0.85, 1.2)), 55, 180))


def _choose_tempo_v2(rng: np.random.Generator) -> float:
    low, high = _TEMPO_BANDS_V2[str(rng.choice(list(_TEMPO_BANDS_V2), p=_TEMPO_P_V2))]
    return float(rng.integers(low, high + 1))


def _change_mode(notes: np.ndarray, tonic: int, to_mode: str) -> np.ndarray:
    """Move the scale degrees that differ between major and (harmonic) minor: the tune keeps its
    contour and rhythm, its third and sixth (and in minor -> major the seventh) change."""
    mapping = _MAJOR_TO_MINOR if to_mode == "minor" else _MINOR_TO_MAJOR
    moved = notes.copy()
    degrees = (moved[:, 0].astype(int) - tonic) % 12
    for old, new in mapping.items():
        moved[degrees == old, 0] += new - old
    return moved


def _choose_renderers(tracks: list[Track], palette: Palette, rng: np.random.Generator) -> str:
    """A main soundfont for the clip; each pitched part keeps it or, now and then, takes another one.
    Drums draw from all the palette's kits alike, so the drum-only soundfonts play often."""
    main = str(rng.choice(palette.pitched))
    for track in tracks:
        if track.is_drums:
            track.renderer = str(rng.choice(palette.drums))
            track.kit = str(rng.choice(palette.kits[track.renderer]))
        else:
            keep = rng.random() < _MAIN_RENDERER_SHARE
            track.renderer = main if keep else str(rng.choice(palette.pitched))
        track.mix = draw_part_mix(track.role, rng)
    return main


def _choose_distinct(pool: tuple[int, ...], taken: set[str], rng: np.random.Generator) -> int:
    """A program whose caption name no other part of this clip already uses."""
    choices = [p for p in pool if gm.caption_name(p) not in taken]
    program = int(rng.choice(choices))
    taken.add(gm.caption_name(program))
    return program


def _orchestrate(piece: Piece, parts, melody_has_lyrics: bool, rng: np.random.Generator):
    """Programs for each (role, notes) part; returns (programs, melody_is_voice)."""
    if piece.source == "openmsx":
        return [int(p.program) if p.program is not None else 0 for p in parts], False
    taken: set[str] = set()
    if piece.source == "music21":
        if melody_has_lyrics and rng.random() < 0.5:
            voice = int(rng.choice(gm.VOICE_MELODY_PROGRAMS))
            ensemble = [voice] + [int(rng.choice((40, 19, 48, 0)))] * (len(parts) - 1)
            ensemble = [
                p if i == 0 or gm.caption_name(p) != gm.caption_name(voice) else 48
                for i, p in enumerate(ensemble)
            ]
            return ensemble, True
        ensemble = gm.CHORALE_ENSEMBLES[int(rng.integers(len(gm.CHORALE_ENSEMBLES)))]
        return list(ensemble[: len(parts)]), ensemble[0] in gm.VOICE_MELODY_PROGRAMS and melody_has_lyrics
    programs = []
    for part in parts:
        pool = {
            "melody": gm.MELODY_PROGRAMS,
            "counter": gm.MELODY_PROGRAMS,
            "harmony": gm.HARMONY_PROGRAMS,
            "bass": gm.BASS_PROGRAMS,
        }[part.role]
        programs.append(_choose_distinct(pool, taken, rng))
    return programs, False


def arrange(piece: Piece, rng: np.random.Generator, palette: Palette | None = None) -> Arrangement | None:
    """One random arrangement of a 10 s window of `piece`, or None when this draw finds no usable window.

    Without a palette, the v1 recipe; with one, v2 (its soundfonts are the palette's).
    """
    v2 = palette is not None
    bpm = _choose_tempo_v2(rng) if v2 else _choose_tempo(piece, rng)
    stretch = piece.bpm / bpm  # multiply source seconds by this to get clip seconds
    beat_s = (
        60.0 / bpm * (4.0 / piece.beat_unit) * (3 if (piece.beats_per_bar, piece.beat_unit) == (6, 8) else 1)
    )
    bar_s = 60.0 / bpm * piece.beats_per_bar * 4.0 / piece.beat_unit
    downbeats = piece.downbeats * stretch
    end_s = piece.end_s * stretch
    candidates = downbeats[downbeats + CLIP_SECONDS <= end_s + 0.5]
    if not len(candidates):
        return None
    start = float(rng.choice(candidates))
    end = start + CLIP_SECONDS

    # Which parts play in this window; a part with too few notes is left out rather than named.
    melody_part = next((p for p in piece.parts if p.role == "melody"), None)
    if melody_part is None:
        return None
    texture = str(rng.choice(_TEXTURES_V2, p=_TEXTURE_P_V2)) if v2 else "band"
    kept = []
    for part in piece.parts:
        notes = part.notes.copy()
        notes[:, 1:3] *= stretch
        window = _onsets_in(notes, start, end)
        need = MIN_MELODY_ONSETS if part.role == "melody" else MIN_PART_ONSETS
        if len(window) < need:
            if part.role == "melody":
                return None
            continue
        if texture != "band" and part.role != "melody":
            kept.append((part, window))  # a solo or duo keeps the melody and at most one other part, below
            continue
        if part.role == "counter" and rng.random() < 0.5:
            continue  # a second melodic line only some of the time: density varies
        if part.role == "bass" and piece.source != "openmsx" and rng.random() < 0.15:
            continue
        kept.append((part, window))
    if texture != "band":
        melody_window = next((part, w) for part, w in kept if part.role == "melody")
        others = [(part, w) for part, w in kept if part.role != "melody" and not part.is_drums]
        if texture == "duo" and others:
            kept = [melody_window, others[int(rng.integers(len(others)))]]
        else:
            texture = "solo"
            kept = [melody_window]

    lyrics_all = [(t * stretch, s, syl) for t, s, syl in melody_part.lyrics]
    lyrics = _assemble_lyrics(lyrics_all, start, end)
    programs, melody_is_voice = _orchestrate(piece, [p for p, _ in kept], lyrics is not None, rng)
    if not melody_is_voice:
        lyrics = None

    # Key: the annotated key that best fits this window when the source modulates.
    pitched = np.concatenate([w for p, w in kept if not p.is_drums])
    tonic, mode = piece.tonic, piece.mode
    if len(piece.keys) > 1:
        durations = pitched[:, 2] - pitched[:, 1]
        tonic, mode = max(piece.keys, key=lambda k: key_correlation(pitched[:, 0], durations, *k))
    source_mode = mode
    if v2:  # modes balanced (a changed mode moves the scale degrees), all twelve tonics equally likely
        mode = str(rng.choice(("major", "minor")))
        transpose = (int(rng.integers(12)) - tonic + 5) % 12 - 5
    else:
        transpose = int(rng.integers(-5, 7))
    window_tonic = tonic
    tonic = (tonic + transpose) % 12

    dynamics = str(rng.choice(("soft", "medium", "loud"), p=(0.3, 0.4, 0.3)))
    harmony_pattern = str(rng.choice(("held", "beats", "arpeggio"))) if piece.source == "nottingham" else None

    tracks: list[Track] = []
    for (part, window), program in zip(kept, programs):
        notes = window.copy()
        notes[:, 2] = np.minimum(notes[:, 2], end)
        if part.role == "harmony" and harmony_pattern in ("beats", "arpeggio"):
            notes = _onsets_in(_rearticulate(notes, beat_s, harmony_pattern), start, end)
        notes[:, 1:3] -= start
        if not part.is_drums:
            if mode != source_mode:
                notes = _change_mode(notes, window_tonic, mode)
            notes[:, 0] += transpose
            if piece.source != "openmsx":  # band arrangements already sit where their arranger put them
                notes = _fit_register(notes, program, part.role)
        notes[:, 3] = np.clip(np.round(notes[:, 3] * _DYNAMICS_VELOCITY[dynamics]), 1, 127)
        tracks.append(
            Track(
                program=program if not part.is_drums else 0,
                is_drums=part.is_drums,
                role=part.role,
                notes=notes,
            )
        )

    # Parts a caption would name alike are one instrument (a chorale sung by a choir, an organ playing
    # all voices, two OpenMSX tracks on neighbouring synth-bass programs).
    merged: dict[str, Track] = {}
    for track in tracks:
        key = "drums" if track.is_drums else gm.caption_name(track.program)
        if key not in merged:
            merged[key] = track
            continue
        kept_track = merged[key]
        kept_track.notes = np.concatenate([kept_track.notes, track.notes])
        kept_track.notes = kept_track.notes[np.argsort(kept_track.notes[:, 1], kind="stable")]
        if track.role == "melody":
            kept_track.role = "melody"
    tracks = list(merged.values())

    drum_pattern = None
    has_source_drums = any(t.is_drums for t in tracks)
    grooves = grooves_for(piece.beats_per_bar, piece.beat_unit, more=v2)
    drum_probability = _DRUM_PROBABILITY.get(piece.source, 0.0)
    if v2:
        drum_probability = {"solo": 0.0, "duo": _DUO_DRUM_PROBABILITY_V2}.get(
            texture, _DRUM_PROBABILITY_V2.get(piece.source, 0.0)
        )
    drum_fill = False
    if not has_source_drums and grooves and rng.random() < drum_probability:
        groove = grooves[int(rng.integers(len(grooves)))]
        drum_fill = v2 and bool(rng.random() < 0.4)
        drum_notes = write_groove(groove, downbeats, bar_s, start, end, rng, fill=drum_fill)
        drum_notes[:, 1:3] -= start
        drum_notes[:, 2] = np.minimum(drum_notes[:, 2], CLIP_SECONDS)
        drum_notes[:, 3] = np.clip(np.round(drum_notes[:, 3] * _DYNAMICS_VELOCITY[dynamics]), 1, 127)
        tracks.append(Track(program=0, is_drums=True, role="drums", notes=drum_notes))
        drum_pattern = groove.name

    pitched_tracks = [t for t in tracks if not t.is_drums]
    melody_track = next(t for t in pitched_tracks if t.role == "melody")
    onsets = sum(len(np.unique(np.round(t.notes[:, 1], 2))) for t in pitched_tracks) / CLIP_SECONDS
    median_melody = float(np.median(melody_track.notes[:, 0]))

    style = piece.style
    t_class = tempo_class(bpm)
    if piece.source == "pop909":
        style = "pop ballad" if t_class == "slow" else "pop"
    if v2:
        production, summary = draw_production(dynamics, rng)
        quality, degradations = summary["quality"], summary["degradations"]
    else:
        quality = "low" if rng.random() < 0.25 else "clean"
        degradations = []
        if quality == "low":
            degradations = [d for d in _DEGRADATIONS if rng.random() < 0.5] or [
                str(rng.choice(_DEGRADATIONS))
            ]

    attributes = {
        "instruments": [gm.gm_name(t.program) for t in pitched_tracks],
        "programs": [t.program for t in pitched_tracks],
        "roles": [t.role for t in pitched_tracks],
        "families": sorted(
            {program_family(t.program) for t in pitched_tracks}
            | ({"drums"} if len(tracks) > len(pitched_tracks) else set())
        ),
        "melody": gm.gm_name(melody_track.program),
        "melody_program": melody_track.program,
        "drums": len(tracks) > len(pitched_tracks),
        "drum_pattern": drum_pattern,
        "tempo_bpm": int(bpm),
        "tempo_class": t_class,
        "key": f"{PITCH_CLASSES[tonic]} {mode}",
        "mode": mode,
        "time_signature": piece.time_signature,
        "dynamics": dynamics,
        "density": "sparse" if onsets < 3 else "moderate" if onsets < 7 else "dense",
        "register": "low" if median_melody < 60 else "middle" if median_melody < 72 else "high",
        "reverb": summary["reverb"] if v2 else str(rng.choice(_REVERBS, p=(0.35, 0.4, 0.25))),
        "quality": quality,
        "degradations": degradations,
        "style": style,
        "mood": mood(mode, t_class, dynamics),
        "harmony_pattern": harmony_pattern,
        "transpose": transpose,
    }
    if v2:
        main = _choose_renderers(tracks, palette, rng)
        drum_track = next((t for t in tracks if t.is_drums), None)
        attributes.update(
            {
                "renderer": melody_track.renderer,  # the clip's main sound: the soundfont of its melody
                "main_renderer": main,
                "renderers": [t.renderer for t in pitched_tracks],  # per part, aligned with "programs"
                "drum_renderer": drum_track.renderer if drum_track else None,
                "drum_kit": drum_track.kit if drum_track else None,
                "drum_fill": drum_fill,
                "mix": [t.mix for t in pitched_tracks],
                "drum_mix": drum_track.mix if drum_track else None,
                "texture": texture,
                "source_mode": source_mode,
                "tone": summary["tone"],
                "production": production,
            }
        )
    return Arrangement(
        piece_id=piece.id,
        source=piece.source,
        licence=piece.licence,
        title=piece.title,
        tracks=tracks,
        window_start_s=start / stretch,
        lyrics=lyrics,
        attributes=attributes,
    )
