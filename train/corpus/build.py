"""Plan, render and write the corpus: pieces to splits, clips to pieces, manifests at the end.

Determinism: every clip draws from its own generator seeded by (seed, split, index, attempt), so the
output does not depend on the number of workers or on the order clips finish in. A build that was
interrupted resumes: clips whose audio and record already exist are kept.

Recipes: `v1` is the shipped checkpoints' corpus (one soundfont, one caption per clip, three splits),
reproduced draw for draw; `v2` (the default) renders each part with a soundfont drawn from several,
mixes and produces each clip differently, writes several captions per clip and adds a fourth split,
`unseen`: compositions absent from the other splits, rendered only by a soundfont they never use.
"""

from __future__ import annotations

import json
import logging
import os
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from train.corpus.arrange import Palette, arrange
from train.corpus.captions import write_caption, write_captions
from train.corpus.render import (
    SAMPLE_RATE,
    MultiRenderer,
    QualityError,
    Renderer,
    check_clip,
    find_soundfont,
)
from train.corpus.sources import PieceRef, list_pieces, load_piece

log = logging.getLogger("train.corpus")

SPLITS = ("train", "validation", "test")
SPLITS_V2 = (*SPLITS, "unseen")
RECIPES = ("v1", "v2")
CAPTIONS_PER_CLIP = 5  # v2: independent phrasings per clip, all of them references at evaluation
# v2 captions always say what the listening table scores and the audio carries (tempo, key and mode,
# drums or none): with these sentences optional, 34 % of v2 captions left the mode unsaid and 23 % the
# drums, so a model learnt to leave them out as often. Instruments are always named already.
STATED_IN_EVERY_CAPTION = frozenset({"tempo", "key", "drums"})
# Version 2: v2 captions come from a generator of their own (`caption_rng`), not from the clip's render
# generator, so `recaption` rewrites an existing corpus's captions exactly as a fresh build writes them.
CAPTION_VERSION = 2
ALL_SOURCES = ("pop909", "nottingham", "openmsx", "music21")
# Share of clips drawn from each source (renormalised over the sources present).
SOURCE_WEIGHTS = {"pop909": 0.4, "nottingham": 0.33, "music21": 0.2, "openmsx": 0.07}
MAX_ATTEMPTS = 8  # fresh arrangements of one piece before falling back to the next piece


@dataclass(frozen=True)
class SizeSpec:
    clips: dict[str, int]
    soundfont: str
    max_pieces_per_source: int | None = None  # tiny builds only touch a few files


SIZES = {
    "tiny": SizeSpec({"train": 10, "validation": 3, "test": 3}, "TimGM6mb.sf2", max_pieces_per_source=6),
    "small": SizeSpec({"train": 2400, "validation": 300, "test": 500}, "FluidR3_GM.sf2"),
    "full": SizeSpec({"train": 6000, "validation": 500, "test": 500}, "FluidR3_GM.sf2"),
}


@dataclass(frozen=True)
class Renderers:
    """v2's soundfonts. Training (train, validation, test) draws each part from `training` (drum parts
    also from `drum_kits`); the unseen split renders everything with `held_out`, which training never
    uses. The soundfonts of `render.RESERVED_SOUNDFONTS` are kept for a held-out evaluation and refused
    by `find_soundfont` (docs/CORPUS.md)."""

    training: tuple[str, ...]  # General MIDI soundfonts
    drum_kits: tuple[str, ...]  # drum-only soundfonts (General MIDI drum notes, one kit each)
    held_out: str

    @property
    def all(self) -> tuple[str, ...]:
        return (*self.training, *self.drum_kits, self.held_out)


# TimGM6mb is held out: a General MIDI sample set of its own (not derived from FluidR3, unlike
# FluidR3Mono), so the unseen split tests new instrument samples, as the reserved evaluation will.
# The OPL-3 FM set, a different synthesis altogether, is in training to widen what "a piano" sounds like.
FULL_RENDERERS = Renderers(
    training=("FluidR3_GM.sf2", "FluidR3Mono_GM.sf3", "OPL-3_FM_128M.sf2"),
    drum_kits=("Black_Pearl_4_LV2.sf2", "Red_Zeppelin_4_LV2.sf2"),
    held_out="TimGM6mb.sf2",
)
# The tiny build (tests, CI) leaves out the largest soundfont (FluidR3_GM, 120 MB to download) and one kit.
TINY_RENDERERS = Renderers(
    training=("FluidR3Mono_GM.sf3", "OPL-3_FM_128M.sf2"),
    drum_kits=("Black_Pearl_4_LV2.sf2",),
    held_out="TimGM6mb.sf2",
)


@dataclass(frozen=True)
class SizeSpecV2:
    clips: dict[str, int]
    renderers: Renderers
    max_pieces_per_source: int | None = None


SIZES_V2 = {
    "tiny": SizeSpecV2({"train": 16, "validation": 3, "test": 3, "unseen": 4}, TINY_RENDERERS, 6),
    "small": SizeSpecV2({"train": 2400, "validation": 300, "test": 500, "unseen": 500}, FULL_RENDERERS),
    "full": SizeSpecV2({"train": 10000, "validation": 500, "test": 500, "unseen": 500}, FULL_RENDERERS),
}


@dataclass(frozen=True)
class ClipJob:
    split: str
    index: int
    seed: int
    candidates: tuple[PieceRef, ...]  # the planned piece first, then fallbacks from the same split

    @property
    def id(self) -> str:
        return f"{self.split}-{self.index:05d}"


def default_symbolic_dir() -> Path | None:
    """`../shared/data/symbolic` next to the repository, when this workplace has it."""
    path = Path(__file__).resolve().parents[3] / "shared" / "data" / "symbolic"
    return path if path.is_dir() else None


def assign_splits(
    refs: list[PieceRef], clips: dict[str, int], seed: int
) -> dict[str, dict[str, list[PieceRef]]]:
    """split -> source -> pieces. Each source's pieces are shuffled and divided in proportion to the
    clip counts (`clips`' splits, in its order, train first), so every composition lives in exactly one split."""
    splits = tuple(clips)
    rng = np.random.default_rng([seed, 0])
    total = sum(clips.values())
    out: dict[str, dict[str, list[PieceRef]]] = {s: {} for s in splits}
    for source in ALL_SOURCES:
        pieces = [r for r in refs if r.source == source]
        if len(pieces) < len(splits):
            continue
        order = rng.permutation(len(pieces))
        counts = [max(1, round(len(pieces) * clips[s] / total)) for s in splits[1:]]
        bounds = np.cumsum([len(pieces) - sum(counts), *counts])
        start = 0
        for split, stop in zip(splits, bounds):
            out[split][source] = [pieces[i] for i in order[start:stop]]
            start = stop
    return out


def plan_jobs(assignment, clips: dict[str, int], seed: int, max_pieces: int | None) -> list[ClipJob]:
    jobs = []
    for split_index, split in enumerate(clips):
        by_source = {s: p[:max_pieces] if max_pieces else p for s, p in assignment[split].items() if p}
        sources = sorted(by_source)
        weights = np.array([SOURCE_WEIGHTS[s] for s in sources])
        rng = np.random.default_rng([seed, 1, split_index])
        picks = rng.choice(len(sources), size=clips[split], p=weights / weights.sum())
        used = dict.fromkeys(sources, 0)
        for index, pick in enumerate(picks):
            pieces = by_source[sources[pick]]
            k = used[sources[pick]]
            used[sources[pick]] += 1
            # Round-robin over a shuffled list spreads clips evenly over compositions.
            candidates = tuple(pieces[(k + j) % len(pieces)] for j in range(min(4, len(pieces))))
            jobs.append(ClipJob(split, index, seed, candidates))
    return jobs


class ClipMaker:
    """Everything one worker process keeps loaded: the synth and a few parsed pieces.

    v1: `soundfont` (one path); v2: `renderers` (soundfont names), all loaded into one synth.
    """

    def __init__(self, out_dir: Path, soundfont: Path | None = None, renderers: Renderers | None = None):
        if (soundfont is None) == (renderers is None):
            raise ValueError("give a soundfont (recipe v1) or renderers (recipe v2)")
        self.out_dir = out_dir
        self.palettes: dict[str, Palette] = {}
        if renderers is None:
            self.renderer = Renderer(soundfont)
        else:
            self.renderer = MultiRenderer(
                {name: find_soundfont(name) for name in renderers.all}, drum_only=renderers.drum_kits
            )
            kits = {name: tuple(kit) for name, kit in self.renderer.kits.items()}
            training = Palette(renderers.training, renderers.training + renderers.drum_kits, kits)
            held_out = Palette((renderers.held_out,), (renderers.held_out,), kits)
            self.palettes = {split: training for split in SPLITS} | {"unseen": held_out}
        self._pieces: dict[str, object] = {}

    def _piece(self, ref: PieceRef):
        if ref.id not in self._pieces:
            if len(self._pieces) > 16:
                self._pieces.pop(next(iter(self._pieces)))
            self._pieces[ref.id] = load_piece(ref)
        return self._pieces[ref.id]

    def make(self, job: ClipJob) -> dict:
        record_path = self.out_dir / "records" / job.split / f"{job.id}.json"
        audio_rel = Path("audio") / job.split / f"{job.id}.flac"
        if record_path.is_file() and (self.out_dir / audio_rel).is_file():
            return json.loads(record_path.read_text())
        failures = []
        split_code = SPLITS_V2.index(job.split)
        palette = self.palettes.get(job.split)  # None: recipe v1
        for candidate_index, ref in enumerate(job.candidates):
            try:
                piece = self._piece(ref)
            except Exception as error:  # a source file the parser cannot read: use the next piece
                failures.append(f"{ref.id}: {type(error).__name__}: {error}")
                continue
            for attempt in range(MAX_ATTEMPTS):
                rng = np.random.default_rng([job.seed, split_code, job.index, candidate_index, attempt])
                try:
                    arrangement = arrange(piece, rng, palette)
                    if arrangement is None:
                        continue
                    if palette is None:
                        clip = self.renderer.render(arrangement, rng)
                    else:  # the music must be audible before production, and the produced clip sound
                        clip, dry = self.renderer.render(arrangement, rng)
                        check_clip(arrangement, dry)
                    check_clip(arrangement, clip)
                except QualityError as error:
                    failures.append(f"{ref.id}: {error}")
                    continue
                except Exception as error:  # a piece the arranger cannot handle must not stop a long build
                    log.warning("%s attempt %d on %s failed: %r", job.id, attempt, ref.id, error)
                    failures.append(f"{ref.id}: {type(error).__name__}: {error}")
                    continue
                return self._write(job, arrangement, clip, rng, audio_rel, record_path)
        raise RuntimeError(f"{job.id}: no usable clip from {[r.id for r in job.candidates]}: {failures[-3:]}")

    def _write(self, job, arrangement, clip, rng, audio_rel: Path, record_path: Path) -> dict:
        import soundfile

        if self.palettes:
            captions, all_facts = v2_captions(arrangement.attributes, arrangement.lyrics, job.id, job.seed)
            caption, facts = captions[0], all_facts[0]
        else:
            caption, facts = write_caption(arrangement.attributes, arrangement.lyrics, rng)
        audio_path = self.out_dir / audio_rel
        midi_rel = Path("midi") / job.split / f"{job.id}.mid"
        for path in (audio_path, self.out_dir / midi_rel, record_path):
            path.parent.mkdir(parents=True, exist_ok=True)
        write_midi(arrangement, self.out_dir / midi_rel)
        soundfile.write(audio_path, clip.audio, SAMPLE_RATE, subtype="PCM_16", format="FLAC")
        record = {
            "id": job.id,
            "audio": audio_rel.as_posix(),
            "caption": caption,
            "lyrics": arrangement.lyrics,
            "piece": arrangement.piece_id,
            "source": arrangement.source,
            "licence": arrangement.licence,
            "attributes": arrangement.attributes,
            "midi": midi_rel.as_posix(),
            "title": arrangement.title,
            "window_start_s": round(arrangement.window_start_s, 3),
            "caption_facts": facts,
        }
        if self.palettes:
            record["captions"] = captions  # "caption" is the first of them
            record["captions_facts"] = all_facts
        record_path.write_text(json.dumps(record, ensure_ascii=False))
        return record


def write_midi(arrangement, path: Path) -> None:
    """The clip as rendered: one instrument per program, the clip's tempo and metre."""
    import pretty_midi

    midi = pretty_midi.PrettyMIDI(initial_tempo=arrangement.bpm)
    numerator, denominator = map(int, arrangement.attributes["time_signature"].split("/"))
    midi.time_signature_changes.append(pretty_midi.TimeSignature(numerator, denominator, 0.0))
    for track in arrangement.tracks:
        instrument = pretty_midi.Instrument(program=track.program, is_drum=track.is_drums, name=track.role)
        for pitch, start, end, velocity in track.notes:
            instrument.notes.append(pretty_midi.Note(int(velocity), int(pitch), float(start), float(end)))
        midi.instruments.append(instrument)
    midi.write(str(path))


def caption_rng(seed: int, clip_id: str) -> np.random.Generator:
    """A v2 clip's caption generator: from its seed and id alone, apart from how the clip was rendered."""
    split, index = clip_id.rsplit("-", 1)
    return np.random.default_rng([seed, SPLITS_V2.index(split), int(index), CAPTION_STREAM])


CAPTION_STREAM = 7  # a fourth seed word no render generator uses (theirs is a candidate index)


def v2_captions(attributes: dict, lyrics: str | None, clip_id: str, seed: int):
    return write_captions(
        attributes, lyrics, caption_rng(seed, clip_id), CAPTIONS_PER_CLIP, STATED_IN_EVERY_CAPTION
    )


def recaption(out_dir: Path) -> dict[str, int]:
    """Rewrite a v2 corpus's captions (records and manifests) with the current caption rules, as a fresh
    build would write them; audio, MIDI and attributes stay as they are. Returns the clips per split."""
    config_path = out_dir / "build_config.json"
    config = json.loads(config_path.read_text())
    if config.get("recipe") != "v2":
        raise ValueError(
            f"{out_dir} is not a recipe v2 corpus; v1 captions are fixed by the shipped checkpoints"
        )
    counts = {}
    for split in SPLITS_V2:
        manifest = out_dir / f"{split}.jsonl"
        rows = [json.loads(line) for line in manifest.read_text().splitlines()]
        for row in rows:
            captions, all_facts = v2_captions(row["attributes"], row["lyrics"], row["id"], config["seed"])
            row.update(
                caption=captions[0], caption_facts=all_facts[0], captions=captions, captions_facts=all_facts
            )
            record_path = out_dir / "records" / split / f"{row['id']}.json"
            record_path.write_text(json.dumps(row, ensure_ascii=False))
        tmp = manifest.with_suffix(".jsonl.tmp")
        tmp.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n")
        os.replace(tmp, manifest)
        counts[split] = len(rows)
    config["caption_version"] = CAPTION_VERSION
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    return counts


_worker: ClipMaker | None = None


def _init_worker(out_dir: Path, soundfont: Path | None, renderers: Renderers | None) -> None:
    global _worker
    _worker = ClipMaker(out_dir, soundfont, renderers)


def _run_job(job: ClipJob) -> dict:
    return _worker.make(job)


@dataclass
class BuildReport:
    out_dir: str
    size: str
    seed: int
    soundfont: str  # v1's soundfont; v2: the training renderers, comma-separated
    counts: dict[str, int]
    seconds: float
    clips_per_second: float
    disk_bytes: int
    sources: dict[str, int]
    recipe: str = "v1"
    held_out_renderer: str | None = None


def build_corpus(
    out_dir: Path,
    size: str = "tiny",
    seed: int = 0,
    workers: int = 1,
    symbolic_dir: Path | None = None,
    soundfont: str | None = None,
    sources: tuple[str, ...] = ALL_SOURCES,
    recipe: str = "v2",
) -> BuildReport:
    if recipe not in RECIPES:
        raise ValueError(f"recipe is one of {RECIPES}, got {recipe!r}")
    symbolic_dir = symbolic_dir if symbolic_dir is not None else default_symbolic_dir()
    if recipe == "v1":
        spec = SIZES[size]
        soundfont_path, renderers = find_soundfont(soundfont or spec.soundfont), None
        renderer_names = soundfont_path.name
    else:
        if soundfont is not None:
            raise ValueError("--soundfont is for --recipe v1; v2 draws each part's soundfont from its set")
        spec = SIZES_V2[size]
        soundfont_path, renderers = None, spec.renderers
        for name in renderers.all:  # fail now, not in a worker: missing or reserved soundfonts
            find_soundfont(name)
        renderer_names = ",".join(renderers.training + renderers.drum_kits)
    splits = tuple(spec.clips)
    refs = list_pieces(symbolic_dir, sources)
    if not refs:
        raise FileNotFoundError("no symbolic sources found (give --symbolic DIR or install music21)")
    if recipe == "v2":
        # music21 lists 20 chorales twice. v1 plans both listings and files their clips under the first
        # listing's split (`piece_splits`); v2 plans each composition once, so that no clip changes split:
        # an unseen clip filed under train would bring the held-out soundfont into training.
        refs = list(dict.fromkeys(refs))
    assignment = assign_splits(refs, spec.clips, seed)
    jobs = plan_jobs(assignment, spec.clips, seed, spec.max_pieces_per_source)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Resuming reuses finished clips, which is only right if they were made by the same recipe.
    if recipe == "v1":  # exactly the keys v1 builds have always written, so they resume
        config = {
            "size": size,
            "seed": seed,
            "soundfont": soundfont_path.name,
            "sources": list(sources),
            "symbolic_dir": str(symbolic_dir) if symbolic_dir else None,
        }
    else:
        config = {
            "recipe": recipe,
            "size": size,
            "seed": seed,
            "renderers": list(renderers.training + renderers.drum_kits),
            "held_out_renderers": [renderers.held_out],
            "captions_per_clip": CAPTIONS_PER_CLIP,
            "caption_version": CAPTION_VERSION,
            "splits": dict(spec.clips),
            "sources": list(sources),
            "symbolic_dir": str(symbolic_dir) if symbolic_dir else None,
        }
    config_path = out_dir / "build_config.json"
    if config_path.is_file() and json.loads(config_path.read_text()) != config:
        raise FileExistsError(
            f"{out_dir} holds a corpus built with {config_path.read_text()}; use another --out "
            '(a corpus without a "recipe" is v1: resume it with --recipe v1; a v2 corpus with older '
            "captions: python -m train.corpus --recaption --out DIR first)"
        )
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    log.info(
        "%d pieces (%s); %d clips to make with %s, %d worker(s)",
        len(refs),
        ", ".join(f"{s}={sum(r.source == s for r in refs)}" for s in ALL_SOURCES),
        len(jobs),
        renderer_names,
        workers,
    )

    # Clips of one piece run back to back so each worker parses a composition once, not once per clip;
    # pieces in a hashed order mix the sources, so progress and ETA are representative from the start.
    # The manifests are written in plan order afterwards.
    jobs_by_piece = sorted(
        jobs,
        key=lambda job: (
            zlib.crc32(job.candidates[0].id.encode()),
            job.candidates[0].id,
            job.split,
            job.index,
        ),
    )
    started = time.perf_counter()
    records: list[dict] = []
    if workers <= 1:
        _init_worker(out_dir, soundfont_path, renderers)
        # A generator, not map(): a StopIteration escaping a job must fail loudly, not end the build early.
        results = (_run_job(job) for job in jobs_by_piece)
        pool = None
    else:
        import multiprocessing

        pool = multiprocessing.get_context("spawn").Pool(
            workers, _init_worker, (out_dir, soundfont_path, renderers)
        )
        results = pool.imap(_run_job, jobs_by_piece, chunksize=4)
    try:
        for done, record in enumerate(results, 1):
            records.append(record)
            if done % 50 == 0 or done == len(jobs):
                elapsed = time.perf_counter() - started
                log.info(
                    "%d/%d clips, %.1f s elapsed, ETA %.0f s",
                    done,
                    len(jobs),
                    elapsed,
                    elapsed / done * (len(jobs) - done),
                )
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    seconds = time.perf_counter() - started

    if len(records) != len(jobs):
        raise RuntimeError(f"made {len(records)} clips of {len(jobs)}")
    records.sort(key=lambda r: r["id"])
    split_of = piece_splits(records, splits)
    if recipe == "v2":
        moved = [r["id"] for r in records if not r["id"].startswith(split_of[r["piece"]] + "-")]
        if moved:
            raise AssertionError(f"clips planned in one split but filed in another: {moved[:5]}")
    for split in splits:
        lines = [json.dumps(r, ensure_ascii=False) for r in records if split_of[r["piece"]] == split]
        tmp = out_dir / f"{split}.jsonl.tmp"
        tmp.write_text("\n".join(lines) + "\n")
        os.replace(tmp, out_dir / f"{split}.jsonl")  # manifests appear whole or not at all
    check_splits_disjoint(out_dir, splits)
    if renderers is not None:
        check_unseen_renderers(out_dir, renderers)

    disk = sum(p.stat().st_size for p in out_dir.rglob("*") if p.is_file())
    report = BuildReport(
        out_dir=str(out_dir),
        size=size,
        seed=seed,
        soundfont=renderer_names,
        counts={s: sum(split_of[r["piece"]] == s for r in records) for s in splits},
        seconds=round(seconds, 1),
        clips_per_second=round(len(jobs) / max(seconds, 1e-9), 3),
        disk_bytes=disk,
        sources={s: sum(r["source"] == s for r in records) for s in ALL_SOURCES},
        recipe=recipe,
        held_out_renderer=renderers.held_out if renderers else None,
    )
    (out_dir / "build_report.json").write_text(json.dumps(asdict(report), indent=2) + "\n")
    log.info("done: %s", json.dumps(asdict(report)))
    return report


def piece_splits(records: list[dict], splits: tuple[str, ...] = SPLITS) -> dict[str, str]:
    """Each composition's split: the first split (train, validation, test, unseen) any of its clips was
    planned in.

    A source can list one composition twice (music21 ships some chorales in two encodings); its
    clips then all go to the split of its first listing — keeping their ids — so no composition is
    ever in two splits.
    """
    split_of: dict[str, str] = {}
    for split in splits:
        for record in records:
            if record["id"].startswith(split + "-"):
                split_of.setdefault(record["piece"], split)
    return split_of


def check_splits_disjoint(out_dir: Path, splits: tuple[str, ...] = SPLITS) -> None:
    seen: dict[str, str] = {}
    for split in splits:
        for line in (out_dir / f"{split}.jsonl").read_text().splitlines():
            piece = json.loads(line)["piece"]
            if seen.setdefault(piece, split) != split:
                raise AssertionError(f"piece {piece} is in both {seen[piece]} and {split}")


def part_renderers(record: dict) -> set[str]:
    """Every soundfont a v2 clip was rendered with (its pitched parts and its drums)."""
    attributes = record["attributes"]
    return set(attributes["renderers"]) | ({attributes["drum_renderer"]} - {None})


def check_unseen_renderers(out_dir: Path, renderers: Renderers) -> None:
    """The unseen split is rendered by the held-out soundfont alone, which no other split uses."""
    for split in SPLITS_V2:
        for line in (out_dir / f"{split}.jsonl").read_text().splitlines():
            record = json.loads(line)
            used = part_renderers(record)
            if not (used == {renderers.held_out} if split == "unseen" else renderers.held_out not in used):
                raise AssertionError(f"{record['id']} in {split} was rendered with {sorted(used)}")
