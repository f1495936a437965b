"""``python -m train.diagnostics.latency_against_served STAGED [--served DIR] [--models NAME ...]``

Before a retrained checkpoints folder (``python -m train.pipeline --checkpoints STAGED``) is copied over the
served one: is any captioner slower than the one it would replace? Each pair is timed interleaved on the
same window with the same thread count, so that whatever else loads the machine weighs on both alike:
absolute seconds do not travel between machines or loads, the ratio does. Warm latency as ``musiccap bench``
measures it: the clip's features (and the analysis a conditioned captioner reads) are made by a first,
untimed caption, then each run times ``caption`` alone. Medians and p90 of ``--runs`` runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from musiccap.bench import EXAMPLE, summary
from musiccap.registry import CAPTIONER, CHECKPOINTS, REGISTRY


def compared_models(served: Path, staged: Path, wanted: list[str] | None) -> tuple[list[str], list[str]]:
    """The captioners both folders hold (in registry order), and the wanted ones one of them lacks."""
    names = wanted or [name for name, entry in REGISTRY.items() if entry.role == CAPTIONER]
    folder = {name: REGISTRY[name].source if name in REGISTRY else name for name in names}
    held = [
        n for n in names if all((root / folder[n] / "config.json").is_file() for root in (served, staged))
    ]
    return held, [name for name in names if name not in held]


def interleaved_latency(served: Path, staged: Path, names: list[str], clip_file: Path, runs: int) -> dict:
    import torch

    from musiccap.audio import load_audio, windows
    from musiccap.clip import Clip
    from musiccap.features import audio_features
    from musiccap.models.base import load_captioner

    window = windows(load_audio(clip_file), "first")[0]
    results = {}
    for name in names:
        source = REGISTRY[name].source if name in REGISTRY else name
        models = {"served": load_captioner(served / source), "staged": load_captioner(staged / source)}
        clip = Clip(window)
        audio_features(clip)
        captions = {side: model.caption(clip).text for side, model in models.items()}  # untimed: features
        seconds: dict[str, list[float]] = {side: [] for side in models}
        for _ in range(runs):
            for side, model in models.items():
                started = time.perf_counter()
                model.caption(clip)
                seconds[side].append(time.perf_counter() - started)
        results[name] = {side: summary(values) for side, values in seconds.items()}
        results[name]["ratio"] = round(
            results[name]["staged"]["median"] / results[name]["served"]["median"], 3
        )
        results[name]["captions"] = captions
    return {"clip": str(clip_file), "runs": runs, "threads": torch.get_num_threads(), "models": results}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m train.diagnostics.latency_against_served", description=__doc__
    )
    parser.add_argument("staged", type=Path, help="the retrained checkpoints folder")
    parser.add_argument(
        "--served", type=Path, default=CHECKPOINTS, help="default: the repository's checkpoints/"
    )
    parser.add_argument(
        "--models", nargs="*", help="registry names (default: every captioner both folders hold)"
    )
    parser.add_argument("--clip", type=Path, default=EXAMPLE)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads, as the app serves")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    names, missing = compared_models(args.served, args.staged, args.models)
    for name in missing:
        print(f"{name}: not in both folders, not compared", file=sys.stderr)
    report = interleaved_latency(args.served, args.staged, names, args.clip, args.runs)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{report['runs']} runs each, interleaved, {report['threads']} thread(s), {report['clip']}")
    print("| captioner | served median (p90) s | staged median (p90) s | staged / served |")
    print("|---|---:|---:|---:|")
    for name, result in report["models"].items():
        served, staged = result["served"], result["staged"]
        print(
            f"| {name} | {served['median']:.3f} ({served['p90']:.3f}) | {staged['median']:.3f} "
            f"({staged['p90']:.3f}) | {result['ratio']:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
