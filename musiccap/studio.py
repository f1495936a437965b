"""Every shipped captioner loaded once, run on one piece of audio: what the app, CLI and benchmark share.

The studio owns the expensive shared parts (the embedded audio encoder, the CLAP scorer) so a
window's features are computed once and reused by every captioner and by the similarity chart.
"""

from __future__ import annotations

import time
from concurrent.futures import as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from musiccap.analysis import Analysis, facts, grounding
from musiccap.audio import WINDOW_S, Audio, Window, from_array, load_audio, windows
from musiccap.clip import ANALYSIS, AUDIO_FEATURES, LYRICS, Clip
from musiccap.conditioning import clip_analysis
from musiccap.decoding import DecodingConfig
from musiccap.features import audio_features
from musiccap.models.base import Captioner, CaptionResult, Neighbour, load_captioner
from musiccap.registry import CAPTIONER, CHECKPOINTS, REGISTRY

DEFAULT_CHECKPOINTS = CHECKPOINTS
NEIGHBOUR = "neighbour caption"  # similarity label of the nearest training caption
REFERENCE = "reference (yours)"  # similarity label of the user's own caption
MEAN_VIEW = "mean over layers and heads"  # the heatmap view every attending captioner has
WARM_UP_TOKENS = 8  # the warm-up's captions: long enough to run every decoder step's code path
LONG_AUDIO_BATCH = 18  # windows captioned together on the CLI's long-audio path: a 3-minute track at once
# Captioners that stay in the main process when there are caption workers: the random floor reads no audio
# and answers in microseconds, so it is the first caption on screen, before the features' time
IN_PROCESS = ("random",)
# A captioner this much quicker than the slowest goes to the workers first (Studio._dispatch_order)
QUICK_SHARE = 0.25


@dataclass
class CompareOptions:
    """What a comparison request asks for (the Gradio tab's inputs, the CLI's options)."""

    window_mode: str = "first"  # first, middle or all
    max_windows: int = 6
    lyrics: str | None = None  # ALCAP reads them
    reference: str | None = None  # the user's own caption, scored in CLAP space beside the models'
    decoding: dict[str, Any] = field(default_factory=dict)  # overrides of each captioner's own decoding


@dataclass
class Heatmap:
    """A captioner's cross-attention on one window: generated tokens x audio time, per view."""

    tokens: list[str]
    times: np.ndarray | None  # [n_times] seconds from the window start
    views: dict[str, np.ndarray | None]  # MEAN_VIEW first, then e.g. "layer 2, head 1"
    offset_s: float  # the window's start in the file


@dataclass
class ModelCaption:
    """One captioner on one window. ``latency_s`` is the captioner's own wall-clock time: its call
    less the shared features (musicnn, CLAP log-mel) it happened to compute first for every captioner."""

    model: str
    window: Window
    result: CaptionResult | None = None
    error: str = ""  # one failing captioner is reported, the others still answer
    latency_s: float = 0.0
    clap_similarity: float | None = None  # set when it is scored (Studio.compare says when)
    facts: dict | None = None  # its statements against the window's analysis (musiccap.analysis.facts)
    grounding: float | None = None  # share of its checkable statements that agree with the analysis
    analysis: Analysis | None = None  # the window's analysis its facts were checked against: set when scored

    @property
    def heatmap(self) -> Heatmap | None:
        if self.result is None:
            return None
        views = {MEAN_VIEW: self.result.attention, **self.result.attention_views}
        return Heatmap(self.result.tokens, self.result.attention_times, views, self.window.start_s)


@dataclass
class WindowComparison:
    """Every captioner's answer for one window, with what the comparison shows beside them."""

    index: int
    window: Window
    captions: list[ModelCaption]
    neighbour: Neighbour | None  # the nearest training caption, from the first captioner that retrieves one
    similarity: dict[str, float]  # CLAP audio-text score by model name, NEIGHBOUR and REFERENCE
    tags: dict[str, float]  # musicnn's top tags
    features_s: float  # the shared features' time on this window
    analysis: Analysis | None = None  # what the audio says (tempo, key, drums, families), the facts' truth


class Studio:
    """``clean_text``: show captions cleaned (musiccap/text.py) rather than as decoded, the paper's text.

    :meth:`start_workers` starts processes that caption a comparison's windows beside this one
    (musiccap/worker_pool.py), so that two captioners run at once on two cores. The captioners are
    loaded here as well: the other paths (the arena, the listening check, a captioner the workers do not
    serve) caption in-process, and so does a comparison while no worker is ready. :meth:`close` stops
    the workers.
    """

    def __init__(
        self,
        checkpoints_dir: str | Path = DEFAULT_CHECKPOINTS,
        models: list[str] | None = None,
        *,
        clean_text: bool = True,
    ):
        self.checkpoints_dir = Path(checkpoints_dir)
        self.clean_text = clean_text
        self.captioners: dict[str, Captioner] = {}
        self.load_errors: dict[str, str] = {}
        found = {
            name: self.checkpoints_dir / entry.source
            for name, entry in REGISTRY.items()
            if entry.role == CAPTIONER and (self.checkpoints_dir / entry.source / "config.json").is_file()
        }
        wanted = models or list(found)  # registry (display) order
        for name in wanted:
            unregistered = self.checkpoints_dir / name  # a run of one's own, asked for by folder name
            if name not in REGISTRY and (unregistered / "config.json").is_file():
                found[name] = unregistered
            if name not in found:
                raise ValueError(
                    f"no checkpoint named {name!r} in {self.checkpoints_dir}; have {sorted(found)}"
                )
            try:
                self.captioners[name] = load_captioner(found[name])
            except Exception as error:  # one broken checkpoint must not take the others down
                self.load_errors[name] = f"{type(error).__name__}: {error}"
        self._scorer = None
        self.workers = None
        self._latency_s: dict[str, float] = {}  # each captioner's last: their order to the workers

    def start_workers(self, count: int, batch_windows: int | None = None) -> None:
        """Starts ``count`` caption worker processes (none for 0). They load in the background: until one
        is ready, comparisons caption in this process. The app starts them after its warm-up, so that
        they do not slow its start. Concurrent requests' windows are captioned together, up to
        ``batch_windows`` at once (default ``worker_pool.BATCH_WINDOWS``), by every captioner that does
        not sample by default (the requests' own decoding is checked per request)."""
        if not count:
            return
        import torch

        from musiccap.worker_pool import BATCH_WINDOWS, CaptionWorkers

        # The workers warm up on a clip whose features are computed here, as every clip they get will
        # be: a worker that computed features itself would hold the audio encoder (~170 MB) too
        warm_up_clips = self.clips(warm_up_tone())
        for clip in warm_up_clips:
            clip_analysis(clip)  # reads the audio features: both computed
        pooled = [name for name in self.captioners if name not in IN_PROCESS]
        self.workers = CaptionWorkers(
            self.checkpoints_dir,
            pooled,
            warm_up_clips,
            clean_text=self.clean_text,
            count=count,
            threads=torch.get_num_threads(),
            batched=[name for name in pooled if not self.captioners[name].default_decoding.do_sample],
            batch_windows=batch_windows or BATCH_WINDOWS,
        )

    def close(self) -> None:
        """Stops the caption workers (also done at exit)."""
        if self.workers is not None:
            self.workers.close()

    @property
    def scorer(self):
        """CLAP similarity (None when no CLAP checkpoint is shipped)."""
        clap = self.checkpoints_dir / REGISTRY["clap"].source
        if self._scorer is None and (clap / "config.json").is_file():
            from musiccap.scoring import ClapScorer

            self._scorer = ClapScorer.embedded(clap)
        return self._scorer

    def clips(
        self, audio: Audio, window_mode: str = "first", max_windows: int = 6, lyrics: str | None = None
    ):
        result = []
        for window in windows(audio, window_mode, max_windows=max_windows):
            clip = Clip(window)
            if lyrics and lyrics.strip():
                clip.put(LYRICS, lyrics.strip())
            result.append(clip)
        return result

    def caption_clip(self, clip: Clip, name: str, decoding: DecodingConfig | None = None) -> CaptionResult:
        return self.caption_clips([clip], name, decoding)[0]

    def caption_clips(
        self, clips: list[Clip], name: str, decoding: DecodingConfig | None = None
    ) -> list[CaptionResult]:
        """One captioner on several windows in one batch (``Captioner.caption_batch``; one window goes
        through ``Captioner.caption``, the one call every captioner answers)."""
        captioner = self.captioners[name]
        decoding = (decoding or captioner.default_decoding).replace(
            clean_text=self.clean_text, dedupe_sentences=self.clean_text
        )
        started = time.perf_counter()
        if len(clips) == 1:
            results = [captioner.caption(clips[0], decoding)]
        else:
            results = captioner.caption_batch(clips, decoding)
        share = (time.perf_counter() - started) / len(clips)
        for result in results:
            result.timings.setdefault("total", share)
        return results

    def compare(self, audio: Audio, options: CompareOptions | None = None, *, window_batch: int = 1):
        """Generator: a :class:`ModelCaption` as each captioner finishes a window, then that window's
        :class:`WindowComparison`. The one path from audio to a comparison: the CLI and the app render it.

        With ``window_batch`` 1 (the app's path) each caption comes scored (CLAP similarity, fact check)
        once its window's shared audio features are computed, which the CLAP audio embedding and the
        analysis read: a caption that came before them (the random floor reads no audio) is scored with
        the next caption, so that the first caption is not held up by the features' time; the neighbour
        and the user's caption are scored with the window.

        ``window_batch`` > 1 captions that many windows at a time, each captioner once on the whole
        batch (the long-audio path: one decoder call instead of one per window); the batch's
        ModelCaptions come as each captioner finishes it, then each window's WindowComparison, which
        scores all its captions in one CLAP text pass.

        With caption workers the captioners finish in no fixed order (display order in-process); a
        window's WindowComparison lists its captions in display order either way, and every caption of a
        window comes before it."""
        options = options or CompareOptions()
        clips = self.clips(audio, options.window_mode, options.max_windows, options.lyrics)
        if options.decoding.get("do_sample"):
            window_batch = 1  # a seeded sampler draws once per search: batched windows would draw differently
        for first in range(0, len(clips), window_batch):
            batch = clips[first : first + window_batch]
            captions = [[] for _ in batch]
            for answers in self._captions_as_they_come(batch, options):
                for clip, window_captions, caption in zip(batch, captions, answers):
                    window_captions.append(caption)
                    if window_batch == 1 and AUDIO_FEATURES in clip.features:
                        self._score(clip, window_captions)  # and a caption that came before the features
                    yield caption
            order = list(self.captioners)  # a window's captions in display order, however they came
            for offset, (clip, window_captions) in enumerate(zip(batch, captions)):
                window_captions.sort(key=lambda caption: order.index(caption.model))
                yield self._complete(first + offset, clip, window_captions, options.reference)

    def _captions_as_they_come(self, clips: list[Clip], options: CompareOptions):
        """Each captioner's captions of a batch of windows (a list, one per window), as each finishes.

        In-process, one captioner after the other in display order: so too while no worker is ready (the
        app serves while they load, and while a crashed one is replaced). With workers, the captioners they
        do not serve first (the random floor), then the windows' shared features once here (musicnn and the
        analysis: sent with the clips, so no worker computes them again; meanwhile other requests' tasks
        wait to be batched with this one's: ``CaptionWorkers.coming``), then every other captioner on
        the workers (in :meth:`_dispatch_order`), while this process embeds the audio for the CLAP scores."""
        serving = self.workers is not None and self.workers.ready_count() > 0  # none while they load
        pooled = [name for name in self.captioners if serving and name in self.workers.models]
        for name in self.captioners:
            if name not in pooled:
                yield self.caption_windows(clips, name, options)
        if not pooled:
            return
        with self.workers.coming():  # meanwhile other requests' tasks wait to be batched with ours
            for clip in clips:
                clip_analysis(clip)  # reads the audio features: both computed here
            pooled.sort(key=self._dispatch_order)
            futures = {self.workers.submit(clips, name, options.decoding): name for name in pooled}
        if self.scorer is not None:
            for clip in clips:
                self.scorer.embed_clip(clip)
        try:
            for future in as_completed(futures):
                yield self._worker_captions(clips, futures[future], future)
        finally:  # a request given up (the page closed): its captioners still queued are not run
            for future in futures:
                future.cancel()

    def _dispatch_order(self, name: str) -> tuple[bool, float]:
        """The order captioners go to the workers, by their last latency: the quick ones first, quickest
        first (a caption on screen at once, for next to nothing at the end), then the slowest first, so
        that the workers end close together (each takes the next when it is free)."""
        latency_s = self._latency_s.get(name, 0.0)
        quick = latency_s < QUICK_SHARE * max(self._latency_s.values(), default=0.0)
        return (False, latency_s) if quick else (True, -latency_s)

    def _worker_captions(self, clips: list[Clip], name: str, future) -> list[ModelCaption]:
        """A worker's answer as ModelCaptions; a worker that failed (or died) is each caption's error."""
        try:
            answer = future.result()
        except Exception as error:
            return [
                ModelCaption(name, clip.window, error=f"{type(error).__name__}: {error}") for clip in clips
            ]
        self._latency_s[name] = answer.latency_s
        captions = []
        for clip, (result, error), timings in zip(
            clips, answer.captions, answer.feature_timings, strict=True
        ):
            for key, seconds in timings.items():  # shared features the worker computed, e.g. MusCaps' mel
                clip.timings.setdefault(key, seconds)
            captions.append(ModelCaption(name, clip.window, result, error, answer.latency_s))
        return captions

    def warm_up(self) -> WindowComparison:
        """One short comparison of a synthetic tone, done once at app start: it loads what loads lazily
        (the embedded audio encoder, the CLAP scorer) and runs every captioner once, so that the first
        user's request costs what every later one does."""
        options = CompareOptions(reference="a tone", decoding={"max_new_tokens": WARM_UP_TOKENS})
        *_, comparison = self.compare(warm_up_tone(), options)
        return comparison

    def caption_windows(self, clips: list[Clip], name: str, options: CompareOptions) -> list[ModelCaption]:
        """One captioner on a batch of windows; each caption's latency is an equal share of the batch's.
        A failing captioner's error is each caption's (what a caption worker runs, too)."""
        captioner = self.captioners[name]
        decoding = captioner.default_decoding.replace(**options.decoding) if options.decoding else None
        computed_before = [set(clip.timings) for clip in clips]
        started = time.perf_counter()
        captions = [ModelCaption(name, clip.window) for clip in clips]
        try:
            for caption, result in zip(captions, self.caption_clips(clips, name, decoding), strict=True):
                caption.result = result
        except Exception as error:  # one failing captioner is reported, the others still answer
            for caption in captions:
                caption.error = f"{type(error).__name__}: {error}"
        shared = sum(
            seconds
            for clip, before in zip(clips, computed_before)
            for key, seconds in clip.timings.items()
            if key not in before
        )
        latency_s = (time.perf_counter() - started - shared) / len(clips)
        for caption in captions:
            caption.latency_s = latency_s
        self._latency_s[name] = latency_s
        return captions

    def _score(
        self, clip: Clip, captions: list[ModelCaption], others: dict[str, str] | None = None
    ) -> dict[str, float]:
        """Scores the answered captions not scored yet: their CLAP similarity and their facts against the
        window's analysis (both the audio embedding and the analysis are computed once per window).
        ``others`` (label: text) are scored in the same CLAP text pass; returns their similarities."""
        todo = [c for c in captions if c.result is not None and c.analysis is None]
        others = others or {}
        texts = [c.result.text for c in todo] + list(others.values())
        scores = self.similarity(clip, texts) or [None] * len(texts)
        analysis = clip_analysis(clip)  # reuses the window's musicnn pass; shared with conditioned captioners
        for caption, score in zip(todo, scores):
            caption.clap_similarity = score
            caption.facts = facts(caption.result.text, analysis)
            caption.grounding = grounding(caption.facts)
            caption.analysis = analysis
        return {label: score for label, score in zip(others, scores[len(todo) :]) if score is not None}

    def _complete(self, index: int, clip: Clip, captions: list[ModelCaption], reference: str | None):
        answered = [c for c in captions if c.result is not None]
        neighbour = next((c.result.neighbour for c in answered if c.result.neighbour), None)
        others = {}
        if neighbour is not None:
            others[NEIGHBOUR] = neighbour.text
        if reference and reference.strip():
            others[REFERENCE] = reference.strip()
        scored = self._score(clip, answered, others)  # the captions scored as they came are not scored again
        similarity = {c.model: c.clap_similarity for c in answered if c.clap_similarity is not None}
        similarity.update(scored)
        analysis = clip_analysis(clip)
        features_s = sum(seconds for name, seconds in clip.timings.items() if name != ANALYSIS)
        return WindowComparison(
            index, clip.window, captions, neighbour, similarity, self.tags(clip), features_s, analysis
        )

    def similarity(self, clip: Clip, texts: list[str]) -> list[float] | None:
        if self.scorer is None or not texts:
            return None
        embedding = self.scorer.embed_clip(clip)
        return [float(s) for s in self.scorer.audio_text(np.asarray([embedding] * len(texts)), texts)]

    def tags(self, clip: Clip, k: int = 10) -> dict[str, float]:
        tags = audio_features(clip).tags
        return dict(sorted(tags.items(), key=lambda item: -item[1])[:k])


def warm_up_tone() -> Audio:
    """One window (10 s) of a 440 Hz tone at 44.1 kHz: what the studio and each caption worker warm up on.
    A whole window at an upload's usual rate, because a shorter or 16 kHz tone left the first real
    request to pay for the encoders' first full-size tensors and the resampler (measured: the first
    requests after start took 1.6x a warm one)."""
    rate = 44_100
    tone = 0.3 * np.sin(2 * np.pi * 440.0 * np.arange(int(WINDOW_S * rate)) / rate).astype(np.float32)
    return from_array(tone, rate, source="warm-up tone")


def load(name_or_path: str | Path, checkpoints: str | Path | None = None) -> Captioner:
    """A captioner by registry name (from ``checkpoints``, default the repository's) or checkpoint folder."""
    if str(name_or_path) in REGISTRY:
        if REGISTRY[str(name_or_path)].role != CAPTIONER:
            raise ValueError(f"{name_or_path!r} is a component, not a captioner")
        return load_captioner(Path(checkpoints or CHECKPOINTS) / REGISTRY[str(name_or_path)].source)
    return load_captioner(name_or_path)


def caption(
    audio_file: str | Path, model: str | Path = "csa", window_mode: str = "first", *, clean_text: bool = True
) -> list[CaptionResult]:
    """Caption a file's 10 s windows (``first``, ``middle`` or ``all``) with one captioner."""
    captioner = load(model)
    decoding = captioner.default_decoding.replace(clean_text=clean_text, dedupe_sentences=clean_text)
    return captioner.caption_batch([Clip(w) for w in windows(load_audio(audio_file), window_mode)], decoding)
