"""Captioning in worker processes: the compare request on every CPU core.

The captioners' decoders spend most of their time in per-token Python, holding the GIL, so threads do
not run two of them at once (docs/benchmark_runs/2026-12-03-reverted-levers.md); processes do. Each worker
is a spawned Python process that loads the captioners from the same checkpoints folder once, warms them
up, and then captions the clips it is sent: a window with its shared features already computed by the
main process (musicnn, the analysis), so no worker computes them again.

The workers take tasks from one shared queue, a task to a worker only when it is idle, so a long
captioner on one worker does not hold up the short ones behind it. A worker that dies (a crash, the
out-of-memory killer) fails the task it was running with a clear error, and a new worker replaces it;
the other workers go on serving.
"""

from __future__ import annotations

import atexit
import multiprocessing
import threading
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from musiccap.clip import Clip

# "spawn": a fork of the app would copy its threads' locks (Gradio's, torch's) in whatever state they are
SPAWN = multiprocessing.get_context("spawn")
STOP = None  # the message that asks a worker to exit


class WorkerDied(RuntimeError):
    """The worker process captioning a task stopped before it answered."""


@dataclass
class Task:
    """One captioner on a batch of windows, and the future its answer goes to."""

    model: str
    clips: list[Clip]
    decoding: dict[str, Any]
    future: Future


@dataclass
class Answer:
    """A worker's captions of one task: per window (result, error), the captioner's latency per window,
    and the time of the shared features the worker computed itself (e.g. MusCaps' log-mel patches)."""

    captions: list[tuple[Any, str]]
    latency_s: float
    feature_timings: list[dict[str, float]]


class CaptionWorkers:
    """``count`` worker processes serving ``models`` from ``checkpoints_dir``, each on ``threads`` intra-op
    torch threads (the main process's count, so a worker computes exactly what the main process would),
    each warmed up on ``warm_up_clips`` (their shared features computed) before it takes a task.

    :meth:`submit` is thread-safe: concurrent compare requests share the workers.
    """

    def __init__(
        self,
        checkpoints_dir: Path,
        models: list[str],
        warm_up_clips: list[Clip],
        *,
        clean_text: bool,
        count: int,
        threads: int,
    ):
        if count < 1:
            raise ValueError(f"a worker pool needs at least one worker, not {count}")
        self.models = list(models)
        self.count = count
        self._start_args = (str(checkpoints_dir), self.models, warm_up_clips, clean_text, threads)
        self._lock = threading.Lock()
        self._queue: deque[Task] = deque()
        self._idle: list[_Worker] = []
        self._workers: list[_Worker] = []
        self._closed = False
        for _ in range(count):
            self._start_worker()
        atexit.register(self.close)

    def submit(self, clips: list[Clip], model: str, decoding: dict[str, Any]) -> Future:
        """A future of the :class:`Answer` of ``model`` on ``clips`` (their features go along)."""
        future = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the caption workers are shut down")
            while len(self._workers) < self.count:  # one that could not start is tried again on demand
                self._start_worker()
            self._queue.append(Task(model, clips, dict(decoding), future))
            self._dispatch()
        return future

    def pids(self) -> list[int]:
        """The worker processes' ids, a replacement still loading included."""
        with self._lock:
            return [worker.process.pid for worker in self._workers]

    def ready_count(self) -> int:
        """Workers loaded and warmed up: serving or ready to."""
        with self._lock:
            return sum(worker.ready for worker in self._workers)

    def close(self) -> None:
        """Asks every worker to exit, and ends any that does not within a few seconds."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            workers = list(self._workers)
            self._fail_queued(RuntimeError("the caption workers were shut down"))
        for worker in workers:
            try:
                worker.connection.send(STOP)
            except OSError:  # already gone
                pass
        for worker in workers:
            worker.process.join(timeout=5)
            if worker.process.is_alive():
                worker.process.terminate()
                worker.process.join()
        atexit.unregister(self.close)

    def _start_worker(self) -> None:
        connection, worker_end = SPAWN.Pipe()
        process = SPAWN.Process(
            target=serve, args=(worker_end, *self._start_args), name="musiccap-caption-worker", daemon=True
        )
        process.start()
        worker_end.close()  # else the main process holds the worker's end open and never sees it die
        worker = _Worker(process, connection)
        self._workers.append(worker)
        threading.Thread(
            target=self._listen, args=(worker,), name="caption-worker-listener", daemon=True
        ).start()

    def _dispatch(self) -> None:
        """Hands queued tasks to idle workers. Called with the lock held."""
        while self._queue and self._idle:
            task = self._queue.popleft()
            if not task.future.set_running_or_notify_cancel():
                continue
            worker = self._idle.pop()
            worker.task = task
            try:
                worker.connection.send((task.model, task.clips, task.decoding))
            except OSError:  # it died just now: its listener fails the task and replaces it
                pass
            except Exception as error:  # the task does not pickle (nothing was sent): it fails alone
                worker.task = None
                self._idle.append(worker)
                task.future.set_exception(error)

    def _listen(self, worker: _Worker) -> None:
        """One worker's answers, in a thread of its own: each sets its task's future, and the worker takes
        the next task. When the worker's pipe closes, it died (or was stopped)."""
        while True:
            try:
                message = worker.connection.recv()
            except (EOFError, OSError):
                break
            with self._lock:
                task, worker.task = worker.task, None
                worker.ready = True  # its first message says it has loaded and warmed up
                self._idle.append(worker)
                self._dispatch()
            if task is None:
                continue
            if isinstance(message, Answer):
                task.future.set_result(message)
            else:
                task.future.set_exception(RuntimeError(message))
        worker.process.join()
        self._replace(worker)

    def _replace(self, worker: _Worker) -> None:
        with self._lock:
            self._workers.remove(worker)
            if worker in self._idle:
                self._idle.remove(worker)
            code = worker.process.exitcode
            if self._closed:
                if worker.task is not None:
                    worker.task.future.set_exception(RuntimeError("the caption workers were shut down"))
                return
            if not worker.ready:
                # A worker that cannot even load would fail again at once: the tasks waiting for it fail
                # now, and the next request tries a new one (submit), instead of a restart loop.
                if not self._workers:
                    self._fail_queued(WorkerDied(f"the captioning worker could not start (exit code {code})"))
                return
            if worker.task is not None:
                worker.task.future.set_exception(
                    WorkerDied(
                        f"the captioning worker (pid {worker.process.pid}) stopped with exit code {code} "
                        f"while captioning with {worker.task.model}; a new worker replaces it"
                    )
                )
            self._start_worker()

    def _fail_queued(self, error: Exception) -> None:
        """Fails every task waiting for a worker. Called with the lock held."""
        for task in self._queue:
            if not task.future.cancelled():
                task.future.set_exception(error)
        self._queue.clear()


@dataclass
class _Worker:
    process: Any  # a SpawnProcess
    connection: Any  # the main process's end of its pipe
    task: Task | None = None  # the task it is captioning; None while it loads or is idle
    ready: bool = False  # loaded and warmed up


def serve(
    connection,
    checkpoints_dir: str,
    models: list[str],
    warm_up_clips: list[Clip],
    clean_text: bool,
    threads: int,
) -> None:
    """A worker process: loads and warms up the captioners, says it is ready, then answers tasks until it
    is asked to stop or the main process goes away."""
    import signal

    import torch

    from musiccap.studio import WARM_UP_TOKENS, CompareOptions, Studio

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the app stops us
    torch.set_num_threads(threads)
    studio = Studio(checkpoints_dir, models, clean_text=clean_text)
    # Every captioner once, so that the first request's captions cost what every later one's do
    for name in studio.captioners:
        studio.caption_windows(
            warm_up_clips, name, CompareOptions(decoding={"max_new_tokens": WARM_UP_TOKENS})
        )
    try:
        connection.send("ready")
    except BrokenPipeError:  # the main process went away while we loaded
        return
    while True:
        try:
            message = connection.recv()
        except EOFError:  # the main process is gone
            return
        if message is STOP:
            return
        model, clips, decoding = message
        try:
            computed_before = [set(clip.timings) for clip in clips]
            captions = studio.caption_windows(clips, model, CompareOptions(decoding=decoding))
            timings = [
                {key: seconds for key, seconds in clip.timings.items() if key not in before}
                for clip, before in zip(clips, computed_before)
            ]
            answer = Answer([(c.result, c.error) for c in captions], captions[0].latency_s, timings)
        except Exception as error:  # e.g. a model this worker does not serve: the task fails, not the worker
            answer = f"{type(error).__name__}: {error}"
        try:
            connection.send(answer)
        except BrokenPipeError:  # the main process went away while we captioned
            return
