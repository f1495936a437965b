"""Caption workers (musiccap/worker_pool.py): the compare request captioned in other processes says what
the in-process path says, streams as it does, and survives a worker that dies."""

import os
import pickle
import time
from functools import partial
from types import SimpleNamespace

import numpy as np
import pytest

from musiccap.audio import from_array, load_audio
from musiccap.clip import LYRICS, Clip
from musiccap.conditioning import clip_analysis
from musiccap.registry import CHECKPOINTS
from musiccap.studio import CompareOptions, ModelCaption, Studio, WindowComparison
from musiccap.worker_pool import CaptionWorkers, WorkerDied, _Worker

EXAMPLE = CHECKPOINTS.parent / "examples" / "real-parrotte-desert.ogg"
MODELS = ["random", "nearest", "csa"]  # the in-process floor and two captioners the workers serve
CRASH_EXIT_CODE = 70


class CrashesTheWorker(str):
    """Lyrics whose unpickling ends the process that unpickles them: a worker crash on demand (the main
    process only ever pickles them)."""

    def __reduce__(self):
        return os._exit, (CRASH_EXIT_CODE,)


@pytest.fixture(scope="module")
def studios():
    if not all((CHECKPOINTS / name / "config.json").is_file() for name in ["clap", *MODELS]):
        pytest.skip("no shipped checkpoints")
    in_process, pooled = Studio(models=MODELS), Studio(models=MODELS)
    pooled.start_workers(2)
    wait_for_workers(pooled, 2)  # until then it captions in-process
    yield in_process, pooled
    pooled.close()


def wait_for_workers(studio: Studio, count: int, timeout_s: float = 180) -> None:
    started = time.perf_counter()
    while studio.workers.ready_count() < count:
        assert time.perf_counter() - started < timeout_s, "the caption workers did not start"
        time.sleep(0.1)


def two_windows():
    audio = load_audio(EXAMPLE)
    return from_array(np.tile(audio.samples, 2), audio.sample_rate)


def test_quick_captioners_go_to_the_workers_first_then_the_slowest_first():
    measured = SimpleNamespace(
        _latency_s={"nearest": 0.01, "muscaps": 0.08, "alcap": 0.36, "rgmc": 0.52, "csa": 0.25}
    )
    order = sorted(
        ["csa", "rgmc", "nearest", "alcap", "muscaps", "new"], key=partial(Studio._dispatch_order, measured)
    )
    assert order == [
        "new",
        "nearest",
        "muscaps",
        "rgmc",
        "alcap",
        "csa",
    ]  # never measured: as quick as can be


def test_workers_caption_exactly_what_the_main_process_does(studios):
    in_process, pooled = studios
    options = CompareOptions("all", reference="a folk tune on a synth", decoding={"max_new_tokens": 30})
    alone = [e for e in in_process.compare(two_windows(), options) if isinstance(e, WindowComparison)]
    together = [e for e in pooled.compare(two_windows(), options) if isinstance(e, WindowComparison)]
    assert len(alone) == len(together) == 2
    for one, other in zip(alone, together):
        assert [c.model for c in other.captions] == MODELS  # display order, however they came
        assert [c.result.text for c in one.captions] == [c.result.text for c in other.captions]
        assert [c.facts for c in one.captions] == [c.facts for c in other.captions]
        assert one.similarity == other.similarity and one.neighbour.text == other.neighbour.text
        for mine, theirs in zip(one.captions, other.captions):
            assert mine.result.tokens == theirs.result.tokens
            if mine.result.attention is not None:
                np.testing.assert_array_equal(mine.result.attention, theirs.result.attention)
        assert all(c.latency_s > 0 for c in other.captions if c.model != "random")


def test_the_floor_comes_first_and_each_worker_caption_comes_scored_before_its_window(studios):
    _, pooled = studios
    events = []
    for event in pooled.compare(two_windows(), CompareOptions("all", decoding={"max_new_tokens": 20})):
        scored = isinstance(event, ModelCaption) and event.analysis is not None
        events.append((event, scored))
    for index in range(2):
        window = [(e, scored) for e, scored in events if e.window.index == index]
        (first, first_scored), *others, (comparison, _) = window
        assert first.model == "random" and not first_scored  # before the features: scored with the next
        assert isinstance(comparison, WindowComparison) and comparison.index == index
        assert sorted(e.model for e, _ in others) == ["csa", "nearest"]
        assert all(scored for _, scored in others)
    windows_in_order = [e.window.index for e, _ in events]
    assert windows_in_order == sorted(windows_in_order)  # a window's events all come before the next's


def test_a_worker_that_dies_fails_its_captions_clearly_and_is_replaced(studios, monkeypatch):
    _, pooled = studios
    wait_for_workers(pooled, 2)
    before = set(pooled.workers.pids())
    submit = pooled.workers.submit

    def submit_crashing_csa(clips, model, decoding):
        if model == "csa":
            clips = [Clip(c.window, features={**c.features, LYRICS: CrashesTheWorker("la")}) for c in clips]
        return submit(clips, model, decoding)

    monkeypatch.setattr(pooled.workers, "submit", submit_crashing_csa)
    *_, window = pooled.compare(load_audio(EXAMPLE))
    csa, nearest = (next(c for c in window.captions if c.model == name) for name in ("csa", "nearest"))
    assert csa.result is None and "WorkerDied" in csa.error
    assert f"exit code {CRASH_EXIT_CODE} while captioning with csa" in csa.error
    assert nearest.result is not None and "csa" not in window.similarity
    monkeypatch.undo()

    after = set(pooled.workers.pids())
    assert len(after) == 2 and len(before - after) == 1  # the dead one replaced, the other kept
    wait_for_workers(pooled, 2)
    *_, window = pooled.compare(load_audio(EXAMPLE))
    assert all(c.result is not None for c in window.captions)


def test_a_task_whose_worker_dies_fails_with_the_exit_code(studios):
    _, pooled = studios
    crash = pooled.workers.submit([Clip(None, features={LYRICS: CrashesTheWorker("la")})], "csa", {})
    with pytest.raises(WorkerDied, match=f"exit code {CRASH_EXIT_CODE} while captioning with csa"):
        crash.result(timeout=300)


def test_a_task_that_does_not_pickle_fails_alone(studios):
    _, pooled = studios
    wait_for_workers(pooled, 2)
    unpicklable = pooled.workers.submit([Clip(None, features={LYRICS: lambda: "la"})], "csa", {})
    with pytest.raises(Exception, match="pickle"):
        unpicklable.result(timeout=60)
    *_, window = pooled.compare(load_audio(EXAMPLE))
    assert all(c.result is not None for c in window.captions) and pooled.workers.ready_count() == 2


# ---- cross-request batching: the queue's rules, on a pool whose workers are stand-ins ----------------


class StandInConnection:
    """A worker's pipe that keeps what the pool sends."""

    def __init__(self):
        self.sent = []

    def send(self, message):
        self.sent.append(message)


class StandInProcess:
    pid, exitcode = 0, None

    def join(self, timeout=None):
        pass

    def is_alive(self):
        return False


@pytest.fixture
def stand_in_pool(monkeypatch):
    """Two stand-in workers, csa and nearest batched, at most 3 windows a batch, none idle yet."""

    def start_stand_in(pool):
        pool._workers.append(_Worker(StandInProcess(), StandInConnection(), ready=True))

    monkeypatch.setattr(CaptionWorkers, "_start_worker", start_stand_in)
    pool = CaptionWorkers(
        CHECKPOINTS, MODELS[1:], [], clean_text=True, count=2, threads=1, batched=MODELS[1:], batch_windows=3
    )
    yield pool
    pool.close()


def window_clips(count: int) -> list[Clip]:
    return [Clip(None, clip_id=f"w{index}") for index in range(count)]


def free_worker(pool: CaptionWorkers) -> list:
    """A worker becomes idle and takes what the queue gives it: the futures of the tasks it was sent."""
    worker = next(w for w in pool._workers if not w.tasks)
    with pool._lock:
        pool._idle.append(worker)
        pool._dispatch()
    return [task.future for task in worker.tasks]


def test_one_batch_takes_the_oldest_task_and_later_ones_of_its_captioner_up_to_the_cap(stand_in_pool):
    pool = stand_in_pool
    first = pool.submit(window_clips(1), "csa", {})
    other_model = pool.submit(window_clips(1), "nearest", {})
    three_windows = pool.submit(window_clips(3), "csa", {})  # 1 + 3 windows: over the cap of 3
    two_windows = pool.submit(window_clips(2), "csa", {})  # 1 + 2 = 3: the cap
    last = pool.submit(window_clips(1), "csa", {})
    assert free_worker(pool) == [first, two_windows]
    ((model, pickled, decoding),) = pool._workers[0].connection.sent
    assert model == "csa" and decoding == {}
    assert [[clip.id for clip in pickle.loads(clips)] for clips in pickled] == [["w0"], ["w0", "w1"]]
    # The older task of another captioner goes next, then the csa tasks left, oldest first
    assert free_worker(pool) == [other_model]
    pool._workers[0].tasks = []  # the first worker answered
    assert free_worker(pool) == [three_windows]
    pool._workers[1].tasks = []
    assert free_worker(pool) == [last]


def test_a_task_larger_than_the_cap_goes_alone_and_is_not_split(stand_in_pool):
    pool = stand_in_pool
    large = pool.submit(window_clips(5), "csa", {})
    pool.submit(window_clips(1), "csa", {})
    assert free_worker(pool) == [large]


def test_tasks_with_other_decoding_sampling_or_unbatched_captioners_are_not_merged(stand_in_pool):
    pool = stand_in_pool
    pool.batched = frozenset({"csa"})
    short = pool.submit(window_clips(1), "csa", {"max_new_tokens": 20})
    pool.submit(window_clips(1), "csa", {"max_new_tokens": 30})
    assert free_worker(pool) == [short]
    pool._queue.clear()
    sampled = pool.submit(window_clips(1), "csa", {"do_sample": True, "seed": 1})
    pool.submit(window_clips(1), "csa", {"do_sample": True, "seed": 1})
    assert free_worker(pool) == [sampled]
    pool._queue.clear()
    nearest = pool.submit(window_clips(1), "nearest", {})
    pool.submit(window_clips(1), "nearest", {})
    pool._workers[0].tasks = []
    assert free_worker(pool) == [nearest]


def test_a_cancelled_task_is_left_out_of_its_batch(stand_in_pool):
    pool = stand_in_pool
    first = pool.submit(window_clips(1), "csa", {})
    given_up = pool.submit(window_clips(1), "csa", {})
    last = pool.submit(window_clips(1), "csa", {})
    assert given_up.cancel()
    assert free_worker(pool) == [first, last]
    assert not pool._queue


def test_while_a_request_is_coming_a_batchable_task_waits_for_its_tasks(stand_in_pool):
    pool = stand_in_pool
    other_request = pool.coming()
    other_request.__enter__()  # another request computes its features
    with pool.coming():  # this one's submits its task
        first = pool.submit(window_clips(1), "csa", {})
    assert free_worker(pool) == []  # the idle worker waits for the other request
    with pool._lock:
        worker = pool._idle[0]
    second = pool.submit(window_clips(1), "csa", {})
    assert not worker.tasks
    other_request.__exit__(None, None, None)
    assert worker.tasks and [task.future for task in worker.tasks] == [first, second]  # one batch


def test_a_lone_request_waits_for_nobody_and_a_full_batch_goes_at_once(stand_in_pool):
    pool = stand_in_pool
    with pool.coming():
        alone = pool.submit(window_clips(1), "csa", {})
    assert free_worker(pool) == [alone]
    with pool.coming():  # another request is coming, but csa's batch is full already (3 windows)
        full = pool.submit(window_clips(3), "csa", {})
        assert free_worker(pool) == [full]


def test_tasks_that_cannot_batch_do_not_wait(stand_in_pool):
    pool = stand_in_pool
    pool.batched = frozenset({"csa"})
    with pool.coming():
        nearest = pool.submit(window_clips(1), "nearest", {})
        assert free_worker(pool) == [nearest]
        sampled = pool.submit(window_clips(1), "csa", {"do_sample": True, "seed": 1})
        assert free_worker(pool) == [sampled]


def test_a_task_waits_at_most_the_hold(stand_in_pool):
    pool = stand_in_pool
    pool.hold_s = 0.2
    with pool.coming():  # a request slow to compute its features
        first = pool.submit(window_clips(1), "csa", {})
        assert free_worker(pool) == []
        time.sleep(0.6)  # the hold's timer dispatches it
        with pool._lock:
            assert not pool._queue
        assert any(task.future is first for worker in pool._workers for task in worker.tasks)


def test_the_pool_refuses_an_empty_batch_cap():
    with pytest.raises(ValueError, match="at least one window"):
        CaptionWorkers(CHECKPOINTS, MODELS[1:], [], clean_text=True, count=1, threads=1, batch_windows=0)


# ---- cross-request batching on real workers --------------------------------------------------------


def hold_both_workers(pooled: Studio, clips: list[Clip]) -> list:
    """Both workers busy on a long task each (csa on 6 windows): what is submitted next waits in the queue."""
    wait_for_workers(pooled, 2)
    return [pooled.workers.submit(clips * 6, "csa", {}) for _ in range(2)]


def record_batches(pooled: Studio, monkeypatch) -> list[list[str]]:
    """The batches the pool hands out from now on, as the models of their tasks (and their futures)."""
    batches = []
    next_batch = pooled.workers._next_batch

    def recording():
        tasks = next_batch()
        batches.append([task.future for task in tasks])
        return tasks

    monkeypatch.setattr(pooled.workers, "_next_batch", recording)
    return batches


def example_clips(in_process: Studio) -> list[Clip]:
    """The example's window and a second, other window (the example reversed), features computed as
    the studio computes them before it submits."""
    audio = load_audio(EXAMPLE)
    clips = in_process.clips(audio) + in_process.clips(
        from_array(audio.samples[::-1].copy(), audio.sample_rate)
    )
    for clip in clips:
        clip_analysis(clip)
    return clips


def test_concurrent_requests_are_captioned_in_one_batch_and_each_gets_its_own_captions(studios, monkeypatch):
    in_process, pooled = studios
    one, other = example_clips(in_process)
    decoding = {"max_new_tokens": 30}
    busy = hold_both_workers(pooled, [one])
    batches = record_batches(pooled, monkeypatch)
    requests = [([one], "csa"), ([other, one], "csa"), ([one], "nearest"), ([other], "csa")]
    futures = [pooled.workers.submit(clips, model, decoding) for clips, model in requests]
    for future in busy:
        future.result(timeout=300)
    answers = [future.result(timeout=300) for future in futures]
    assert [futures[0], futures[1], futures[3]] in batches and [futures[2]] in batches
    options = CompareOptions(decoding=decoding)
    for (clips, model), answer in zip(requests, answers):
        alone = in_process.caption_windows(clips, model, options)
        assert [result.text for result, _ in answer.captions] == [c.result.text for c in alone]
        assert [result.tokens for result, _ in answer.captions] == [c.result.tokens for c in alone]
        assert len(answer.feature_timings) == len(clips) and answer.latency_s > 0


def test_a_failing_request_in_a_batch_fails_alone(studios, monkeypatch):
    in_process, pooled = studios
    one, other = example_clips(in_process)
    busy = hold_both_workers(pooled, [one])
    batches = record_batches(pooled, monkeypatch)
    no_audio = Clip(None, clip_id="nothing to caption")  # neither audio nor features: csa raises on it
    futures = [pooled.workers.submit(clips, "csa", {}) for clips in ([one], [no_audio], [other])]
    for future in busy:
        future.result(timeout=300)
    first, failed, last = (future.result(timeout=300) for future in futures)
    assert futures in batches  # captioned together first, then again one by one
    ((result, error),) = failed.captions
    assert result is None and "neither audio nor cached features" in error
    assert all(result is not None and not error for result, error in first.captions + last.captions)


def test_a_worker_that_dies_fails_every_task_of_its_batch(studios, monkeypatch):
    in_process, pooled = studios
    one, _ = example_clips(in_process)
    busy = hold_both_workers(pooled, [one])
    batches = record_batches(pooled, monkeypatch)
    crash = Clip(None, features={LYRICS: CrashesTheWorker("la")})
    futures = [pooled.workers.submit(clips, "csa", {}) for clips in ([one], [crash], [one])]
    for future in busy:
        future.result(timeout=300)
    assert futures in batches
    for future in futures:
        with pytest.raises(
            WorkerDied, match=f"exit code {CRASH_EXIT_CODE} while captioning with csa .3 requests"
        ):
            future.result(timeout=300)
    wait_for_workers(pooled, 2)  # replaced


def test_close_stops_every_worker_and_the_studio_captions_in_process(studios):
    in_process, pooled = studios
    pids = pooled.workers.pids()
    pooled.close()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # exited and reaped
    with pytest.raises(RuntimeError, match="shut down"):
        pooled.workers.submit([], "csa", {})
    *_, window = pooled.compare(load_audio(EXAMPLE))  # as while no worker is ready yet
    *_, alone = in_process.compare(load_audio(EXAMPLE))
    assert [c.result.text for c in window.captions] == [c.result.text for c in alone.captions]
