"""The long-audio path with windows one at a time (A) and batched per captioner (B), in turn.

    python scripts/long_track_ab.py [--rounds 3] [--minutes 3]

Each run is the whole ``musiccap caption TRACK --window all --model all --json`` process on the example
clip tiled to a track; A sets ``LONG_AUDIO_BATCH`` to 1 (the path before batching), B keeps the default.
Prints each run, the medians, the load, and whether the two gave the same captions and CLAP scores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from musiccap.bench import long_track_file
from musiccap.registry import REPO

RUN = (
    "import sys, musiccap.studio as studio; {patch}from musiccap.cli import main; "
    "sys.exit(main(['caption', sys.argv[1], '--window', 'all', '--model', 'all', '--json']))"
)
VARIANTS = {"A: one window at a time": "studio.LONG_AUDIO_BATCH = 1; ", "B: windows batched": ""}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=3.0)
    args = parser.parse_args()
    seconds = {name: [] for name in VARIANTS}
    outputs = {}
    with tempfile.TemporaryDirectory() as folder:
        track = long_track_file(Path(folder), args.minutes)
        for round_ in range(args.rounds):
            for name, patch in VARIANTS.items():
                started = time.perf_counter()
                run = subprocess.run(
                    [sys.executable, "-c", RUN.format(patch=patch), str(track)],
                    cwd=REPO,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                seconds[name].append(time.perf_counter() - started)
                outputs[name] = run.stdout.splitlines()
                load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
                print(
                    f"{name} round {round_ + 1}: {seconds[name][-1]:.1f} s, {len(outputs[name])} captions, load {load}"
                )
    for name, values in seconds.items():
        print(f"{name}: median {statistics.median(values):.1f} s over {len(values)} runs")
    a, b = outputs.values()
    print("same captions and CLAP scores:", [strip(row) for row in a] == [strip(row) for row in b])
    return 0


def strip(row: str) -> dict:
    """A JSON row without its timing (latency_s differs run to run)."""
    record = json.loads(row)
    record.pop("latency_s")
    return record


if __name__ == "__main__":
    sys.exit(main())
