"""``musiccap bench`` — speed, memory and training cost, measured; writes docs/BENCHMARKS.md.

Every figure is a median (and p90) over repeated runs on this machine, with the machine, thread
count, versions and command recorded beside it. Targets sit next to the measured values; they
are met or missed here, never asserted in tests. Each captioner is measured in its own process
so its peak memory (max RSS) is its own.

Absolute seconds depend on the machine and on what else runs on it, so the app is also quoted as a
ratio to the LP-MusicCaps-shaped anchor (musiccap/anchor.py), timed in the same run and interleaved
with the app's requests and the long-track runs (one anchor caption after each), so that a load that
comes and goes weighs on both alike.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import platform
import re
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from musiccap.registry import REPO

DOCS = REPO / "docs"
EXAMPLE = REPO / "examples" / "real-parrotte-desert.ogg"
# The app's requests and the long track cycle through every bundled clip: one clip over and over would
# let the caches keyed by content (CLAP text embeddings of repeated captions) flatter the warm figures
BENCH_CLIPS = tuple(sorted(p for p in (REPO / "examples").iterdir() if p.suffix in (".ogg", ".flac")))
TARGETS = {
    "muscaps": 0.3,
    "rgmc": 0.6,
    "blap": 0.6,
    "alcap": 0.6,
    "csa": 0.6,
    "musicnn_features": 0.3,
    "compare_request": 3.0,
    "first_caption": 0.6,  # issue 32: the first caption on screen this soon after the request starts
    "app_start": 20.0,
    "long_track": 25.0,  # a 3-minute track, every window, every captioner, through the CLI
}
RATIO_TARGET = 3.0  # the compare request at most 1/3 of one anchor caption (issue 21)
LONG_TRACK_MINUTES = 3.0


def stop_app(process: subprocess.Popen) -> None:
    """End a served app: SIGTERM, then SIGKILL after 10 s (uvicorn waits for open keep-alive connections)."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def process_tree(pid: int) -> list[int]:
    """A process and all its descendants (the app and its caption workers), from Linux's /proc: a child
    is listed under the thread that started it, so every thread's list is read."""
    tree, todo = [], [pid]
    while todo:
        process = todo.pop()
        try:
            for children in Path(f"/proc/{process}/task").glob("*/children"):
                todo += [int(child) for child in children.read_text().split()]
        except OSError:  # it exited meanwhile
            continue
        tree.append(process)
    return tree


def resident_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants, MB."""
    total_kb = 0
    for process in process_tree(pid):
        try:
            status = Path(f"/proc/{process}/status").read_text()
        except OSError:
            continue
        total_kb += int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))
    return round(total_kb / 1024, 1)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process and its descendants have used so far."""
    ticks = 0
    for process in process_tree(pid):
        try:
            fields = Path(f"/proc/{process}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime: the stat line's 14th and 15th fields
    return ticks / os.sysconf("SC_CLK_TCK")


def wait_until_settled(pid: int, timeout_s: float = 300, busy_share: float = 0.1) -> None:
    """Waits until a served app and its children use under ``busy_share`` of a core over a second: the
    page is served before the caption workers have loaded (they load in the background, the app
    captions in-process meanwhile), and a warm request is one the app serves as it will from then on."""
    deadline = time.perf_counter() + timeout_s
    before = cpu_seconds(pid)
    while time.perf_counter() < deadline:
        time.sleep(1.0)
        now = cpu_seconds(pid)
        if now - before < busy_share:
            return
        before = now
    raise RuntimeError(f"the app was still busy {timeout_s:.0f} s after it served its page")


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


def load_average() -> str:
    """The 1/5/15-minute load averages against the core count: other work on the machine slows every figure."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} on {os.cpu_count()} cores"


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


def long_track_file(folder: Path, minutes: float = LONG_TRACK_MINUTES) -> Path:
    """``minutes`` of audio from the bundled clips, written as a WAV file in ``folder``: the clips one after
    another, each pass through them shifted by a third of a window, so that no two windows are the same."""
    import soundfile

    from musiccap.audio import WINDOW_S, load_audio, resample

    rate = 44_100
    clips = [load_audio(path) for path in BENCH_CLIPS]
    one_pass = np.concatenate([resample(clip.samples, clip.sample_rate, rate) for clip in clips])
    length = int(minutes * 60 * rate)
    shift = int(rate * WINDOW_S / 3)
    passes, total = [], 0
    while total < length:
        passes.append(np.roll(one_pass, -shift * len(passes)))
        total += len(one_pass)
    samples = np.concatenate(passes)[:length].astype(np.float32)
    path = folder / f"long-{minutes:g}min.wav"
    soundfile.write(path, samples, rate)
    return path


def measure_long_track(
    runs: int, anchor: AnchorTimer | None = None, minutes: float = LONG_TRACK_MINUTES
) -> dict:
    """``musiccap caption TRACK --window all --model all --json`` as a user runs it (process start
    included), ``runs`` times; with ``anchor``, one anchor caption after each run."""
    seconds, windows_per_model = [], {}
    with tempfile.TemporaryDirectory() as folder:
        track = long_track_file(Path(folder), minutes)
        for _ in range(runs):
            started = time.perf_counter()
            run = subprocess.run(
                [sys.executable, "-m", "musiccap", "caption", str(track), "--window", "all", "--model", "all"]
                + ["--json"],
                cwd=REPO,
                capture_output=True,
                text=True,
                check=True,
            )
            seconds.append(time.perf_counter() - started)
            windows_per_model = {}
            for line in run.stdout.splitlines():
                model = json.loads(line)["model"]
                windows_per_model[model] = windows_per_model.get(model, 0) + 1
            if anchor is not None:
                anchor.caption()
    return {
        "minutes": minutes,
        "windows": max(windows_per_model.values(), default=0),
        "windows_per_model": windows_per_model,
        "captions": sum(windows_per_model.values()),
        "wall": summary(seconds),
    }


CONCURRENT_TARGET = 2.5  # issue 32: with 4 listeners, each request's median at most 2.5x one listener's


def ratios(results: dict) -> dict:
    """How many times faster than the anchor: one anchor caption / the compare request (medians, and p90
    over p90), and the anchor captioning every window of the long track one by one / the long-track run."""
    anchor = results.get("anchor")
    if not anchor or not anchor["caption"]["runs"]:
        return {}
    caption = anchor["caption"]
    out = {}
    app = results.get("app")
    if app:
        request = app["compare_request"]
        out["compare_request"] = round(caption["median"] / request["median"], 2)
        out["compare_request_p90"] = round(caption["p90"] / request["p90"], 2)
        out["first_request_over_warm"] = round(app["first_request"]["median"] / request["median"], 2)
    long = results.get("long_track")
    if long and long["windows"]:
        out["long_track"] = round(long["windows"] * caption["median"] / long["wall"]["median"], 2)
    return out


class AnchorTimer:
    """The LP-MusicCaps-shaped anchor loaded once in the bench process, timed one caption at a time on
    the example's first 10 s window, on ``threads`` intra-op threads (restored after each caption)."""

    def __init__(self, threads: int):
        from musiccap.anchor import LpMusicCapsAnchor
        from musiccap.audio import load_audio, windows

        self.threads = threads
        self.window = windows(load_audio(EXAMPLE), "first")[0]
        self.anchor = LpMusicCapsAnchor()
        self.seconds: list[float] = []
        started = time.perf_counter()
        self.caption()
        self.cold_s = time.perf_counter() - started
        self.seconds.clear()
        self.tokens = self.anchor.decoding.new_tokens
        self.beams = self.anchor.decoding.num_beams

    def caption(self) -> None:
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            started = time.perf_counter()
            self.anchor.caption_ids(self.window.samples, self.window.sample_rate)
            self.seconds.append(time.perf_counter() - started)
        finally:
            torch.set_num_threads(before)

    def result(self) -> dict:
        return {
            "cold_s": round(self.cold_s, 3),
            "caption": summary(self.seconds),
            "threads": self.threads,
            "beams": self.beams,
            "new_tokens": self.tokens,
        }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# A captioner's card in the Compare tab once its caption is in (musiccap/ui/compare.py ``_card``); a
# pending card is "mc-pending", a failed one "mc-failed". The name is HTML-escaped model output.
CAPTION_CARD = re.compile(r'<article class="mc-card mc-model"><h4 class="mc-name">([^<]*)</h4>')
CLAP_SCORE = re.compile(r"CLAP -?\d")  # a card's score is in (pending: "CLAP …")
POLL_S = 0.005  # how often the bench looks for a new update (the client's own thread polls every 50 ms)


@dataclass
class TimedRequest:
    """One compare request through the Gradio client, timed from just before ``Client.submit`` (the clip's
    upload included, as in a browser) to each update the handler yielded, as the client received it."""

    seconds: float  # to the request's end (every caption, scores, downloads)
    first_caption_s: float | None  # the first update that carries a caption
    first_captioner: str | None  # whose caption that was
    caption_s: dict[str, float] = field(default_factory=dict)  # each captioner's caption's first update
    heatmap_s: float | None = None  # the first update that carries a heatmap figure
    scores_s: float | None = None  # the first update that carries a CLAP score (the first scored caption's)
    updates: int = 0


def timed_updates(seconds: float, updates: list[tuple[float, tuple]]) -> TimedRequest:
    """A request's timings from its updates, each (seconds since the request began, the /compare outputs:
    status, caption cards, downloads, similarity chart, heatmap choices, heatmap, tags)."""
    timed = TimedRequest(seconds, None, None, updates=len(updates))
    for at, outputs in updates:
        cards = outputs[1] if isinstance(outputs[1], str) else ""
        for model in map(html.unescape, CAPTION_CARD.findall(cards)):
            if model not in timed.caption_s:
                timed.caption_s[model] = at
                if timed.first_caption_s is None:
                    timed.first_caption_s, timed.first_captioner = at, model
        heatmap = outputs[5]  # a figure when one is sent, {"__type__": "update"} when it stays as it is
        if timed.heatmap_s is None and isinstance(heatmap, dict) and heatmap.get("type") == "plotly":
            timed.heatmap_s = at
        if timed.scores_s is None and CLAP_SCORE.search(cards):
            timed.scores_s = at
    return timed


def timed_compare(client, clip) -> TimedRequest:
    """One ``/compare`` request with the clip alone, every update timed as it reaches the client; raises
    what the request raised."""
    began = time.perf_counter()
    job = client.submit(audio=clip, api_name="/compare")
    updates = []
    while True:
        finished = job.done()  # read before the outputs, so the last ones are collected too
        for outputs in job.outputs()[len(updates) :]:
            updates.append((time.perf_counter() - began, outputs))
        if finished:
            break
        time.sleep(POLL_S)
    job.result()
    return timed_updates(time.perf_counter() - began, updates)


def streaming(requests: list[TimedRequest]) -> dict:
    """Medians and p90s of when the updates came: the first caption, each captioner's, the first heatmap,
    the scores, and the whole request."""

    def of(values: list[float | None]) -> dict | None:
        values = [v for v in values if v is not None]
        return summary(values) if values else None

    models = list(dict.fromkeys(model for r in requests for model in r.caption_s))
    firsts = Counter(r.first_captioner for r in requests if r.first_captioner)
    return {
        "first_caption": of([r.first_caption_s for r in requests]),
        "first_captioner": firsts.most_common(1)[0][0] if firsts else None,
        "captions": {m: of([r.caption_s.get(m) for r in requests]) for m in models},
        "heatmap": of([r.heatmap_s for r in requests]),
        "scores": of([r.scores_s for r in requests]),
        "request": of([r.seconds for r in requests]),
        "updates": of([float(r.updates) for r in requests]),
    }


def concurrent_requests(url: str, clips: list, users: int, rounds: int) -> tuple[list[TimedRequest], int]:
    """``users`` Gradio clients at once, ``rounds`` compare requests each, the requests of a round on
    different clips (from ``clips``, in turn): every request timed, and how many failed (a timeout or a
    refusal from the queue is counted, not raised)."""
    from concurrent.futures import ThreadPoolExecutor

    from gradio_client import Client

    def user(number: int, client) -> tuple[list[TimedRequest], int]:
        timed, failures = [], 0
        for round_ in range(rounds):
            try:
                timed.append(timed_compare(client, clips[(round_ * users + number) % len(clips)]))
            except Exception:  # the client raises many kinds; each is one request that did not come back
                failures += 1
        return timed, failures

    clients = [Client(url, verbose=False) for _ in range(users)]
    with ThreadPoolExecutor(users) as pool:
        answers = list(pool.map(user, range(users), clients))
    return [t for timed, _ in answers for t in timed], sum(failures for _, failures in answers)


def app_settings(threads: tuple[str, ...], concurrency: tuple[str, ...]) -> list[tuple[str, str]]:
    """The (intra-op threads, compare concurrency) settings to serve: the first of each (the served one),
    every other thread count at the first concurrency, every other concurrency at the first thread count."""
    served = (threads[0], concurrency[0])
    return [served] + [(n, served[1]) for n in threads[1:]] + [(served[0], c) for c in concurrency[1:]]


def measure_app(
    starts: int,
    requests: int,
    threads: tuple[str, ...] = ("1",),
    anchor: AnchorTimer | None = None,
    users: int = 0,
    user_rounds: int = 3,
    concurrency: tuple[str, ...] = ("2",),
    caption_workers: int = 0,
) -> dict:
    """Start ``python app.py`` ``starts`` times per setting (:func:`app_settings`: ``MUSICCAP_TORCH_THREADS``
    and ``MUSICCAP_COMPARE_CONCURRENCY``), every one with ``caption_workers`` caption worker processes
    (``MUSICCAP_CAPTION_WORKERS``), and time the first compare request and ``requests`` more after
    each start, once the app has settled (:func:`wait_until_settled`), every update of each as it
    arrives (:func:`timed_compare`); then read the resident memory of the app and its workers. Settings
    take turns start by start, so a machine whose speed drifts weighs on each alike. The first setting is reported as the app.
    With ``anchor``, one anchor caption follows each timed request (A, B, A, B, ...). With ``users``, every
    setting on the served thread count then takes ``users`` listeners at once, ``user_rounds`` requests
    each (after each start): the concurrency limits compared."""
    from gradio_client import Client, handle_file

    settings = app_settings(threads, concurrency)
    start_times = {setting: [] for setting in settings}
    first_requests = {setting: [] for setting in settings}
    warm = {setting: [] for setting in settings}
    # every request: which start, which turn after it (0: the first request), which clip, its seconds
    each = {setting: [] for setting in settings}
    together = {setting: [] for setting in settings}
    failed = dict.fromkeys(settings, 0)
    resident = {setting: [] for setting in settings}
    settled = {setting: [] for setting in settings}
    for start in range(starts):
        for setting in settings:
            port = _free_port()
            env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False"}
            env["MUSICCAP_ARENA_DB"] = str(Path(tempfile.mkdtemp()) / "votes.sqlite")
            env["MUSICCAP_TORCH_THREADS"], env["MUSICCAP_COMPARE_CONCURRENCY"] = setting
            env["MUSICCAP_CAPTION_WORKERS"] = str(caption_workers)
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
                start_times[setting].append(time.perf_counter() - started)
                wait_until_settled(process.pid)
                settled[setting].append(time.perf_counter() - started)
                client = Client(url, verbose=False)
                # every other parameter at its default: the first window; each start begins on another clip
                turn = start % len(BENCH_CLIPS)
                clips = [handle_file(str(path)) for path in BENCH_CLIPS[turn:] + BENCH_CLIPS[:turn]]
                first_requests[setting].append(timed_compare(client, clips[0]).seconds)
                each[setting].append([start, 0, Path(clips[0]["path"]).name, first_requests[setting][-1]])
                for request in range(requests):
                    clip = clips[1 + request % (len(clips) - 1)]
                    warm[setting].append(timed_compare(client, clip))
                    each[setting].append(
                        [start, 1 + request, Path(clip["path"]).name, warm[setting][-1].seconds]
                    )
                    if anchor is not None:
                        anchor.caption()
                resident[setting].append(resident_mb(process.pid))
                if users and setting[0] == threads[0]:
                    timed, failures = concurrent_requests(url, clips, users, user_rounds)
                    together[setting] += timed
                    failed[setting] += failures
            finally:
                stop_app(process)

    def served_as(setting) -> dict:
        row = {
            "start": summary(start_times[setting]),
            "settled": summary(settled[setting]),
            "first_request": summary(first_requests[setting]),
            "compare_request": summary([r.seconds for r in warm[setting]]),
            "streaming": streaming(warm[setting]),
            "resident_mb": summary(resident[setting]),
            "each_request": [
                [start, turn, clip, round(seconds, 4)] for start, turn, clip, seconds in each[setting]
            ],
        }
        if users and setting[0] == threads[0]:
            many = [r.seconds for r in together[setting]]
            request = summary(many) if many else {"median": None, "p90": None, "runs": 0}
            single = row["compare_request"]["median"]
            row["concurrent"] = {
                "users": users,
                "request": request,
                "failures": failed[setting],
                "over_single": round(request["median"] / single, 2) if many and single else None,
                "streaming": streaming(together[setting]),
            }
        return row

    rows = {setting: served_as(setting) for setting in settings}
    served = settings[0]
    return {
        **rows[served],
        "torch_threads": served[0],
        "compare_concurrency": served[1],
        "caption_workers": caption_workers,
        "by_threads": {n: rows[(n, c)] for n, c in settings if c == served[1]},
        "by_concurrency": {c: rows[(n, c)] for n, c in settings if n == served[0]},
    }


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


STREAMING_METHOD = (
    "How it is measured: the Compare handler is a generator (`run_compare` in musiccap/ui/compare.py) that "
    "yields after each captioner's caption; Gradio's queue sends each yield to the page as it comes. The "
    "bench sends each warm request with `Client.submit` and times every update as the client receives it, "
    "in seconds from just before the submit (the clip's upload included, as in a browser; the page's own "
    "drawing is not). It looks for new updates every 5 ms; the client's reader thread picks messages up "
    "every 50 ms, so a time may be up to ~50 ms late. An update carries a captioner's caption when that "
    "captioner's card holds its text instead of *captioning…*; the first caption is the first such update, "
    "whichever captioner it is (the floors come first in display order, and random's reads no audio "
    "features, so it is nearly always random's: each architecture's own time is its row); the heatmap's is "
    "the first update that sends a figure; the first CLAP score's the first with a CLAP number on a card: "
    "each caption is scored (CLAP and fact check) with its own update once the window's audio features "
    "are computed, random's with the next caption, so it comes with the first caption that reads audio. "
    "Medians (p90) over the requests."
)


def _concurrent_cell(together: dict) -> str:
    times = together["over_single"]
    ok = "✅" if times is not None and times <= CONCURRENT_TARGET and not together["failures"] else "❌"
    return f"{together['request']['median']} ({times}× one listener's {ok})"


def _streaming_lines(stream: dict | None) -> list[str]:
    """When each part of the warm compare requests reached the client (:func:`timed_compare`)."""
    if not stream or not stream.get("first_caption"):
        return []
    lines = [
        "",
        "### Streaming: when each part reaches the client",
        "",
        STREAMING_METHOD,
        "",
        "| update | median (s) | p90 (s) | runs | target (s) |",
        "|---|---|---|---|---|",
        f"| first caption ({stream['first_captioner']}'s, most often) | "
        f"{_fmt(stream['first_caption']['median'], TARGETS['first_caption'])} | "
        f"{stream['first_caption']['p90']} | {stream['first_caption']['runs']} | {TARGETS['first_caption']} |",
    ]
    for model, at in stream["captions"].items():
        if at:
            lines.append(f"| {model}'s caption | {at['median']} | {at['p90']} | {at['runs']} | — |")
    for what, key in (
        ("first heatmap (the first captioner that attends over audio time)", "heatmap"),
        ("first CLAP score and fact check (each caption's comes with it)", "scores"),
        ("the whole request (downloads included)", "request"),
    ):
        at = stream.get(key)
        if at:
            lines.append(f"| {what} | {at['median']} | {at['p90']} | {at['runs']} | — |")
    return lines


def _concurrency_lines(by_concurrency: dict) -> list[str]:
    """The 4-listener figures under each compare concurrency limit measured."""
    rows = {c: row for c, row in by_concurrency.items() if row.get("concurrent")}
    if len(rows) < 2:
        return []
    users = next(iter(rows.values()))["concurrent"]["users"]
    lines = [
        "",
        f"### Concurrency limit: {users} listeners at once under each setting",
        "",
        "Captioning requests the app runs at once (`MUSICCAP_COMPARE_CONCURRENCY`, `COMPARE_CONCURRENCY` in "
        "musiccap/ui/app.py; the others wait in Gradio's queue), each setting started in turn with the "
        "served one.",
        "",
        f"| concurrency | one listener: median (s) | {users} at once: median (s) | p90 (s) | runs (failed) "
        f"| first caption, {users} at once: median (s) |",
        "|---|---|---|---|---|---|",
    ]
    for c, row in rows.items():
        together = row["concurrent"]
        first = (together.get("streaming") or {}).get("first_caption") or {}
        lines.append(
            f"| {c} | {row['compare_request']['median']} | {_concurrent_cell(together)} | "
            f"{together['request']['p90']} | {together['request']['runs']} ({together['failures']}) | "
            f"{first.get('median', '—')} |"
        )
    return lines


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
        "Latencies are medians (p90) over repeated runs: the features and captioners on one 10 s clip, the app "
        "on the bundled clips in turn; ✅/❌ against the target.",
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
            "(`MUSICCAP_TORCH_THREADS`, default 1: see `serving_threads` in musiccap/ui/app.py) with "
            f"{app.get('caption_workers', '?')} caption worker process(es) (`MUSICCAP_CAPTION_WORKERS`, "
            "0: captioned in the app's process; see `caption_workers` in musiccap/ui/app.py); the request "
            "goes through the Gradio client. Each start's first request and its warm ones go to different "
            "bundled clips in turn (six clips in examples/), and so do the listeners' concurrent requests.",
            "",
            "| what | median (s) | p90 (s) | runs | target (s) |",
            "|---|---|---|---|---|",
            f"| start (process start → page served) | {_fmt(app['start']['median'], TARGETS['app_start'])} | "
            f"{app['start']['p90']} | {app['start']['runs']} | {TARGETS['app_start']} |",
            f"| start → the app idle (its caption workers loaded too) | "
            f"{app.get('settled', {}).get('median', '—')} | {app.get('settled', {}).get('p90', '—')} | "
            f"{app.get('settled', {}).get('runs', '—')} | — |",
            f"| first compare request after that | {app['first_request']['median']} | "
            f"{app['first_request']['p90']} | {app['first_request']['runs']} | — |",
        ]
        if app.get("resident_mb"):
            memory = app["resident_mb"]
            lines.append(
                f"| resident memory after the requests, app and caption workers (MB) | {memory['median']} | "
                f"{memory['p90']} | {memory['runs']} | — |"
            )
        lines += [
            f"| compare request (every caption + neighbour + heatmaps + CLAP scores) | "
            f"{_fmt(app['compare_request']['median'], TARGETS['compare_request'])} | {app['compare_request']['p90']} | "
            f"{app['compare_request']['runs']} | {TARGETS['compare_request']} |",
        ]
        first = (app.get("streaming") or {}).get("first_caption")
        if first:
            lines.append(
                f"| first caption on screen ({app['streaming']['first_captioner']}'s) | "
                f"{_fmt(first['median'], TARGETS['first_caption'])} | {first['p90']} | {first['runs']} | "
                f"{TARGETS['first_caption']} |"
            )
        together = app.get("concurrent")
        if together and together["request"]["runs"]:
            limit = f" (concurrency {app['compare_concurrency']})" if app.get("compare_concurrency") else ""
            lines.append(
                f"| compare request, {together['users']} listeners at once{limit} | {_concurrent_cell(together)} | "
                f"{together['request']['p90']} | {together['request']['runs']} ({together['failures']} failed) "
                f"| ≤ {CONCURRENT_TARGET}× one listener's, none failed |"
            )
        lines += _streaming_lines(app.get("streaming"))
        lines += _concurrency_lines(app.get("by_concurrency", {}))
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
        wall = long["wall"]
        lines += [
            "",
            f"**{long['minutes']:g}-minute track** through `musiccap caption TRACK --window all --model all "
            f"--json` (process start included; the bundled clips one after another, each pass shifted by a "
            f"third of a window, so no two windows are alike): {long['windows']} windows per captioner, {long['captions']} "
            f"captions, {_fmt(wall['median'], TARGETS['long_track'])} s median (p90 {wall['p90']} s, "
            f"{wall['runs']} runs; target {TARGETS['long_track']} s).",
        ]
    anchor = results.get("anchor")
    if anchor:
        caption, ratio = anchor["caption"], results.get("ratios", {})
        lines += [
            "",
            "## Against LP-MusicCaps (the anchor, measured in the same run)",
            "",
            f"One LP-MusicCaps-shaped caption (musiccap/anchor.py: BART-base with a two-conv front end on a "
            f"128-bin log-mel, random weights, beam {anchor['beams']}, exactly {anchor['new_tokens']} new "
            f"tokens, {anchor['threads']} intra-op thread(s)) on the same 10 s clip, one after each timed app "
            f"request and long-track run: **{caption['median']} s** median (p90 {caption['p90']} s, "
            f"{caption['runs']} runs; cold {anchor['cold_s']} s).",
            "",
            "| what | × faster than the anchor | target |",
            "|---|---|---|",
        ]
        if "compare_request" in ratio:
            ok = "✅" if ratio["compare_request"] >= RATIO_TARGET else "❌"
            lines += [
                f"| compare request, medians | {ratio['compare_request']} {ok} | ≥ {RATIO_TARGET} |",
                f"| compare request, p90s | {ratio['compare_request_p90']} | — |",
                f"| first request after start / warm median | {ratio['first_request_over_warm']} (slower) "
                f"| ≤ 1.5 |",
            ]
        if "long_track" in ratio:
            lines.append(
                f"| long track: the anchor captioning its {long['windows']} windows one by one / the CLI run "
                f"| {ratio['long_track']} | — |"
            )
    if results.get("load"):
        lines += ["", f"Load while measuring: {results['load']}."]
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
    parser.add_argument(
        "--skip", nargs="*", default=[], help="parts to skip: features models app long anchor corpus"
    )
    parser.add_argument(
        "--app-threads",
        nargs="+",
        default=[os.environ.get("MUSICCAP_TORCH_THREADS", "1")],
        help="MUSICCAP_TORCH_THREADS settings to serve the app with, the first reported (e.g. 1 2)",
    )
    parser.add_argument(
        "--app-concurrency",
        nargs="+",
        type=int,
        help="MUSICCAP_COMPARE_CONCURRENCY settings (captioning requests the app runs at once) to serve the "
        "app with, the first reported, each taking --users listeners at once (e.g. 2 1); default the app's",
    )
    parser.add_argument(
        "--anchor-threads", type=int, default=1, help="intra-op threads of the LP-MusicCaps anchor"
    )
    parser.add_argument("--long-runs", type=int, default=3, help="runs of the 3-minute track through the CLI")
    parser.add_argument(
        "--users", type=int, default=4, help="listeners at once after each app start (0: none)"
    )
    parser.add_argument("--user-rounds", type=int, default=3, help="compare requests each listener makes")
    parser.add_argument("--out", type=Path, default=DOCS, help="where BENCHMARKS.md and benchmarks.json go")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure_model(args.child, args.runs)))
        return 0
    from musiccap.studio import Studio
    from musiccap.ui.app import caption_workers, compare_concurrency

    if any(limit < 1 for limit in args.app_concurrency or []):
        parser.error("--app-concurrency takes positive counts of requests")
    concurrency = [str(limit) for limit in args.app_concurrency or [compare_concurrency()]]
    results = {"command": "musiccap bench " + " ".join(argv or sys.argv[2:]), "machine": machine()}
    results["load"] = load_average()
    results["matmul_gflops"] = matmul_gflops()
    if "features" not in args.skip:
        results["features"] = measure_features(args.runs)
    results["models"] = {}
    for name in Studio().captioners if "models" not in args.skip else []:
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
    anchor = AnchorTimer(args.anchor_threads) if "anchor" not in args.skip else None
    if "app" not in args.skip:
        results["app"] = measure_app(
            args.app_starts,
            args.app_requests,
            tuple(args.app_threads),
            anchor,
            args.users,
            args.user_rounds,
            tuple(concurrency),
            caption_workers(),
        )
    if "long" not in args.skip:
        results["long_track"] = measure_long_track(args.long_runs, anchor)
    if anchor is not None:
        results["anchor"] = anchor.result()
        results["ratios"] = ratios(results)
    results["load"] += f" at the start, {load_average()} at the end"
    results["training"] = training_throughput()
    if "corpus" not in args.skip:
        results["corpus"] = corpus_rate()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "benchmarks.json").write_text(json.dumps(results, indent=2) + "\n")
    write_markdown(results, args.out / "BENCHMARKS.md")
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for name, value in results.get("ratios", {}).items():
            print(f"{name}: {value}")
        print(f"wrote {args.out / 'BENCHMARKS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
