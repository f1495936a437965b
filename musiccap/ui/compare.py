"""The Compare tab: one clip in, every captioner's caption, attention and CLAP similarity out.

Captions appear one by one as each captioner finishes (the handler is a generator); the
audio's features are computed once per window and shared by every captioner.
"""

from __future__ import annotations

import time
from pathlib import Path

import gradio as gr

from musiccap.audio import AudioError, load_audio
from musiccap.studio import Studio
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
    """Generator: yields (status, table, neighbour, similarity, heatmap choices, heatmap, tags, state)."""
    if not audio_path:
        raise gr.Error("Upload or record a clip first.")
    try:
        audio = load_audio(audio_path)
    except AudioError as error:
        raise gr.Error(str(error)) from error
    overrides = _overrides(beams, max_tokens, no_repeat, sample, seed)
    clips = studio.clips(audio, window_mode or "first", max_windows=MAX_WINDOWS, lyrics=lyrics)
    notes = [f"**{Path(audio_path).name}** — {audio.duration_s:.1f} s, {len(clips)} window(s)"]
    notes += [f"⚠️ {w}" for w in audio.warnings]
    notes += [f"⚠️ {name} is unavailable: {error}" for name, error in studio.load_errors.items()]
    rows, heatmaps, neighbour_text, tags = [], {}, "", {}
    similarity_figure = None
    started = time.perf_counter()
    total = len(clips) * len(studio.captioners)
    done = 0
    for clip in clips:
        window_label = clip.window.label
        texts, labels = [], []
        for name, captioner in studio.captioners.items():
            decoding = captioner.default_decoding.replace(**overrides) if overrides else None
            try:
                result = studio.caption_clip(clip, name, decoding)
            except Exception as error:  # one failing captioner is reported, the others still answer
                rows.append([window_label, name, f"(failed: {type(error).__name__}: {error})", "", ""])
                done += 1
                continue
            latency = sum(v for k, v in result.timings.items() if k != "total") or result.timings.get(
                "total", 0
            )
            rows.append([window_label, name, result.text, f"{latency:.2f}", _decoding_text(result.decoding)])
            texts.append(result.text)
            labels.append(name if len(clips) == 1 else f"{name} @ {window_label}")
            views = {"mean over layers and heads": result.attention, **result.attention_views}
            heatmaps[f"{name} @ {window_label}"] = {
                "tokens": result.tokens,
                "times": result.attention_times,
                "views": views,
                "offset": clip.window.start_s,
            }
            if result.neighbour and not neighbour_text:
                neighbour_text = (
                    f"**Nearest training caption** (CLAP audio similarity {result.neighbour.score:.3f}, "
                    f"window {window_label}):\n\n> {result.neighbour.text}"
                )
            done += 1
            status = "\n\n".join(
                notes + [f"captioned {done}/{total} in {time.perf_counter() - started:.1f} s"]
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
        if not tags:
            tags = studio.tags(clip)
        if neighbour_text and clip is clips[0]:
            texts.append(neighbour_text.split("> ", 1)[1])
            labels.append("neighbour caption")
        if reference and reference.strip():
            texts.append(reference.strip())
            labels.append("reference (yours)")
        scores = studio.similarity(clip, texts)
        if scores is not None and clip is clips[0]:
            similarity_figure = similarity_chart(
                labels, scores, f"CLAP audio–text similarity, {window_label}"
            )
    status = "\n\n".join(notes + [f"done: {total} caption(s) in {time.perf_counter() - started:.1f} s"])
    choices = list(heatmaps)
    with_attention = [
        k for k in choices if heatmaps[k]["views"].get("mean over layers and heads") is not None
    ]
    first = (with_attention or choices or [None])[0]  # open on a captioner that has something to show
    figure = _heatmap_figure(heatmaps, first, "mean over layers and heads") if first else None
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


def _heatmap_figure(heatmaps: dict, key: str | None, view: str | None):
    if not key or key not in heatmaps:
        return None
    entry = heatmaps[key]
    matrix = entry["views"].get(view) if view else None
    if matrix is None:
        matrix = entry["views"].get("mean over layers and heads")
    return attention_heatmap(entry["tokens"], matrix, entry["times"], key, offset_s=entry["offset"])


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
        views = list(heatmaps.get(key, {}).get("views", {})) if key else []
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
