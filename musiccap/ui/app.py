"""The studio: Compare, Arena, Leaderboard and About tabs over the shipped checkpoints."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import gradio as gr

from musiccap.registry import EXAMPLES, example_files
from musiccap.studio import DEFAULT_CHECKPOINTS, Studio
from musiccap.ui.about import build_about_tab
from musiccap.ui.compare import build_compare_tab
from musiccap.worker_pool import BATCH_WINDOWS

MAX_UPLOAD = "50mb"
# Requests waiting beyond those running; one more is refused at once ("queue full") rather than left to time out
QUEUE_SIZE = 32
# Captioning requests (compare, listening check) that run at once; the rest wait in the queue. Four: the caption
# workers caption concurrent requests' windows in one batch per captioner (musiccap/worker_pool.py), and
# four requests at once put all four listeners' windows in the queue together. Loaded machine, 4 listeners at
# once, 2 runs (docs/benchmark_runs/2026-12-03-caption-batching.md): request median 5.03 / 6.08 s under 4
# against 6.64 / 6.01 s under 2 (7.07 s under 1; 6.5-8.0 s without batching under any), each caption on
# screen ~1 s sooner (csa's 3.64 s against 4.8-5.5 s) and the first after 0.4-0.5 s against 2.5-2.9 s.
# On the idle machine before batching, 2 beat 1 (4.44 s against 4.55 s: the next request's features overlap
# the workers' captions). MUSICCAP_COMPARE_CONCURRENCY overrides it.
COMPARE_CONCURRENCY = 4
OTHER_CONCURRENCY = 2  # each other event at once (arena pairs and votes, heatmap choices), per event

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def build_app(studio: Studio, arena=None, trusted_proxies: int = 0) -> gr.Blocks:
    # Uploads and the Compare tab's downloads land in Gradio's cache: on a long-running Space it is emptied
    # of files older than two hours, every hour, instead of growing until the disk is full.
    with gr.Blocks(
        title="musiccap — music captioning studio", analytics_enabled=False, delete_cache=(3600, 7200)
    ) as demo:
        gr.Markdown(
            "# musiccap\nFive published music-captioning architectures, side by side. "
            "Upload or record a clip; every captioner writes its caption, shows where it listened, "
            "and how well its words match the audio in CLAP space."
        )
        with gr.Tab("Compare"):
            build_compare_tab(studio, [str(p) for p in example_files()], compare_concurrency())
        if arena is not None:
            from musiccap.ui.arena import build_arena_tab, build_leaderboard_tab

            with gr.Tab("Arena"):
                build_arena_tab(arena, demo, trusted_proxies=trusted_proxies)
            with gr.Tab("Leaderboard") as leaderboard_tab:
                build_leaderboard_tab(arena, leaderboard_tab)
        with gr.Tab("About"):
            build_about_tab(studio)
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=OTHER_CONCURRENCY)
    return demo


def create(checkpoints: str | Path = DEFAULT_CHECKPOINTS, with_arena: bool = True):
    studio = Studio(checkpoints)
    arena = None
    if with_arena:
        from musiccap.ui.arena_setup import arena_for

        arena = arena_for(studio, [str(p) for p in example_files()])
    return build_app(studio, arena, trusted_proxies()), studio, arena


def create_server(checkpoints: str | Path = DEFAULT_CHECKPOINTS):
    """The FastAPI app: the Gradio studio at / and the arena's JSON API at /arena/*."""
    from fastapi import FastAPI

    demo, studio, arena = create(checkpoints)
    studio.warm_up()  # before the first request, not during it
    with contextlib.suppress(ImportError):
        # Gradio reads matplotlib's backend (where matplotlib is installed) around every API call; the
        # first read imports matplotlib and pyplot, which took ~1 s of the first request
        import matplotlib

        matplotlib.get_backend()
    studio.start_workers(
        caption_workers(), caption_batch_windows()
    )  # they load while the app serves (captioning in-process)

    @contextlib.asynccontextmanager
    async def stop_workers_with_the_server(_server):
        yield
        # uvicorn ends the process with the signal that stopped it, and atexit does not run then
        studio.close()

    server = FastAPI(title="musiccap", lifespan=stop_workers_with_the_server)
    if arena is not None:
        from musiccap.arena.api import build_router

        server.include_router(build_router(arena, trusted_proxies=trusted_proxies()))
    return gr.mount_gradio_app(
        server,
        demo,
        path="/",
        max_file_size=MAX_UPLOAD,
        allowed_paths=[str(EXAMPLES)],
        footer_links=["api"],
    )


def trusted_proxies() -> int:
    """Reverse proxies in front of the app that append to X-Forwarded-For: ``MUSICCAP_TRUSTED_PROXIES``,
    else 1 on a Space (``SPACE_ID`` is set; its proxy is the one hop) and 0 elsewhere.

    The Arena tab and the JSON API both use it: with 0 behind a proxy, every voter would be the proxy's
    address, one rate limit and one daily cap for everyone.
    """
    value = os.environ.get("MUSICCAP_TRUSTED_PROXIES")
    if value is None:
        return 1 if os.environ.get("SPACE_ID") else 0
    if not value.isdigit():
        raise ValueError(f"MUSICCAP_TRUSTED_PROXIES must be a count of proxies (0, 1, ...), not {value!r}")
    return int(value)


def server_address() -> tuple[str, int]:
    """(host, port) to listen on: Gradio's ``GRADIO_SERVER_NAME`` and ``GRADIO_SERVER_PORT`` (a Space sets
    both), ``PORT`` as the port's fallback; default 127.0.0.1:7860."""
    host = os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1"
    for name in ("GRADIO_SERVER_PORT", "PORT"):
        value = os.environ.get(name)
        if value:
            if not value.isdigit() or not 0 < int(value) < 65536:
                raise ValueError(f"{name} must be a TCP port (1-65535), not {value!r}")
            return host, int(value)
    return host, 7860


def serving_threads() -> int:
    """Intra-op threads torch uses in the app: ``MUSICCAP_TORCH_THREADS``, default 1.

    Gradio runs every handler on a worker thread, and there torch's two-thread OpenMP regions are slower
    than one thread, although the same work on the main thread gains from two: on this 2-core CPU the
    compare request took 4.5 s served on one thread against 5.5 s on two (medians of 12, the two settings
    started in turn; docs/benchmark_runs/2026-12-01T1754.md). One thread per request also lets concurrent
    requests share the cores instead of contending for them.
    """
    return positive_count_setting("MUSICCAP_TORCH_THREADS", 1)


def compare_concurrency() -> int:
    """Captioning requests the app runs at once: ``MUSICCAP_COMPARE_CONCURRENCY``, default
    :data:`COMPARE_CONCURRENCY`."""
    return positive_count_setting("MUSICCAP_COMPARE_CONCURRENCY", COMPARE_CONCURRENCY)


def caption_workers() -> int:
    """Processes that caption a compare request beside the app's own (musiccap/worker_pool.py):
    ``MUSICCAP_CAPTION_WORKERS``, 0 to caption in the app's process; default
    :func:`default_caption_workers`."""
    return count_setting("MUSICCAP_CAPTION_WORKERS", default_caption_workers(), minimum=0)


def caption_batch_windows() -> int:
    """Windows of concurrent compare requests that a caption worker captions in one batch at most
    (musiccap/worker_pool.py): ``MUSICCAP_CAPTION_BATCH_WINDOWS``, 1 to caption each request's alone;
    default :data:`musiccap.worker_pool.BATCH_WINDOWS`."""
    return positive_count_setting("MUSICCAP_CAPTION_BATCH_WINDOWS", BATCH_WINDOWS)


def default_caption_workers() -> int:
    """Two workers on two cores or more: the decoders hold the GIL, so only processes run two captioners at
    once, and two keep both cores of a CPU basic Space busy (each costs about 0.7 GB of memory;
    docs/benchmark_runs/2026-12-03-caption-workers.md). On one core a worker would only add the trips
    between processes."""
    return 2 if (os.cpu_count() or 1) >= 2 else 0


def positive_count_setting(variable: str, default: int) -> int:
    """A count the Space sets in its environment: a positive integer, refused clearly otherwise."""
    return count_setting(variable, default, minimum=1)


def count_setting(variable: str, default: int, *, minimum: int) -> int:
    """A count the Space sets in its environment: ``minimum`` or more, refused clearly otherwise."""
    value = os.environ.get(variable, str(default))
    if not value.isdigit() or int(value) < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer of at least {minimum}"
        raise ValueError(f"{variable} must be {kind}, not {value!r}")
    return int(value)


def launch(checkpoints: str | Path = DEFAULT_CHECKPOINTS, port: int = 7860, host: str = "127.0.0.1") -> None:
    import torch
    import uvicorn

    torch.set_num_threads(serving_threads())
    # proxy_headers=False: uvicorn would otherwise take X-Forwarded-For as the client's address whenever the
    # connection comes from 127.0.0.1; which hops to trust is trusted_proxies()'s decision alone
    uvicorn.run(create_server(checkpoints), host=host, port=port, log_level="warning", proxy_headers=False)
