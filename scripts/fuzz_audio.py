"""Seeded byte-mutation fuzzing of ``musiccap.audio.load_audio``: only ``AudioError`` may escape it.

``python scripts/fuzz_audio.py --cases 10000 [--seed 0] [--files-every 4]`` makes small valid WAV, FLAC,
OGG and MP3 files, damages copies of them (flipped bits, overwritten, inserted and deleted bytes,
truncation, a damaged header, extreme header fields) and decodes each one. Every case goes through
``load_audio(bytes)``; every ``--files-every``-th case is also written to a file and decoded from its
path, which takes the ffmpeg fallback when libsndfile refuses the file. Any exception other than
``AudioError`` is a failure: the script prints each with its case (format, seed, mutations) and exits 1.
``tests/test_audio_fuzz.py`` runs the same cases at a smaller count.
"""

from __future__ import annotations

import argparse
import io
import random
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from musiccap.audio import AudioError, load_audio  # noqa: E402

SEED_RATE = 22050
SEED_SECONDS = 0.5
FORMATS = ("wav", "flac", "ogg", "mp3")
# 32-bit values that break size, rate and channel fields in interesting ways
EXTREME_WORDS = (0, 1, 2, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFF, 0x10000, 15873, 192001, 7999)


def _tone(channels: int) -> np.ndarray:
    t = np.arange(int(SEED_SECONDS * SEED_RATE)) / SEED_RATE
    left = 0.4 * np.sin(2 * np.pi * 440 * t)
    right = 0.3 * np.sin(2 * np.pi * 660 * t)
    return np.stack([left, right][:channels], axis=1).astype(np.float32)


def _encode(samples: np.ndarray, fmt: str) -> bytes:
    if fmt == "mp3" and "MP3" not in sf.available_formats():
        return _encode_mp3_with_ffmpeg(samples)
    buffer = io.BytesIO()
    subtype = {"wav": "PCM_16", "flac": "PCM_16", "ogg": "VORBIS", "mp3": "MPEG_LAYER_III"}[fmt]
    sf.write(buffer, samples, SEED_RATE, format=fmt.upper(), subtype=subtype)
    return buffer.getvalue()


def _encode_mp3_with_ffmpeg(samples: np.ndarray) -> bytes:
    if shutil.which("ffmpeg") is None:
        raise RuntimeError("neither libsndfile nor ffmpeg can write MP3 here")
    with tempfile.TemporaryDirectory() as folder:
        wav, mp3 = Path(folder) / "seed.wav", Path(folder) / "seed.mp3"
        sf.write(wav, samples, SEED_RATE)
        subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(wav), str(mp3)], check=True)
        return mp3.read_bytes()


def seed_files() -> dict[str, list[bytes]]:
    """Valid files per format: mono and stereo, so channel fields have something to disagree with."""
    return {fmt: [_encode(_tone(channels), fmt) for channels in (1, 2)] for fmt in FORMATS}


# ----------------------------------------------------------------------------------------------------
# Mutations: each takes the bytes and a seeded RNG and returns damaged bytes and what it did


def flip_bits(data: bytearray, rng: random.Random) -> str:
    count = rng.randint(1, 16)
    for _ in range(count):
        position = rng.randrange(len(data))
        data[position] ^= 1 << rng.randrange(8)
    return f"flip{count}"


def overwrite_bytes(data: bytearray, rng: random.Random) -> str:
    start = rng.randrange(len(data))
    length = rng.randint(1, 64)
    data[start : start + length] = rng.randbytes(min(length, len(data) - start))
    return f"overwrite@{start}+{length}"


def insert_bytes(data: bytearray, rng: random.Random) -> str:
    start = rng.randrange(len(data) + 1)
    length = rng.randint(1, 256)
    data[start:start] = rng.randbytes(length)
    return f"insert@{start}+{length}"


def delete_bytes(data: bytearray, rng: random.Random) -> str:
    start = rng.randrange(len(data))
    length = rng.randint(1, 512)
    del data[start : start + length]
    return f"delete@{start}+{length}"


def truncate(data: bytearray, rng: random.Random) -> str:
    # short files (inside the header) are the interesting ones, so half the cuts fall in the first 128 bytes
    keep = rng.randrange(min(128, len(data))) if rng.random() < 0.5 else rng.randrange(len(data))
    del data[keep:]
    return f"truncate@{keep}"


def damage_header(data: bytearray, rng: random.Random) -> str:
    start = rng.randrange(min(64, len(data)))
    length = rng.randint(1, 16)
    fill = rng.choice((b"\x00", b"\xff", None))
    chunk = rng.randbytes(length) if fill is None else fill * length
    data[start : start + length] = chunk[: max(0, len(data) - start)]
    return f"header@{start}+{length}"


def extreme_word(data: bytearray, rng: random.Random) -> str:
    """A 32-bit field in the header (sizes, rate, channels, frame counts) set to an extreme value."""
    if len(data) < 8:
        return "word-skipped"
    start = rng.randrange(0, min(96, len(data) - 4))
    value = rng.choice(EXTREME_WORDS)
    data[start : start + 4] = value.to_bytes(4, rng.choice(("little", "big")))
    return f"word@{start}={value}"


MUTATIONS = (flip_bits, overwrite_bytes, insert_bytes, delete_bytes, truncate, damage_header, extreme_word)


@dataclass
class Case:
    index: int
    fmt: str
    mutations: list[str]
    data: bytes


def make_case(index: int, seeds: dict[str, list[bytes]], base_seed: int) -> Case:
    """Case ``index`` of a run: the same seed and index give the same bytes on every machine."""
    rng = random.Random(f"{base_seed}:{index}")
    fmt = FORMATS[index % len(FORMATS)]
    data = bytearray(rng.choice(seeds[fmt]))
    applied = []
    for _ in range(rng.randint(1, 3)):
        if not data:
            break
        applied.append(rng.choice(MUTATIONS)(data, rng))
    return Case(index, fmt, applied, bytes(data))


@dataclass
class Report:
    cases: int = 0
    outcomes: Counter = field(default_factory=Counter)  # (format, "decoded" | "AudioError" | exception)
    failures: list[str] = field(default_factory=list)
    slowest_s: float = 0.0

    def summary(self) -> str:
        by_format: dict[str, Counter] = {}
        for (fmt, outcome), count in self.outcomes.items():
            by_format.setdefault(fmt, Counter())[outcome] = count
        lines = [f"{self.cases} decodes, {len(self.failures)} failures, slowest {self.slowest_s:.2f} s"]
        for fmt in sorted(by_format):
            lines.append(f"  {fmt}: " + ", ".join(f"{k} {v}" for k, v in sorted(by_format[fmt].items())))
        return "\n".join(lines)


def _decode(report: Report, case: Case, source, label: str) -> None:
    started = time.perf_counter()
    try:
        load_audio(source)
        outcome = "decoded"
    except AudioError:
        outcome = "AudioError"
    except Exception as error:  # the point of the fuzzer: anything else is a bug to report
        outcome = type(error).__name__
        report.failures.append(
            f"case {case.index} ({case.fmt}, {label}, {' '.join(case.mutations)}): "
            f"{type(error).__name__}: {error}\n{traceback.format_exc(limit=4)}"
        )
    report.slowest_s = max(report.slowest_s, time.perf_counter() - started)
    report.cases += 1
    report.outcomes[(case.fmt, outcome)] += 1


def fuzz(cases: int, *, seed: int = 0, files_every: int = 0, folder: Path | None = None) -> Report:
    """Decode ``cases`` damaged files from bytes, and every ``files_every``-th one from a file too."""
    seeds = seed_files()
    report = Report()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(folder or scratch)
        for index in range(cases):
            case = make_case(index, seeds, seed)
            _decode(report, case, case.data, "bytes")
            if files_every and index % files_every == 0:
                path = folder / f"case-{index}.{case.fmt}"
                path.write_bytes(case.data)
                _decode(report, case, path, "file")
                path.unlink()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--files-every", type=int, default=4, help="0: bytes only")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    report = fuzz(args.cases, seed=args.seed, files_every=args.files_every)
    print(report.summary())
    print(f"{time.perf_counter() - started:.0f} s")
    for failure in report.failures[:50]:
        print(failure)
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
