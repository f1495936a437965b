"""FluidSynth rendering with one synth kept loaded per process, the room and recording chain, and the
quality checks every clip must pass.

Loading FluidR3_GM takes about a second; a clip renders in a fraction of that, so the synth is
created once and reset between clips instead of spawning `fluidsynth` per file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import signal

from train.corpus.arrange import CLIP_SECONDS, Arrangement, Track

SAMPLE_RATE = 48_000
CLIP_SAMPLES = int(CLIP_SECONDS * SAMPLE_RATE)
DRUM_CHANNEL = 9
PEAK_LEVEL = {"soft": 0.35, "medium": 0.6, "loud": 0.89}  # all below full scale: nothing clips
_ROLE_VOLUME = {"melody": 112, "counter": 88, "harmony": 80, "bass": 100, "drums": 96}  # MIDI CC7 mix
_REVERB_RT60 = {"room": 0.45, "hall": 1.6}
_REVERB_WET = {"room": 0.25, "hall": 0.4}


class QualityError(RuntimeError):
    """A rendered clip failed a check (length, clipping, silence, an instrument without notes)."""


@dataclass
class RenderedClip:
    audio: np.ndarray  # float32 mono, CLIP_SAMPLES long, peak below 1
    synth_peak: float  # the synth's own peak before our gain: 1.0 would mean it saturated


SOUNDFONT_FOLDERS = (
    Path("/usr/share/sounds/sf2"),
    Path("/usr/share/sounds/sf3"),
    Path("/usr/share/soundfonts"),
)
# Reserved for a held-out evaluation (docs/CORPUS.md): never rendered into a corpus, whatever the command line says.
RESERVED_SOUNDFONTS = ("musescore", "csound")


def find_soundfont(name: str) -> Path:
    """`name` may be a path or one of the Debian soundfont file names; reserved soundfonts are refused."""
    path = Path(name)
    if not path.is_file():
        path = next((folder / name for folder in SOUNDFONT_FOLDERS if (folder / name).is_file()), None)
    if path is None:
        raise FileNotFoundError(
            f"soundfont {name!r} not found (apt-get install fluid-soundfont-gm timgm6mb-soundfont "
            "fluidr3mono-gm-soundfont opl3-soundfont avldrums.lv2-soundfont)"
        )
    # default-GM.sf2 and friends are links: the file they resolve to decides.
    if any(word in f"{path.name} {path.resolve().name}".lower() for word in RESERVED_SOUNDFONTS):
        raise ValueError(
            f"{path} is reserved for the held-out evaluation and is never used to build a corpus"
        )
    return path


def note_events(track: Track, channel: int) -> list[tuple[int, int, int, int, int]]:
    """(sample, kind, channel, pitch, velocity) for each note's on (kind 1) and off (kind 0), the off
    at least one sample after the on and never past the clip."""
    events = []
    for pitch, start, end, velocity in track.notes:
        on = int(round(start * SAMPLE_RATE))
        off = min(int(round(end * SAMPLE_RATE)), CLIP_SAMPLES)
        events.append((on, 1, channel, int(pitch), int(velocity)))
        events.append((max(off, on + 1), 0, channel, int(pitch), 0))
    return events


def play(synth, events: list[tuple[int, int, int, int, int]]) -> np.ndarray:
    """Feed sorted note events to ``synth`` sample-accurately; the clip as float32 stereo frames.
    At one sample, note-offs sort before note-ons, so a repeated note is released before it sounds again."""
    chunks, position = [], 0
    for sample, kind, channel, pitch, velocity in sorted(events):
        if sample >= CLIP_SAMPLES:
            break
        if sample > position:
            chunks.append(synth.get_samples(sample - position))
            position = sample
        if kind:
            synth.noteon(channel, pitch, velocity)
        else:
            synth.noteoff(channel, pitch)
    if position < CLIP_SAMPLES:
        chunks.append(synth.get_samples(CLIP_SAMPLES - position))
    return np.concatenate(chunks).astype(np.float32).reshape(-1, 2) / 32768.0


class Renderer:
    """A FluidSynth instance with one soundfont loaded, rendering arrangements offline."""

    def __init__(self, soundfont: Path, gain: float = 0.3):
        import fluidsynth

        # FluidSynth's own reverb/chorus stay off: the room is added afterwards, where it is controlled.
        self.synth = fluidsynth.Synth(
            gain=gain,
            samplerate=float(SAMPLE_RATE),
            **{"synth.reverb.active": 0, "synth.chorus.active": 0, "synth.polyphony": 256},
        )
        self.soundfont_id = self.synth.sfload(str(soundfont))
        self.gain = gain

    def close(self) -> None:
        self.synth.delete()

    def _synthesise(self, tracks: list[Track]) -> np.ndarray:
        synth = self.synth
        synth.system_reset()
        events = []
        free_channels = [c for c in range(16) if c != DRUM_CHANNEL]
        if sum(not t.is_drums for t in tracks) > len(free_channels):
            raise QualityError(f"{len(tracks)} tracks do not fit 16 MIDI channels")
        for track in tracks:
            channel = DRUM_CHANNEL if track.is_drums else free_channels.pop(0)
            synth.program_select(channel, self.soundfont_id, 128 if track.is_drums else 0, track.program)
            synth.cc(channel, 7, _ROLE_VOLUME.get(track.role, 90))
            events += note_events(track, channel)
        stereo = play(synth, events)
        for channel in range(16):
            synth.all_sounds_off(channel)
        return stereo

    def render(self, arrangement: Arrangement, rng: np.random.Generator) -> RenderedClip:
        stereo = self._synthesise(arrangement.tracks)
        synth_peak = float(np.abs(stereo).max())
        if synth_peak >= 0.999:  # the synth's 16-bit output saturated: render again quieter
            self.synth.setting("synth.gain", self.gain / 4)
            stereo = self._synthesise(arrangement.tracks)
            self.synth.setting("synth.gain", self.gain)
            synth_peak = float(np.abs(stereo).max())
        dry = stereo.mean(axis=1)
        attributes = arrangement.attributes
        audio = add_reverb(dry, attributes["reverb"], rng)
        audio = degrade(audio, attributes["degradations"], rng)
        audio = fade(audio)
        peak = float(np.abs(audio).max())
        if peak > 0:
            audio = audio * (PEAK_LEVEL[attributes["dynamics"]] / peak)
        return RenderedClip(audio=audio.astype(np.float32), synth_peak=synth_peak)


PART_RMS = 0.05  # v2: every part is brought to this level while it sounds, then its mix gain applies


def sounding_rms(audio: np.ndarray) -> float:
    """RMS over the 100 ms frames where a part sounds (within 50 dB of its loudest frame), so a part's
    level does not depend on its rests."""
    frame = SAMPLE_RATE // 10
    frames = np.sqrt(np.mean(audio[: len(audio) // frame * frame].reshape(-1, frame) ** 2, axis=1))
    sounding = frames[frames > frames.max() * 10 ** (-50 / 20)]
    return max(float(np.sqrt(np.mean(sounding**2))), 1e-9)


# Drum kits (bank 128 presets) a General MIDI soundfont may offer; each v2 drum part draws one it has.
GM_DRUM_KITS = {
    0: "standard",
    8: "room",
    16: "power",
    24: "electronic",
    25: "TR-808",
    32: "jazz",
    40: "brush",
}


class MultiRenderer:
    """Corpus v2: one FluidSynth holding several soundfonts; each part of a clip is rendered on its own,
    by the soundfont its track names, so that parts can be EQ'd, levelled and panned apart.

    Rendering part by part costs little more than one pass: FluidSynth's work is per sounding voice.
    Drum-only soundfonts (the AVL kits) hold one kit at bank 0, preset 0, on General MIDI drum notes.
    """

    def __init__(self, soundfonts: dict[str, Path], drum_only: tuple[str, ...] = (), gain: float = 0.3):
        import fluidsynth

        self.synth = fluidsynth.Synth(
            gain=gain,
            samplerate=float(SAMPLE_RATE),
            **{"synth.reverb.active": 0, "synth.chorus.active": 0, "synth.polyphony": 256},
        )
        self.gain = gain
        self.ids = {name: self.synth.sfload(str(path)) for name, path in soundfonts.items()}
        self.drum_only = set(drum_only)
        # The kits each soundfont really has: (bank, preset) -> caption-free kit name.
        self.kits: dict[str, dict[str, tuple[int, int]]] = {}
        for name, sfid in self.ids.items():
            if name in self.drum_only:
                self.kits[name] = {self.synth.sfpreset_name(sfid, 0, 0): (0, 0)}
            else:
                self.kits[name] = {
                    kit: (128, preset)
                    for preset, kit in GM_DRUM_KITS.items()
                    if self.synth.sfpreset_name(sfid, 128, preset)
                }
            if not self.kits[name]:
                raise ValueError(f"soundfont {name} has no drum kit")

    def close(self) -> None:
        self.synth.delete()

    def render_part(self, track: Track, renderer: str, kit: str | None = None) -> tuple[np.ndarray, float]:
        """One track alone, mono float32 (the soundfont's stereo summed), and the synth's own peak."""
        sfid = self.ids[renderer]
        if track.is_drums:
            bank, preset = self.kits[renderer][kit]
        elif renderer in self.drum_only:
            raise ValueError(f"{renderer} only has drums, not program {track.program}")
        else:
            bank, preset = 0, track.program
        channel = DRUM_CHANNEL if track.is_drums else 0
        for gain in (self.gain, self.gain / 4):  # a saturated render is made again quieter
            synth = self.synth
            synth.setting("synth.gain", gain)
            synth.system_reset()
            synth.program_select(channel, sfid, bank, preset)
            synth.cc(channel, 7, 100)  # levels are set in the mix, not by MIDI volume
            stereo = play(synth, note_events(track, channel))
            synth.all_sounds_off(channel)
            peak = float(np.abs(stereo).max())
            if peak < 0.999:
                break
        self.synth.setting("synth.gain", self.gain)
        return stereo.mean(axis=1), peak

    def render(self, arrangement: Arrangement, rng: np.random.Generator) -> tuple[RenderedClip, RenderedClip]:
        """(the produced clip, the dry mix before production, for the audibility checks)."""
        from train.corpus.produce import mix_parts, produce

        parts, peaks = [], []
        for track in arrangement.tracks:
            audio, peak = self.render_part(track, track.renderer, track.kit)
            if peak < 1e-4:
                raise QualityError(f"{track.renderer} made no sound for {track.role} program {track.program}")
            parts.append(audio * (PART_RMS / sounding_rms(audio)))  # soundfonts differ by up to ~6 dB
            peaks.append(peak)
        bus = mix_parts(parts, [track.mix for track in arrangement.tracks])
        dry = bus.mean(axis=0)
        dry_peak = float(np.abs(dry).max())
        production = arrangement.attributes["production"]
        audio = fade(produce(bus, production, rng))
        peak = float(np.abs(audio).max())
        if peak > 0:
            audio = audio * (production["peak"] / peak)
        dry = dry * (production["peak"] / max(dry_peak, 1e-9))
        synth_peak = max(peaks)
        return (
            RenderedClip(audio=audio.astype(np.float32), synth_peak=synth_peak),
            RenderedClip(audio=dry.astype(np.float32), synth_peak=synth_peak),
        )


def add_reverb(audio: np.ndarray, reverb: str, rng: np.random.Generator) -> np.ndarray:
    """Convolve with an exponentially decaying noise tail (a diffuse room) and mix it in."""
    if reverb == "dry":
        return audio
    rt60 = _REVERB_RT60[reverb]
    n = int(rt60 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    impulse = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)  # -60 dB at rt60
    impulse[0] = 0.0
    wet = signal.fftconvolve(audio, impulse)[: len(audio)]
    wet *= np.sqrt(np.mean(audio**2) / max(np.mean(wet**2), 1e-12))
    mix = _REVERB_WET[reverb]
    return (1 - mix) * audio + mix * wet


def degrade(audio: np.ndarray, degradations: list[str], rng: np.random.Generator) -> np.ndarray:
    """The "low quality" recording chain: band-limiting, soft-clipping distortion, hiss."""
    out = audio
    if "band-limited" in degradations:
        low, high = float(rng.uniform(150, 400)), float(rng.uniform(2500, 4500))
        sos = signal.butter(4, [low, high], btype="bandpass", fs=SAMPLE_RATE, output="sos")
        out = signal.sosfilt(sos, out)
    if "distortion" in degradations:
        drive = float(rng.uniform(4, 10))
        out = np.tanh(drive * out / max(np.abs(out).max(), 1e-9)) / np.tanh(drive)
    if "noise" in degradations:
        snr_db = float(rng.uniform(12, 24))
        rms = np.sqrt(np.mean(out**2))
        out = out + rng.standard_normal(len(out)) * rms * 10 ** (-snr_db / 20)
    return out


def fade(audio: np.ndarray, fade_in_s: float = 0.005, fade_out_s: float = 0.05) -> np.ndarray:
    """Short ramps so the cut at each end of the window does not click."""
    out = audio.copy()
    n_in, n_out = int(fade_in_s * SAMPLE_RATE), int(fade_out_s * SAMPLE_RATE)
    out[:n_in] *= np.linspace(0, 1, n_in)
    out[-n_out:] *= np.linspace(1, 0, n_out)
    return out


def check_clip(arrangement: Arrangement, clip: RenderedClip) -> None:
    """Raise QualityError unless the clip is exactly 10 s, unclipped, audible throughout, and every
    named instrument has notes inside the window."""
    audio = clip.audio
    if len(audio) != CLIP_SAMPLES:
        raise QualityError(f"length {len(audio)} samples, expected {CLIP_SAMPLES}")
    if clip.synth_peak >= 0.999 or float(np.abs(audio).max()) >= 1.0:
        raise QualityError("clipped")
    frame = SAMPLE_RATE // 10
    frame_rms = np.sqrt(np.mean(audio[: len(audio) // frame * frame].reshape(-1, frame) ** 2, axis=1))
    if frame_rms.max() < 1e-3:
        raise QualityError("silent")
    quiet = frame_rms < frame_rms.max() * 10 ** (-50 / 20)
    longest_quiet = max((len(run) for run in "".join("1" if q else "0" for q in quiet).split("0")), default=0)
    if longest_quiet * 0.1 > 2.0:
        raise QualityError(f"silent for {longest_quiet * 0.1:.1f} s")
    # Every second carries music (a chorale inside a cantata rests its voices while the orchestra, which
    # we do not take, plays an interlude): no whole second below -60 dB of the clip's peak.
    seconds = np.sqrt(np.mean(audio.reshape(int(CLIP_SECONDS), -1) ** 2, axis=1))
    if seconds.min() <= np.abs(audio).max() * 1e-3:
        raise QualityError(f"second {int(seconds.argmin())} is near-silent")
    for track in arrangement.tracks:
        inside = (track.notes[:, 1] >= 0) & (track.notes[:, 1] < CLIP_SECONDS)
        if not inside.any():
            raise QualityError(f"program {track.program} has no notes in the window")
