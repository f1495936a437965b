"""``musiccap bench`` — speed, memory and training cost, measured; writes docs/BENCHMARKS.md.

Every figure is a median (and p90) over repeated runs on this machine, with the machine, thread
count, versions and command recorded beside it. Targets sit next to the measured values; they
are met or missed here, never asserted in tests. Each captioner is measured in its own process
so its peak memory (max RSS) is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from musiccap.registry import REPO

DOCS = REPO / "docs"
EXAMPLE = REPO / "examples" / "real-parrotte-desert.ogg"
TARGETS = {
    "muscaps": 0.3,
    "rgmc": 0.6,
    "blap": 0.6,
    "alcap": 0.6,
    "csa": 0.6,
    "musicnn_features": 0.3,
    "compare_request": 3.0,
    "app_start": 20.0,
}


def stop_app(process: subprocess.Popen) -> None:
    """End a served app: SIGTERM, then SIGKILL after 10 s (uvicorn waits for open keep-alive connections)."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def summary(values: list[float]) -> dict:
    values = sorted(values)
    return {
        "median": round(statistics.median(values), 4),
        "p90": round(float(np.percentile(values, 90)), 4),
        "runs": len(values),
    }


def machine() -> dict:
    import gradio
    import torch
    import transformers

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "gradio": gradio.__version__,
        "numpy": np.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def matmul_gflops(size: int = 1024, runs: int = 10) -> float:
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    rates = []
    for _ in range(runs):
        started = time.perf_counter()
        a @ b
        rates.append(2 * size**3 / (time.perf_counter() - started) / 1e9)
    return round(statistics.median(rates), 1)


def measure_model(name: str, runs: int) -> dict:
    """Runs in a child process: load, cold and warm latency, tokens/s, FLOPs, batch throughput, max RSS."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from musiccap.audio import load_audio, windows
    from musiccap.clip import Clip
    from musiccap.features import audio_features
    from musiccap.studio import Studio

    started = time.perf_counter()
    studio = Studio(models=[name])
    load_s = time.perf_counter() - started
    captioner = studio.captioners[name]
    window = windows(load_audio(EXAMPLE), "first")[0]
    clip = Clip(window)
    audio_features(clip)  # shared by every captioner in the app: timed separately
    started = time.perf_counter()
    result = captioner.caption(clip)
    cold = time.perf_counter() - started
    warm = []
    for _ in range(runs):
        started = time.perf_counter()
        result = captioner.caption(clip)
        warm.append(time.perf_counter() - started)
    with FlopCounterMode(display=False) as counter:
        captioner.caption(clip)
    flops = counter.get_total_flops()
    clips = [Clip(None, clip_id=f"c{i}", features=dict(clip.features)) for i in range(16)]
    started = time.perf_counter()
    captioner.caption_batch(clips)
    batch_rate = len(clips) / (time.perf_counter() - started)
    median = statistics.median(warm)
    return {
        "load_s": round(load_s, 3),
        "cold_s": round(cold, 4),
        "warm": summary(warm),
        "tokens": len(result.tokens),
        "tokens_per_s": round(len(result.tokens) / median, 1) if median else None,
        "forward_gflops_per_caption": round(flops / 1e9, 3),
        "batch_clips_per_s": round(batch_rate, 2),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "decoding": captioner.default_decoding.to_dict() if hasattr(captioner, "default_decoding") else {},
        "threads": torch.get_num_threads(),
    }


def measure_features(runs: int) -> dict:
    from musiccap.audio import load_audio, windows
    from musiccap.features import embedded_encoder

    window = windows(load_audio(EXAMPLE), "first")[0]
    encoder = embedded_encoder()
    started = time.perf_counter()
    encoder(window.samples, window.sample_rate)
    cold = time.perf_counter() - started
    warm = []
    for _ in range(runs):
        started = time.perf_counter()
        encoder(window.samples, window.sample_rate)
        warm.append(time.perf_counter() - started)
    return {"cold_s": round(cold, 4), "warm": summary(warm)}


def measure_long_track(minutes: float = 5.0) -> dict:
    from musiccap.audio import from_array, load_audio
    from musiccap.studio import Studio

    base = load_audio(EXAMPLE)
    repeats = int(np.ceil(minutes * 60 / base.duration_s))
    long_audio = from_array(
        np.tile(base.samples, repeats)[: int(minutes * 60 * base.sample_rate)], base.sample_rate
    )
    studio = Studio()
    started = time.perf_counter()
    n = 0
    for clip in studio.clips(long_audio, "all", max_windows=int(minutes * 6)):
        for name in studio.captioners:
            studio.caption_clip(clip, name)
            n += 1
    return {"minutes": minutes, "captions": n, "seconds": round(time.perf_counter() - started, 2)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure_app(starts: int, requests: int, threads: tuple[str, ...] = ("1",)) -> dict:
    """Start ``python app.py`` ``starts`` times per intra-op thread setting (``MUSICCAP_TORCH_THREADS``) and
    time ``requests`` compare requests after each start. Settings take turns start by start, so a machine
    whose speed drifts weighs on each alike. The first setting is reported as the app."""
    from gradio_client import Client, handle_file

    start_times = {n: [] for n in threads}
    latencies = {n: [] for n in threads}
    for _ in range(starts):
        for n in threads:
            port = _free_port()
            env = {**os.environ, "PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False"}
            env["MUSICCAP_ARENA_DB"] = str(Path(tempfile.mkdtemp()) / "votes.sqlite")
            env["MUSICCAP_TORCH_THREADS"] = n
            started = time.perf_counter()
            process = subprocess.Popen(
                [sys.executable, "app.py"],
                cwd=REPO,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            url = f"http://127.0.0.1:{port}/"
            try:
                while True:
                    try:
                        urllib.request.urlopen(url, timeout=2)
                        break
                    except OSError:
                        if process.poll() is not None or time.perf_counter() - started > 300:
                            raise RuntimeError("the app did not start") from None
                        time.sleep(0.2)
                start_times[n].append(time.perf_counter() - started)
                client = Client(url, verbose=False)
                arguments = (handle_file(str(EXAMPLE)), "first", "", "", 0, 0, -1, False, 0)
                client.predict(*arguments, api_name="/compare")  # first request warms caches
                for _ in range(requests):
                    began = time.perf_counter()
                    client.predict(*arguments, api_name="/compare")
                    latencies[n].append(time.perf_counter() - began)
            finally:
                stop_app(process)
    by_threads = {
        n: {"start": summary(start_times[n]), "compare_request": summary(latencies[n])} for n in threads
    }
    return {**by_threads[threads[0]], "torch_threads": threads[0], "by_threads": by_threads}


def training_throughput() -> dict:
    rows = {}
    for training in sorted((REPO / "checkpoints").glob("*/training.json")):
        data = json.loads(training.read_text())
        rows[training.parent.name] = {
            "samples_per_s": data.get("train_samples_per_s"),
            "train_time_s": data.get("train_time_s"),
            "epochs": data.get("epochs_run"),
            "n_train": data.get("n_train"),
        }
    return rows


def corpus_rate() -> dict:
    from musiccap.registry import REPO as repo

    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "train.corpus", "--out", out, "--size", "tiny", "--seed", "0"],
            cwd=repo,
            check=True,
            capture_output=True,
        )
        elapsed = time.perf_counter() - started
        n = sum(
            len(manifest.read_text().splitlines()) for manifest in Path(out).glob("*.jsonl")
        )  # v2: 4 splits
    return {
        "clips": n,
        "seconds": round(elapsed, 2),
        "clips_per_s": round(n / elapsed, 3),
        "soundfont": "tiny",
    }


def _fmt(value, target=None) -> str:
    if value is None:
        return "—"
    text = f"{value:.3f}" if isinstance(value, float) else str(value)
    if target is not None:
        text += " ✅" if value <= target else " ❌"
    return text


def write_markdown(results: dict, path: Path) -> None:
    m = results["machine"]
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `{results['command']}` on {m['date']}.",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch threads {m['torch_threads']}; Python {m['python']}, "
        f"torch {m['torch']}, transformers {m['transformers']}, gradio {m['gradio']}, numpy {m['numpy']}. "
        f"Measured fp32 matmul rate (1024², median of 10): **{results['matmul_gflops']} GFLOP/s**.",
        "",
        "Latencies are medians (p90) over repeated runs on one 10 s clip; ✅/❌ against the target.",
        "",
        "## Shared features",
        "",
        "| what | cold (s) | warm median (s) | p90 (s) | target (s) |",
        "|---|---|---|---|---|",
    ]
    f = results.get("features")
    if f:
        lines.append(
            f"| embedded audio features (musicnn + chroma/key + tempogram) | {f['cold_s']} | "
            f"{_fmt(f['warm']['median'], TARGETS['musicnn_features'])} | {f['warm']['p90']} | "
            f"{TARGETS['musicnn_features']} |"
        )
    lines += [
        "",
        "## Captioners (features already computed, default decoding)",
        "",
        "| model | load (s) | cold (s) | warm median (s) | p90 (s) | target (s) | tokens/s | batch clips/s "
        "| max RSS (MB) | GFLOP/caption | % of matmul peak |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in results.get("models", {}).items():
        if "error" in row:
            lines.append(f"| {name} | failed: {row['error']} |" + " |" * 10)
            continue
        peak = results["matmul_gflops"]
        achieved = row["forward_gflops_per_caption"] / row["warm"]["median"] if row["warm"]["median"] else 0
        lines.append(
            f"| {name} | {row['load_s']} | {row['cold_s']} | {_fmt(row['warm']['median'], TARGETS.get(name))} | "
            f"{row['warm']['p90']} | {TARGETS.get(name, '—')} | {row['tokens_per_s']} | {row['batch_clips_per_s']} | "
            f"{row['max_rss_mb']} | {row['forward_gflops_per_caption']} | {100 * achieved / peak:.2f} % |"
        )
    app = results.get("app")
    if app:
        lines += [
            "",
            "## The running app",
            "",
            f"`python app.py` as served, on {app.get('torch_threads', '?')} intra-op torch thread(s) "
            "(`MUSICCAP_TORCH_THREADS`, default 1: see `serving_threads` in musiccap/ui/app.py); the request "
            "goes through the Gradio client.",
            "",
            "| what | median (s) | p90 (s) | runs | target (s) |",
            "|---|---|---|---|---|",
            f"| start (process start → page served) | {_fmt(app['start']['median'], TARGETS['app_start'])} | "
            f"{app['start']['p90']} | {app['start']['runs']} | {TARGETS['app_start']} |",
            f"| compare request (every caption + neighbour + heatmaps + CLAP scores) | "
            f"{_fmt(app['compare_request']['median'], TARGETS['compare_request'])} | {app['compare_request']['p90']} | "
            f"{app['compare_request']['runs']} | {TARGETS['compare_request']} |",
        ]
        if len(app.get("by_threads", {})) > 1:
            lines += [
                "",
                "The same requests on other thread settings (started in turn with the served one):",
                "",
            ]
            lines += [
                "| intra-op threads | compare request median (s) | p90 (s) | runs |",
                "|---|---|---|---|",
            ]
            for n, row in app["by_threads"].items():
                request = row["compare_request"]
                lines.append(f"| {n} | {request['median']} | {request['p90']} | {request['runs']} |")
    long = results.get("long_track")
    if long:
        lines += [
            "",
            f"**5-minute track, windowed mode**: {long['captions']} captions over {long['minutes']} min "
            f"of audio in {long['seconds']} s (every captioner, every 10 s window).",
        ]
    if results.get("training"):
        lines += [
            "",
            "## Training",
            "",
            "| checkpoint | train clips | epochs | time (s) | samples/s |",
            "|---|---|---|---|---|",
        ]
        for name, row in results["training"].items():
            lines.append(
                f"| {name} | {row['n_train']} | {row['epochs']} | {row['train_time_s']} | {row['samples_per_s']} |"
            )
    if results.get("corpus"):
        c = results["corpus"]
        lines += [
            "",
            f"**Corpus build rate** (`--size tiny`, TimGM6mb, incl. process start): {c['clips']} clips in "
            f"{c['seconds']} s = {c['clips_per_s']} clips/s. The full build is measured in docs/CORPUS.md.",
        ]
    lines += [
        "",
        "Roofline: GFLOP/caption is the forward FLOPs of one default-decoding caption counted by "
        "`torch.utils.flop_counter`; % of peak = (GFLOP / warm latency) / matmul rate. Small decoders are "
        "far from the peak because per-step overhead, not arithmetic, dominates.",
    ]
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="musiccap bench", description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--app-starts", type=int, default=3)
    parser.add_argument("--app-requests", type=int, default=10)
    parser.add_argument("--skip", nargs="*", default=[], help="parts to skip: app long corpus")
    parser.add_argument(
        "--app-threads",
        nargs="+",
        default=[os.environ.get("MUSICCAP_TORCH_THREADS", "1")],
        help="MUSICCAP_TORCH_THREADS settings to serve the app with, the first reported (e.g. 1 2)",
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure_model(args.child, args.runs)))
        return 0
    from musiccap.studio import Studio

    results = {"command": "musiccap bench " + " ".join(argv or sys.argv[2:]), "machine": machine()}
    results["matmul_gflops"] = matmul_gflops()
    results["features"] = measure_features(args.runs)
    results["models"] = {}
    for name in Studio().captioners:
        run = subprocess.run(
            [sys.executable, "-m", "musiccap.bench", "--child", name, "--runs", str(args.runs)],
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        try:
            results["models"][name] = json.loads(run.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            results["models"][name] = {"error": (run.stderr.strip().splitlines() or ["no output"])[-1]}
    if "app" not in args.skip:
        results["app"] = measure_app(args.app_starts, args.app_requests, tuple(args.app_threads))
    if "long" not in args.skip:
        results["long_track"] = measure_long_track()
    results["training"] = training_throughput()
    if "corpus" not in args.skip:
        results["corpus"] = corpus_rate()
    DOCS.mkdir(exist_ok=True)
    (DOCS / "benchmarks.json").write_text(json.dumps(results, indent=2) + "\n")
    write_markdown(results, DOCS / "BENCHMARKS.md")
    print(json.dumps(results, indent=2) if args.json else f"wrote {DOCS / 'BENCHMARKS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
