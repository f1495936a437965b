"""Caption workers (musiccap/worker_pool.py): the compare request captioned in other processes says what
the in-process path says, streams as it does, and survives a worker that dies."""

import os
import time
from functools import partial
from types import SimpleNamespace

import numpy as np
import pytest

from musiccap.audio import from_array, load_audio
from musiccap.clip import LYRICS, Clip
from musiccap.registry import CHECKPOINTS
from musiccap.studio import CompareOptions, ModelCaption, Studio, WindowComparison
from musiccap.worker_pool import WorkerDied

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
