"""Captioning in worker processes: the compare request on every CPU core.

The captioners' decoders spend most of their time in per-token Python, holding the GIL, so threads do
not run two of them at once (docs/benchmark_runs/2026-12-03-reverted-levers.md); processes do. Each worker
is a spawned Python process that loads the captioners from the same checkpoints folder once, warms them
up, and then captions the clips it is sent: a window with its shared features already computed by the
main process (musicnn, the analysis), so no worker computes them again.

The workers take tasks from one shared queue, a task to a worker only when it is idle, so a long
captioner on one worker does not hold up the short ones behind it. A worker that dies (a crash, the
out-of-memory killer) fails the tasks it was running (every request of its batch) with a clear error,
and a new worker replaces it; the other workers go on serving.

Concurrent requests' tasks are captioned together (cross-request micro-batching): a worker that takes
the oldest queued task also takes the later ones for the same captioner with the same decoding, up to
``batch_windows`` windows in all, and captions them in one batch: a captioner's batch costs much less
per window than its windows one by one (docs/BENCHMARKS.md, "batch clips/s"), and its caption of a window
in a batch is its caption alone (tests/test_studio.py checks every shipped one, a short upload beside
full windows included). The oldest task always leads, so no captioner waits behind later requests for
another's.

Requests that are computing their windows' features say so (:meth:`CaptionWorkers.coming`): while one is,
a batchable task waits for it rather than go to an idle worker alone, at most ``hold_s`` and only until
its batch is full, so that listeners who press Caption together are captioned together. Otherwise the
first request's tasks would take the idle workers one window each, and its followers' would be batched
only behind them: under 4 listeners at once a third of the workers' time went to such lone windows. A
lone listener waits for nobody: no other request is coming.
"""

from __future__ import annotations

import atexit
import multiprocessing
import pickle
import threading
import time
from collections import deque
from collections.abc import Collection, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

from musiccap.clip import Clip

# "spawn": a fork of the app would copy its threads' locks (Gradio's, torch's) in whatever state they are
SPAWN = multiprocessing.get_context("spawn")
STOP = None  # the message that asks a worker to exit
# Windows captioned in one batch at most, however many requests they come from: 4 listeners' first windows
# (the app's default request), and few enough that a task waiting for a free worker is not held up long by
# the batch before it (docs/benchmark_runs/2026-12-03-caption-batching.md)
BATCH_WINDOWS = 8
# How long a batchable task waits at most for requests still computing their features (the module's
# docstring): about one window's features on a loaded 2-core machine with 4 requests computing theirs
HOLD_S = 0.5


class WorkerDied(RuntimeError):
    """The worker process captioning a task stopped before it answered."""


@dataclass
class Task:
    """One captioner on a request's windows (``clips``, pickled when submitted, with the features they
    carry), and the future its answer goes to."""

    model: str
    clips: bytes
    windows: int
    decoding: dict[str, Any]
    future: Future = field(default_factory=Future)
    queued_at: float = field(default_factory=time.monotonic)


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

    Tasks of a captioner in ``batched`` with the same decoding, and not sampling (a seeded sampler draws
    once per search: a window in a batch would draw differently), are captioned together, up to
    ``batch_windows`` windows (the module's docstring); while other requests are :meth:`coming`, such a
    task waits for theirs up to ``hold_s``.

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
        batched: Collection[str] = (),
        batch_windows: int = BATCH_WINDOWS,
        hold_s: float = HOLD_S,
    ):
        if count < 1:
            raise ValueError(f"a worker pool needs at least one worker, not {count}")
        if batch_windows < 1:
            raise ValueError(f"a batch holds at least one window, not {batch_windows}")
        self.models = list(models)
        self.count = count
        self.batched = frozenset(batched)
        self.batch_windows = batch_windows
        self.hold_s = hold_s
        self._start_args = (str(checkpoints_dir), self.models, warm_up_clips, clean_text, threads)
        self._lock = threading.Lock()
        self._queue: deque[Task] = deque()
        self._idle: list[_Worker] = []
        self._workers: list[_Worker] = []
        self._closed = False
        self._coming = 0  # requests computing the features of the tasks they will submit
        self._wake: threading.Timer | None = None  # dispatches again when the oldest task's hold ends
        for _ in range(count):
            self._start_worker()
        atexit.register(self.close)

    def submit(self, clips: list[Clip], model: str, decoding: dict[str, Any]) -> Future:
        """A future of the :class:`Answer` of ``model`` on ``clips`` (their features go along, as they are
        now). Clips that do not pickle fail this future alone."""
        # Pickle is only the pipe's format between this process and the workers it spawned (multiprocessing
        # pickles whatever a Connection sends); nothing from outside is ever unpickled. It is done here, in
        # the request's thread, rather than under the lock.
        try:
            pickled = pickle.dumps(clips, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as error:
            future = Future()
            future.set_exception(error)
            return future
        task = Task(model, pickled, len(clips), dict(decoding))
        with self._lock:
            if self._closed:
                raise RuntimeError("the caption workers are shut down")
            while len(self._workers) < self.count:  # one that could not start is tried again on demand
                self._start_worker()
            self._queue.append(task)
            self._dispatch()
        return task.future

    @contextmanager
    def coming(self) -> Iterator[None]:
        """The block in which a request computes its windows' features and submits its tasks: meanwhile
        the tasks of other requests that would batch with its own wait for them (the module's docstring)."""
        with self._lock:
            self._coming += 1
        try:
            yield
        finally:
            with self._lock:
                self._coming -= 1
                self._dispatch()

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
            if self._wake is not None:
                self._wake.cancel()
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
        """Hands queued tasks to idle workers, a batch at a time. Called with the lock held."""
        while self._queue and self._idle and not self._holding():
            tasks = self._next_batch()
            if not tasks:  # cancelled while it waited
                continue
            worker = self._idle.pop()
            worker.tasks = tasks
            try:
                worker.connection.send((tasks[0].model, [task.clips for task in tasks], tasks[0].decoding))
            except OSError:  # it died just now: its listener fails the tasks and replaces it
                pass

    def _holding(self) -> bool:
        """Whether the oldest queued task waits for the requests :meth:`coming`: it is batchable, its batch
        is not full yet and it has waited less than ``hold_s`` (a timer dispatches again then). Called
        with the lock held."""
        oldest = self._queue[0]
        if not self._coming or not self._batchable(oldest):
            return False
        held_until = oldest.queued_at + self.hold_s
        batch = [task for task in self._queue if _captioned_alike(task, oldest)]
        if time.monotonic() >= held_until or sum(task.windows for task in batch) >= self.batch_windows:
            return False
        if self._wake is None:
            self._wake = threading.Timer(held_until - time.monotonic(), self._end_hold)
            self._wake.daemon = True
            self._wake.start()
        return True

    def _end_hold(self) -> None:
        with self._lock:
            self._wake = None
            if not self._closed:
                self._dispatch()

    def _batchable(self, task: Task) -> bool:
        """Whether later tasks may join ``task``'s batch: its captioner batches and it does not sample."""
        return task.model in self.batched and not task.decoding.get("do_sample")

    def _next_batch(self) -> list[Task]:
        """The oldest queued task and the later ones captioned with it (same captioner, same decoding, up
        to ``batch_windows`` windows in all), taken off the queue; those cancelled are dropped. Called with
        the lock held."""
        oldest = self._queue.popleft()
        if not oldest.future.set_running_or_notify_cancel():
            return []
        tasks, windows = [oldest], oldest.windows
        if not self._batchable(oldest):
            return tasks
        for task in list(self._queue):
            if windows >= self.batch_windows:
                break
            if not _captioned_alike(task, oldest):
                continue
            if windows + task.windows > self.batch_windows:
                continue
            self._queue.remove(task)
            if task.future.set_running_or_notify_cancel():
                tasks.append(task)
                windows += task.windows
        return tasks

    def _listen(self, worker: _Worker) -> None:
        """One worker's answers, in a thread of its own: each sets its tasks' futures (an answer or an
        error per task), and the worker takes the next batch. When the worker's pipe closes, it died (or
        was stopped)."""
        while True:
            try:
                message = worker.connection.recv()
            except (EOFError, OSError):
                break
            with self._lock:
                tasks, worker.tasks = worker.tasks, []
                worker.ready = True  # its first message says it has loaded and warmed up
                self._idle.append(worker)
                self._dispatch()
            if not tasks:
                continue
            for task, reply in zip(tasks, message, strict=True):
                if isinstance(reply, Answer):
                    task.future.set_result(reply)
                else:
                    task.future.set_exception(RuntimeError(reply))
        worker.process.join()
        self._replace(worker)

    def _replace(self, worker: _Worker) -> None:
        with self._lock:
            self._workers.remove(worker)
            if worker in self._idle:
                self._idle.remove(worker)
            code = worker.process.exitcode
            if self._closed:
                for task in worker.tasks:
                    task.future.set_exception(RuntimeError("the caption workers were shut down"))
                return
            if not worker.ready:
                # A worker that cannot even load would fail again at once: the tasks waiting for it fail
                # now, and the next request tries a new one (submit), instead of a restart loop.
                if not self._workers:
                    self._fail_queued(WorkerDied(f"the captioning worker could not start (exit code {code})"))
                return
            if worker.tasks:
                together = (
                    f" ({len(worker.tasks)} requests' windows in one batch)" if len(worker.tasks) > 1 else ""
                )
                died = (
                    f"the captioning worker (pid {worker.process.pid}) stopped with exit code {code} "
                    f"while captioning with {worker.tasks[0].model}{together}; a new worker replaces it"
                )
                for task in worker.tasks:  # every request of its batch: any of them may have caused it
                    task.future.set_exception(WorkerDied(died))
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
    tasks: list[Task] = field(
        default_factory=list
    )  # the batch it is captioning; none while it loads or idles
    ready: bool = False  # loaded and warmed up


def _captioned_alike(task: Task, other: Task) -> bool:
    """Whether ``task`` can be captioned in ``other``'s batch: the same captioner with the same decoding."""
    return task.model == other.model and task.decoding == other.decoding


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
        model, pickled_clips, decoding = message
        replies = caption_tasks(studio, model, [pickle.loads(clips) for clips in pickled_clips], decoding)
        try:
            connection.send(replies)
        except BrokenPipeError:  # the main process went away while we captioned
            return


def caption_tasks(
    studio, model: str, tasks: list[list[Clip]], decoding: dict[str, Any]
) -> list[Answer | str]:
    """Each task's :class:`Answer` (or its error, a string): ``model`` on every task's windows in one
    batch, split back per task. A batch with a failed caption is captioned again task by task, so that
    what one request sent fails that request alone, as when each task ran by itself."""
    from musiccap.studio import CompareOptions

    options = CompareOptions(decoding=decoding)
    computed_before = [[set(clip.timings) for clip in clips] for clips in tasks]
    try:
        if len(tasks) > 1:
            captions = studio.caption_windows(list(chain(*tasks)), model, options)
            if not any(caption.error for caption in captions):
                per_task, start = [], 0
                for clips in tasks:
                    per_task.append(captions[start : start + len(clips)])
                    start += len(clips)
                return [
                    answer(c, clips, before) for c, clips, before in zip(per_task, tasks, computed_before)
                ]
        replies = []
        for clips, before in zip(tasks, computed_before):
            replies.append(answer(studio.caption_windows(clips, model, options), clips, before))
        return replies
    except Exception as error:  # e.g. a model this worker does not serve: the tasks fail, not the worker
        return [f"{type(error).__name__}: {error}"] * len(tasks)


def answer(captions: list, clips: list[Clip], computed_before: list[set[str]]) -> Answer:
    """A task's answer from its captions (ModelCaptions), with the shared features computed since
    ``computed_before``."""
    timings = [
        {key: seconds for key, seconds in clip.timings.items() if key not in before}
        for clip, before in zip(clips, computed_before)
    ]
    return Answer([(c.result, c.error) for c in captions], captions[0].latency_s, timings)
