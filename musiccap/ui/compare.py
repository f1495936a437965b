"""The Compare tab: one clip in, every captioner's caption, attention and CLAP similarity out.

It renders ``Studio.compare`` (musiccap/studio.py), the one path from audio to a comparison that
the CLI renders too. Captions appear one by one as each captioner finishes (the handler is a
generator); the audio's features are computed once per window and shared by every captioner.
"""

from __future__ import annotations

import time
from pathlib import Path

import gradio as gr

from musiccap.audio import AudioError, load_audio, windows
from musiccap.studio import MEAN_VIEW, NEIGHBOUR, REFERENCE, CompareOptions, Studio, WindowComparison
from musiccap.ui.plots import attention_heatmap, similarity_chart

MAX_WINDOWS = 6
WINDOW_CHOICES = [
    ("first 10 s", "first"),
    ("middle 10 s", "middle"),
    (f"every 10 s window (at most {MAX_WINDOWS}, spread evenly)", "all"),
]
TABLE_HEADERS = ["window", "model", "caption", "latency (s)", "decoding"]


def _decoding_text(decoding: dict) -> str:
    keys = ("num_beams", "max_new_tokens", "no_repeat_ngram_size", "do_sample", "seed")
    return ", ".join(f"{k}={decoding[k]}" for k in keys if k in decoding) or "—"


def _overrides(beams, max_tokens, no_repeat, sample, seed) -> dict:
    overrides = {}
    if beams:
        overrides["num_beams"] = int(beams)
    if max_tokens:
        overrides["max_new_tokens"] = int(max_tokens)
    if no_repeat is not None and no_repeat >= 0:
        overrides["no_repeat_ngram_size"] = int(no_repeat)
    if sample:
        overrides["do_sample"] = True
        overrides["seed"] = int(seed or 0)
    return overrides


def run_compare(
    studio: Studio, audio_path, window_mode, lyrics, reference, beams, max_tokens, no_repeat, sample, seed
):
    """Generator: renders ``Studio.compare`` as it goes, yielding (status, table, neighbour,
    similarity, heatmap choices, heatmap, tags, heatmaps state)."""
    if not audio_path:
        raise gr.Error("Upload or record a clip first.")
    try:
        audio = load_audio(audio_path)
    except AudioError as error:
        raise gr.Error(str(error)) from error
    options = CompareOptions(
        window_mode or "first",
        MAX_WINDOWS,
        lyrics,
        reference,
        _overrides(beams, max_tokens, no_repeat, sample, seed),
    )
    n_windows = len(windows(audio, options.window_mode, max_windows=MAX_WINDOWS))
    notes = [f"**{Path(audio_path).name}** — {audio.duration_s:.1f} s, {n_windows} window(s)"]
    notes += [f"⚠️ {w}" for w in audio.warnings]
    notes += [f"⚠️ {name} is unavailable: {error}" for name, error in studio.load_errors.items()]
    rows, heatmaps, neighbour_text, tags = [], {}, "", {}
    similarity_figure = None
    started = time.perf_counter()
    total = n_windows * len(studio.captioners)
    for event in studio.compare(audio, options):
        if isinstance(event, WindowComparison):
            if event.index == 0:
                similarity_figure = _similarity_figure(event, several_windows=n_windows > 1)
                tags = event.tags
            continue
        window_label = event.window.label
        if event.error:
            rows.append([window_label, event.model, f"(failed: {event.error})", "", ""])
            continue
        result = event.result
        rows.append(
            [
                window_label,
                event.model,
                result.text,
                f"{event.latency_s:.2f}",
                _decoding_text(result.decoding),
            ]
        )
        heatmaps[f"{event.model} @ {window_label}"] = event.heatmap
        if result.neighbour and not neighbour_text:
            neighbour_text = (
                f"**Nearest training caption** (CLAP audio similarity {result.neighbour.score:.3f}, "
                f"window {window_label}):\n\n> {result.neighbour.text}"
            )
        status = "\n\n".join(
            notes + [f"captioned {len(rows)}/{total} in {time.perf_counter() - started:.1f} s"]
        )
        choices = list(heatmaps)
        yield (
            status,
            rows,
            neighbour_text,
            similarity_figure,
            gr.update(choices=choices, value=choices[0]),
            gr.update(),
            tags,
            heatmaps,
        )
    status = "\n\n".join(notes + [f"done: {total} caption(s) in {time.perf_counter() - started:.1f} s"])
    choices = list(heatmaps)
    with_attention = [k for k in choices if heatmaps[k].views.get(MEAN_VIEW) is not None]
    first = (with_attention or choices or [None])[0]  # open on a captioner that has something to show
    figure = _heatmap_figure(heatmaps, first, MEAN_VIEW) if first else None
    yield (
        status,
        rows,
        neighbour_text,
        similarity_figure,
        gr.update(choices=choices, value=first),
        figure,
        tags,
        heatmaps,
    )


def _similarity_figure(comparison: WindowComparison, several_windows: bool):
    """The first window's CLAP chart: each caption, the neighbour's and the user's own."""
    if not comparison.similarity:
        return None
    label = comparison.window.label
    labels = [
        name if name in (NEIGHBOUR, REFERENCE) or not several_windows else f"{name} @ {label}"
        for name in comparison.similarity
    ]
    title = f"CLAP audio–text similarity, {label}"
    return similarity_chart(labels, list(comparison.similarity.values()), title)


def _heatmap_figure(heatmaps: dict, key: str | None, view: str | None):
    if not key or key not in heatmaps:
        return None
    heatmap = heatmaps[key]
    matrix = heatmap.views.get(view) if view else None
    if matrix is None:
        matrix = heatmap.views.get(MEAN_VIEW)
    return attention_heatmap(heatmap.tokens, matrix, heatmap.times, key, offset_s=heatmap.offset_s)


def build_compare_tab(studio: Studio, examples: list[str]) -> None:
    with gr.Row():
        with gr.Column(scale=2):
            audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Music clip")
            if examples:
                gr.Examples(examples=[[e] for e in examples], inputs=[audio], label="Example clips")
            window_mode = gr.Radio(WINDOW_CHOICES, value="first", label="Which part of the clip")
            lyrics = gr.Textbox(label="Lyrics (optional, used by ALCAP)", lines=2)
            reference = gr.Textbox(
                label="Your own caption (optional): scored in CLAP space beside the models'"
            )
            with gr.Accordion("Decoding", open=False):
                gr.Markdown("0 / -1 keep each model's own default (the paper's setting).")
                beams = gr.Slider(0, 8, value=0, step=1, label="beams (0 = model default)")
                max_tokens = gr.Slider(0, 120, value=0, step=1, label="max new tokens (0 = model default)")
                no_repeat = gr.Slider(
                    -1, 4, value=-1, step=1, label="no-repeat n-gram size (-1 = model default)"
                )
                sample = gr.Checkbox(label="sample instead of beam search")
                seed = gr.Number(value=0, precision=0, label="sampling seed")
            run = gr.Button("Caption", variant="primary")
        with gr.Column(scale=3):
            status = gr.Markdown("Upload or record a clip, then press **Caption**.", elem_id="compare-status")
            table = gr.Dataframe(headers=TABLE_HEADERS, label="Captions", wrap=True, elem_id="captions-table")
            neighbour = gr.Markdown(elem_id="neighbour")
            similarity = gr.Plot(label="CLAP similarity", elem_id="similarity-plot")
            tags = gr.Label(label="musicnn's top tags (MagnaTagATune)", num_top_classes=8)
    with gr.Row():
        heatmap_key = gr.Dropdown(label="Heatmap: captioner and window", choices=[], interactive=True)
        heatmap_view = gr.Dropdown(label="Layer / head", choices=[], interactive=True)
    heatmap = gr.Plot(label="Cross-attention: generated tokens × audio time", elem_id="heatmap-plot")
    state = gr.State({})

    def compare(*args):
        yield from run_compare(studio, *args)

    def choose_heatmap(heatmaps, key):
        views = list(heatmaps[key].views) if key in heatmaps else []
        view = views[0] if views else None
        return gr.update(choices=views, value=view), _heatmap_figure(heatmaps, key, view)

    def choose_view(heatmaps, key, view):
        return _heatmap_figure(heatmaps, key, view)

    run.click(
        compare,
        inputs=[audio, window_mode, lyrics, reference, beams, max_tokens, no_repeat, sample, seed],
        outputs=[status, table, neighbour, similarity, heatmap_key, heatmap, tags, state],
        api_name="compare",
        concurrency_limit=2,
    )
    heatmap_key.change(
        choose_heatmap, inputs=[state, heatmap_key], outputs=[heatmap_view, heatmap], api_name=False
    )
    heatmap_view.change(
        choose_view, inputs=[state, heatmap_key, heatmap_view], outputs=[heatmap], api_name=False
    )
