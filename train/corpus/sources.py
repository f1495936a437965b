"""Symbolic sources of the synthetic corpus, read into one `Piece` type.

Every loader returns note lists in seconds at the source's own tempo, the beat grid, and what the
source tells us about the music (key, metre, style). Nothing here decides the arrangement: that is
`arrange.py`'s job, so a piece can be re-orchestrated many ways.

Sources (each optional; the generator uses what is present):
- POP909 (MIT): MELODY / BRIDGE / PIANO tracks, key from `key_audio.txt`, beats from `beat_midi.txt`.
- Nottingham (GPL-3.0): folk tunes, melody + chord track; the file prefix names the dance form.
- OpenMSX (GPL-2.0): multi-instrument General MIDI band arrangements with their own drums.
- music21's corpus: Bach chorales (four voices, soprano carries the German text).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PITCH_CLASSES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_NOTE_INDEX = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}

# Krumhansl-Kessler key profiles: the standard template-matching key finder for sources without a key.
_MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])

NOTTINGHAM_STYLES = {
    "ashover": "English folk tune",
    "hpps": "hornpipe",
    "jigs": "jig",
    "morris": "morris dance tune",
    "playford": "English country dance",
    "reels": "reel",
    "slip": "slip jig",
    "waltzes": "folk waltz",
    "xmas": "Christmas carol",
}

LICENCES = {
    "pop909": "MIT (POP909 dataset)",
    "nottingham": "GPL-3.0 (Nottingham Music Database, cleaned MIDI)",
    "openmsx": "GPL-2.0 (OpenMSX)",
    "music21": "public domain work (music21 corpus, BSD-3 toolkit)",
}


@dataclass
class Part:
    """One line of a piece. `notes` rows are (pitch, start_s, end_s, velocity)."""

    role: str  # melody | counter | harmony | bass | drums
    notes: np.ndarray
    program: int | None = None  # the source's General MIDI program, when it has a meaningful one
    lyrics: list[tuple[float, str, str]] = field(default_factory=list)  # (time_s, syllable, syllabic)

    @property
    def is_drums(self) -> bool:
        return self.role == "drums"


@dataclass
class Piece:
    id: str  # composition id: every clip of this piece goes to the same split
    source: str
    licence: str
    title: str
    parts: list[Part]
    bpm: float  # quarter notes per minute at which `parts` are timed
    beats_per_bar: int
    beat_unit: int  # time signature denominator
    tonic: int  # pitch class 0..11
    mode: str  # major | minor
    style: str
    downbeats: np.ndarray  # bar starts in seconds
    keys: list[tuple[int, str]] = field(default_factory=list)  # all annotated keys, when several

    @property
    def end_s(self) -> float:
        return max(float(p.notes[:, 2].max()) for p in self.parts if len(p.notes))

    @property
    def time_signature(self) -> str:
        return f"{self.beats_per_bar}/{self.beat_unit}"


@dataclass(frozen=True)
class PieceRef:
    """A piece that has not been parsed yet: enough to plan splits without reading every file."""

    id: str
    source: str
    path: str


def estimate_key(pitches: np.ndarray, durations: np.ndarray) -> tuple[int, str, float]:
    """(tonic, mode, correlation) of the best Krumhansl-Kessler profile for a duration-weighted histogram."""
    histogram = np.bincount(pitches.astype(int) % 12, weights=durations, minlength=12)
    best = (0, "major", -2.0)
    for tonic in range(12):
        for mode, profile in (("major", _MAJOR_PROFILE), ("minor", _MINOR_PROFILE)):
            r = float(np.corrcoef(histogram, np.roll(profile, tonic))[0, 1])
            if r > best[2]:
                best = (tonic, mode, r)
    return best


def key_correlation(pitches: np.ndarray, durations: np.ndarray, tonic: int, mode: str) -> float:
    histogram = np.bincount(pitches.astype(int) % 12, weights=durations, minlength=12)
    profile = _MAJOR_PROFILE if mode == "major" else _MINOR_PROFILE
    return float(np.corrcoef(histogram, np.roll(profile, tonic))[0, 1])


def _notes_array(notes) -> np.ndarray:
    rows = [(n.pitch, n.start, n.end, n.velocity) for n in notes if n.end > n.start]
    return np.array(sorted(rows, key=lambda r: (r[1], r[0])), dtype=np.float64).reshape(-1, 4)


def split_bass(notes: np.ndarray, ceiling: int = 55) -> tuple[np.ndarray, np.ndarray]:
    """Split an accompaniment into (bass, rest): the lowest note of each onset group, if low enough."""
    if not len(notes):
        return notes, notes
    groups = np.round(notes[:, 1] / 0.03).astype(int)  # onsets within 30 ms sound as one chord
    is_bass = np.zeros(len(notes), dtype=bool)
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        low = idx[np.argmin(notes[idx, 0])]
        if notes[low, 0] <= ceiling:
            is_bass[low] = True
    return notes[is_bass], notes[~is_bass]


def _read_midi(path: Path):
    import pretty_midi

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # OpenMSX files put meta events on non-zero tracks
        return pretty_midi.PrettyMIDI(str(path))


def _parse_key_label(label: str) -> tuple[int, str] | None:
    match = re.fullmatch(r"([A-G])([#b]?):(maj|min)", label.strip())
    if not match:
        return None
    pc = _NOTE_INDEX[match[1]] + {"#": 1, "b": -1, "": 0}[match[2]]
    return pc % 12, "major" if match[3] == "maj" else "minor"


def _time_signature(midi) -> tuple[int, int]:
    if midi.time_signature_changes:
        ts = midi.time_signature_changes[0]
        return ts.numerator, ts.denominator
    return 4, 4


def load_pop909(ref: PieceRef) -> Piece:
    folder = Path(ref.path)
    midi = _read_midi(folder / f"{folder.name}.mid")
    tracks = {inst.name.upper(): _notes_array(inst.notes) for inst in midi.instruments}
    bass, harmony = split_bass(tracks.get("PIANO", np.zeros((0, 4))))
    parts = [Part("melody", tracks["MELODY"])]
    if len(tracks.get("BRIDGE", ())):
        parts.append(Part("counter", tracks["BRIDGE"]))
    parts += [Part("harmony", harmony), Part("bass", bass)]

    beats = np.loadtxt(folder / "beat_midi.txt", ndmin=2)
    downbeats = beats[beats[:, 2] == 1, 0]
    beat_period = float(np.median(np.diff(beats[:, 0])))
    bar_lengths = np.diff(np.flatnonzero(beats[:, 2] == 1))
    beats_per_bar = int(np.bincount(bar_lengths).argmax()) if len(bar_lengths) else 4

    keys = []
    for line in (folder / "key_audio.txt").read_text().splitlines():
        fields = line.split("\t")
        parsed = _parse_key_label(fields[-1]) if fields else None
        if parsed and parsed not in keys:
            keys.append(parsed)
    tonic, mode = (
        keys[0] if keys else estimate_key(tracks["MELODY"][:, 0], np.ones(len(tracks["MELODY"])))[:2]
    )
    return Piece(
        id=ref.id,
        source="pop909",
        licence=LICENCES["pop909"],
        title=f"POP909 song {folder.name}",
        parts=[p for p in parts if len(p.notes)],
        bpm=60.0 / beat_period,
        beats_per_bar=beats_per_bar if beats_per_bar in (2, 3, 4, 6) else 4,
        beat_unit=4,
        tonic=tonic,
        mode=mode,
        style="pop",
        downbeats=downbeats,
        keys=keys,
    )


def load_nottingham(ref: PieceRef) -> Piece:
    path = Path(ref.path)
    midi = _read_midi(path)
    melody = _notes_array(midi.instruments[0].notes)
    parts = [Part("melody", melody)]
    if len(midi.instruments) > 1:
        chords = _notes_array(midi.instruments[1].notes)
        bass, harmony = split_bass(chords, ceiling=127)  # every chord gets a bass note
        if len(bass):
            bass[:, 0] -= 12 * np.maximum(0, np.ceil((bass[:, 0] - 52) / 12))
        parts += [Part("harmony", harmony), Part("bass", bass)]
    numerator, denominator = _time_signature(midi)
    tonic, mode, _ = estimate_key(melody[:, 0], melody[:, 2] - melody[:, 1])
    prefix = re.sub(r"[0-9]+$", "", path.stem)
    style = next(s for k, s in NOTTINGHAM_STYLES.items() if prefix.startswith(k))
    return Piece(
        id=ref.id,
        source="nottingham",
        licence=LICENCES["nottingham"],
        title=f"Nottingham {path.stem}",
        parts=[p for p in parts if len(p.notes)],
        bpm=float(midi.get_tempo_changes()[1][0]),
        beats_per_bar=numerator,
        beat_unit=denominator,
        tonic=tonic,
        mode=mode,
        style=style,
        downbeats=np.asarray(midi.get_downbeats()),
    )


def load_openmsx(ref: PieceRef) -> Piece:
    """Band arrangements: parts keep their programs and drums; parts sharing a program are merged."""
    path = Path(ref.path)
    midi = _read_midi(path)
    by_program: dict[int, list] = {}
    drums: list = []
    for inst in midi.instruments:
        (drums if inst.is_drum else by_program.setdefault(inst.program, [])).extend(inst.notes)
    parts = [Part("drums", _notes_array(drums))] if drums else []
    pitched = {p: _notes_array(n) for p, n in by_program.items() if len(n) >= 8}
    # The melody is the busiest line above middle C; the lowest line is the bass.
    medians = {p: float(np.median(a[:, 0])) for p, a in pitched.items()}
    melody = max(pitched, key=lambda p: (medians[p] >= 60, len(pitched[p]))) if pitched else None
    bass = min(medians, key=medians.get) if len(pitched) > 1 else None
    for program, notes in pitched.items():
        role = "melody" if program == melody else "bass" if program == bass else "harmony"
        parts.append(Part(role, notes, program=program))
    all_pitched = np.concatenate([p.notes for p in parts if not p.is_drums])
    tonic, mode, _ = estimate_key(all_pitched[:, 0], all_pitched[:, 2] - all_pitched[:, 1])
    numerator, denominator = _time_signature(midi)
    return Piece(
        id=ref.id,
        source="openmsx",
        licence=LICENCES["openmsx"],
        title=f"OpenMSX {path.stem}",
        parts=parts,
        bpm=float(midi.get_tempo_changes()[1][0]),
        beats_per_bar=numerator,
        beat_unit=denominator,
        tonic=tonic,
        mode=mode,
        style="instrumental band arrangement",
        downbeats=np.asarray(midi.get_downbeats()),
    )


def load_chorale(ref: PieceRef) -> Piece:
    """A Bach chorale timed at 60 quarter notes per minute (1 s per quarter); the soprano carries the text."""
    from music21 import corpus

    score = corpus.parse(ref.path)
    roles = ("melody", "harmony", "harmony", "bass")
    # Chorales inside cantatas and oratorios carry instrumental parts too: take the four voices by name.
    voices = [
        next((p for p in score.parts if (p.partName or "").lower().startswith(v)), None)
        for v in ("soprano", "alto", "tenor", "bass")
    ]
    if any(v is None for v in voices):
        voices = list(score.parts[:4])
    parts = []
    for role, part in zip(roles, voices):
        notes, lyrics = [], []
        for n in part.stripTies().flatten().notes:
            if not hasattr(n, "pitch"):
                continue  # chords inside a chorale voice are editorial; skip them
            start = float(n.offset)
            notes.append((n.pitch.midi, start, start + float(n.quarterLength), 80))
            if n.lyrics and n.lyrics[0].text:
                lyrics.append((start, n.lyrics[0].text, n.lyrics[0].syllabic or "single"))
        parts.append(Part(role, np.array(notes, dtype=np.float64).reshape(-1, 4), lyrics=lyrics))
    if not any(p.role == "melody" and len(p.notes) for p in parts):
        raise ValueError(f"{ref.path}: no soprano line")
    key = score.analyze("key")
    ts = score.recurse().getElementsByClass("TimeSignature")
    numerator, denominator = (ts[0].numerator, ts[0].denominator) if ts else (4, 4)
    # Bars start at each measure except a pickup (measure 0, shorter than a bar).
    measures = voices[0].getElementsByClass("Measure")
    downbeats = np.array(
        [
            float(m.offset)
            for m in measures
            if m.number != 0 or m.duration.quarterLength >= numerator * 4.0 / denominator
        ]
    )
    return Piece(
        id=ref.id,
        source="music21",
        licence=LICENCES["music21"],
        title=f"J. S. Bach, chorale {ref.path.split('/')[-1]}",
        parts=[p for p in parts if len(p.notes)],
        bpm=60.0,
        beats_per_bar=numerator,
        beat_unit=denominator,
        tonic=key.tonic.pitchClass,
        mode=key.mode if key.mode in ("major", "minor") else "major",
        style="baroque chorale",
        downbeats=downbeats,
    )


LOADERS = {
    "pop909": load_pop909,
    "nottingham": load_nottingham,
    "openmsx": load_openmsx,
    "music21": load_chorale,
}


def load_piece(ref: PieceRef) -> Piece:
    return LOADERS[ref.source](ref)


def list_pieces(symbolic_dir: Path | None, sources: tuple[str, ...]) -> list[PieceRef]:
    """Every available composition, in a stable order, without parsing any of them."""
    refs: list[PieceRef] = []
    if symbolic_dir is not None and symbolic_dir.is_dir():
        if "pop909" in sources:
            for folder in sorted((symbolic_dir / "pop909" / "POP909").glob("[0-9][0-9][0-9]")):
                refs.append(PieceRef(f"pop909/{folder.name}", "pop909", str(folder)))
        if "nottingham" in sources:
            for path in sorted((symbolic_dir / "nottingham" / "MIDI").glob("*.mid")):
                if re.sub(r"[0-9]+$", "", path.stem).startswith(tuple(NOTTINGHAM_STYLES)):
                    refs.append(PieceRef(f"nottingham/{path.stem}", "nottingham", str(path)))
        if "openmsx" in sources:
            for path in sorted((symbolic_dir / "openmsx").glob("*.mid")):
                refs.append(PieceRef(f"openmsx/{path.stem}", "openmsx", str(path)))
    if "music21" in sources:
        from music21 import corpus

        for name in sorted(corpus.chorales.Iterator(returnType="filename")):
            refs.append(PieceRef(f"music21/{name}", "music21", name))
    return refs
