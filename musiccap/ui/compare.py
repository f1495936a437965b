"""The Compare tab: one clip in, every captioner's caption, attention and CLAP similarity out.

It renders ``Studio.compare`` (musiccap/studio.py), the one path from audio to a comparison that
the CLI renders too. Captions appear one by one as each captioner finishes (the handler is a
generator; Gradio's queue sends each yield to the browser as it comes), the heatmap with the first
captioner that attends over audio time, each caption's CLAP score and fact check with it (the random
floor's, which reads no audio, with the next caption: scoring waits for the window's features), the
nearest training caption's and the user's CLAP scores with the window's last caption; the audio's
features are computed once per window and shared by every captioner.
"""

from __future__ import annotations

import html
import re
import shutil
import tempfile
import time
from pathlib import Path

import gradio as gr

from musiccap import export
from musiccap.analysis import Analysis, facts, grounding
from musiccap.audio import AudioError, Window, load_audio, windows
from musiccap.listening_check import CaptionChange, ListeningCheck, listening_check, replacements
from musiccap.studio import (
    MEAN_VIEW,
    NEIGHBOUR,
    REFERENCE,
    CompareOptions,
    ModelCaption,
    Studio,
    WindowComparison,
)
from musiccap.ui.plots import attention_heatmap, similarity_chart

# Every window of a song of up to 6 minutes (36 windows, ~1 minute of captioning on this CPU); a longer
# file gets 36 windows spread evenly, so one upload cannot hold a shared Space for long.
MAX_WINDOWS = 36
WINDOW_CHOICES = [
    ("first 10 s", "first"),
    ("middle 10 s", "middle"),
    (f"every 10 s window (up to {MAX_WINDOWS}; spread evenly over longer files)", "all"),
]
# Cards wrap their text and flow into as many columns as fit, so seven captions stay readable side by side.
CARDS_CSS = """
.mc-window { margin: 0 0 1rem; }
.mc-window-head { display: flex; align-items: center; gap: .75rem; margin: 0 0 .4rem; }
.mc-time { font-weight: 700; font-variant-numeric: tabular-nums; }
.mc-where { color: var(--body-text-color-subdued); font-size: .85rem; }
.mc-bar { position: relative; flex: 1; height: .5rem; border-radius: .25rem;
  background: var(--background-fill-secondary); border: 1px solid var(--border-color-primary); }
.mc-bar > span { position: absolute; top: 0; bottom: 0; border-radius: .25rem;
  background: var(--color-accent); min-width: 2px; }
.mc-cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(15rem, 1fr)); gap: .6rem; }
.mc-card { display: flex; flex-direction: column; gap: .3rem; min-width: 0; padding: .6rem .75rem;
  border: 1px solid var(--border-color-primary); border-radius: .5rem;
  background: var(--block-background-fill); }
.mc-card h4 { margin: 0; font-size: 1rem; }
.mc-card p { margin: 0; }
.mc-paper { color: var(--body-text-color-subdued); font-size: .78rem; line-height: 1.3; }
.mc-caption { flex: 1; white-space: normal; overflow-wrap: anywhere; line-height: 1.45; }
.mc-meta { color: var(--body-text-color-subdued); font-size: .8rem; font-variant-numeric: tabular-nums; }
.mc-neighbour, .mc-reference { background: var(--background-fill-secondary); border-style: dashed; }
.mc-pending .mc-caption { color: var(--body-text-color-subdued); font-style: italic; }
.mc-failed .mc-caption { color: var(--error-text-color, #b91c1c); }
.mc-facts { display: flex; flex-wrap: wrap; gap: .25rem; }
.mc-badge { padding: 0 .4rem; border-radius: .6rem; border: 1px solid; font-size: .75rem; cursor: help;
  line-height: 1.4; }
.mc-agree { color: #15803d; border-color: #16a34a; background: rgba(22, 163, 74, .12); }
.mc-contradict { color: #b91c1c; border-color: #dc2626; background: rgba(220, 38, 38, .12); }
.mc-unstated { color: var(--body-text-color-subdued); border-color: var(--border-color-primary);
  background: var(--background-fill-secondary); }
.mc-analysis { margin: 0 0 .6rem; padding: .5rem .75rem; border-radius: .5rem;
  border: 1px solid var(--border-color-primary); border-left: 4px solid var(--color-accent);
  background: var(--background-fill-secondary); }
.mc-analysis h4 { margin: 0; font-size: .95rem; }
.mc-analysis p { margin: 0 0 .3rem; }
.mc-analysis dl { display: grid; grid-template-columns: max-content 1fr; gap: .1rem .75rem; margin: 0;
  font-size: .88rem; font-variant-numeric: tabular-nums; }
.mc-analysis dt { font-weight: 600; }
.mc-analysis dd { margin: 0; overflow-wrap: anywhere; }
.mc-evidence { color: var(--body-text-color-subdued); }
"""
LISTENING_CSS = """
.mc-check-head { margin: 0 0 .5rem; }
.mc-check-head p { margin: 0 0 .25rem; }
.mc-verdict { font-weight: 600; font-size: .85rem; }
.mc-change { border-top: 1px solid var(--border-color-primary); padding-top: .3rem; }
.mc-change p { margin: 0 0 .2rem; }
"""


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
    studio: Studio,
    audio_path,
    window_mode,
    lyrics,
    reference,
    beams,
    max_tokens,
    no_repeat,
    sample,
    seed,
    progress=None,
):
    """Generator: renders ``Studio.compare`` as it goes, yielding (status, caption cards, downloads,
    similarity, heatmap choices, heatmap, tags, heatmaps state). ``progress``: Gradio's progress bar,
    advanced with every caption."""
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
    clip_windows = windows(audio, options.window_mode, max_windows=MAX_WINDOWS)
    name = Path(audio_path).name
    notes = [f"**{name}** — {audio.duration_s:.1f} s, {len(clip_windows)} window(s)"]
    notes += [f"⚠️ {w}" for w in audio.warnings]
    notes += [f"⚠️ {model} is unavailable: {error}" for model, error in studio.load_errors.items()]
    reference_text = (reference or "").strip()
    papers = {model: captioner.paper for model, captioner in studio.captioners.items()}
    answered: dict[int, list[ModelCaption]] = {window.index: [] for window in clip_windows}
    completed: dict[int, WindowComparison] = {}
    heatmaps, tags, similarity_figure = {}, {}, None
    shown, figure = None, None  # the heatmap on screen (its key and figure), built when its captioner answers
    started = time.perf_counter()
    total = len(clip_windows) * len(studio.captioners)
    for event in studio.compare(audio, options):
        if isinstance(event, WindowComparison):
            completed[event.window.index] = event
            if event.index == 0:
                similarity_figure = _similarity_figure(event, several_windows=len(clip_windows) > 1)
                tags = event.tags
        else:
            answered[event.window.index].append(event)
            if event.result is not None:
                heatmaps[f"{event.model} @ {event.window.label}"] = event.heatmap
        done = sum(len(captions) for captions in answered.values())
        if progress is not None:
            progress((done, total), desc="captioning", unit="captions")
        status = "\n\n".join(notes + [f"captioned {done}/{total} in {time.perf_counter() - started:.1f} s"])
        choices = list(heatmaps)
        first, heatmap = _heatmap_to_open(heatmaps), gr.update()
        if first not in (None, shown) and heatmaps[first].views.get(MEAN_VIEW) is not None:
            shown = first  # on screen as soon as its captioner answers, sent once
            figure = heatmap = _heatmap_figure(heatmaps, first, MEAN_VIEW)
        yield (
            status,
            caption_cards(clip_windows, answered, completed, papers, audio.duration_s, reference_text),
            gr.update(),
            similarity_figure,
            gr.update(choices=choices, value=shown),
            heatmap,
            tags,
            heatmaps,
        )
    status = "\n\n".join(notes + [f"done: {total} caption(s) in {time.perf_counter() - started:.1f} s"])
    choices = list(heatmaps)
    first = _heatmap_to_open(heatmaps)
    if first != shown:  # no captioner attends over audio time: its figure says so
        figure = _heatmap_figure(heatmaps, first, MEAN_VIEW) if first else None
    comparisons = [completed[window.index] for window in clip_windows]
    folder = Path(tempfile.mkdtemp(prefix="musiccap-"))
    try:
        yield (
            status,
            caption_cards(clip_windows, answered, completed, papers, audio.duration_s, reference_text),
            write_downloads(folder, name, comparisons),
            similarity_figure,
            gr.update(choices=choices, value=first),
            figure,
            tags,
            heatmaps,
        )
    finally:  # Gradio copied the files into its cache before it resumed (or closed) the generator
        shutil.rmtree(folder, ignore_errors=True)


def write_downloads(folder: Path, file_name: str, comparisons: list[WindowComparison]) -> list[str]:
    """The result as JSON (the rows of ``musiccap caption --json``), SRT and WebVTT, named after the
    clip, in ``folder`` (under the temporary directory: Gradio serves them from its cache)."""
    stem = re.sub(r"[^\w.-]+", "_", Path(file_name).stem)[:80] or "clip"
    documents = {
        f"{stem}.captions.json": export.json_document(export.result_rows(file_name, comparisons)),
        f"{stem}.srt": export.srt(comparisons),
        f"{stem}.vtt": export.webvtt(comparisons),
    }
    for document_name, text in documents.items():
        (folder / document_name).write_text(text, encoding="utf-8")
    return [str(folder / document_name) for document_name in documents]


def _escape(text: str) -> str:
    """Model output as inert HTML text. gr.HTML fills its value into a JS template string and a
    Handlebars template, so ``$``, ``{`` and ``}`` are entities too."""
    return html.escape(text).replace("$", "&#36;").replace("{", "&#123;").replace("}", "&#125;")


def _score(value: float | None, pending: bool) -> str:
    if value is not None:
        return f"{value:.3f}"
    return "…" if pending else "—"


def _decoding_text(decoding: dict) -> str:
    keys = ("num_beams", "max_new_tokens", "no_repeat_ngram_size", "do_sample", "seed")
    return ", ".join(f"{k}={decoding[k]}" for k in keys if k in decoding)


def _card(
    kind: str, title: str, subtitle: str, text: str, meta: list[str], meta_hint: str = "", badges: str = ""
) -> str:
    """A caption card; ``badges`` is already escaped HTML (:func:`fact_badges`)."""
    hint = f' title="{_escape(meta_hint)}"' if meta_hint else ""
    return (
        f'<article class="mc-card mc-{kind}"><h4 class="mc-name">{_escape(title)}</h4>'
        f'<p class="mc-paper">{_escape(subtitle)}</p><p class="mc-caption">{_escape(text)}</p>{badges}'
        f'<p class="mc-meta"{hint}>{" · ".join(_escape(m) for m in meta)}</p></article>'
    )


def _grounding(value: float | None, pending: bool) -> str:
    if value is not None:
        return f"{value:.2f}"
    return "…" if pending else "–"  # "–": the caption states nothing the analysis can check


def _words(attribute: str, value) -> str:
    """A fact's said or heard value as words."""
    if attribute == "drums":
        return "drums" if value else "no drums"
    if isinstance(value, list):
        return ", ".join(value) or "none"
    return str(value)


def _evidence(attribute: str, fact: dict, analysis: Analysis) -> str:
    """How sure the analysis is of what it heard: the probes' probability of it."""
    if attribute in analysis.confidence:  # tempo, mode
        return f" (confidence {analysis.confidence[attribute]:.2f})"
    if attribute == "drums" and analysis.drums is not None:
        return f" (probability {analysis.drums:.2f})"
    if attribute == "instruments" and fact["said"] and analysis.families:
        return f" ({', '.join(f'{f} {analysis.families[f]:.2f}' for f in fact['said'])})"
    return ""


# a fact's agree (musiccap.analysis.facts) as a badge's class and mark
BADGES = {True: ("agree", "✓ "), False: ("contradict", "✗ "), None: ("unstated", "")}


def fact_badges(caption_facts: dict[str, dict], analysis: Analysis) -> str:
    """One badge per checked attribute: ✓ agrees with the analysis, ✗ contradicts it, grey when the
    caption does not state it (or the analysis cannot tell); what was said and heard on hover."""
    badges = []
    for attribute, fact in caption_facts.items():
        said, heard, agree = fact["said"], fact["heard"], fact["agree"]
        said_text = "not stated" if said is None else f"said {_words(attribute, said)}"
        heard_text = (
            "the analysis cannot tell"
            if heard is None
            else f"heard {_words(attribute, heard)}{_evidence(attribute, fact, analysis)}"
        )
        verdict = "" if agree is None else " — agrees" if agree else " — contradicts"
        hover = f"{attribute}: {said_text}; {heard_text}{verdict}"
        kind, mark = BADGES[agree]
        badges.append(
            f'<span class="mc-badge mc-{kind}" title="{_escape(hover)}">{_escape(mark + attribute)}</span>'
        )
    return f'<p class="mc-facts">{"".join(badges)}</p>'


def analysis_panel(analysis: Analysis) -> str:
    """The "What the audio says" panel: the window's analysis (musiccap/analysis.py) with each
    estimate's confidence, labelled as the app's own estimate, the yardstick of the caption badges."""
    confidence = analysis.confidence

    def sure(name: str) -> str:
        return f"confidence {confidence[name]:.2f}" if name in confidence else "no confidence (DSP rule)"

    rows = [
        ("tempo", f"{analysis.tempo_bpm:.0f} BPM, {analysis.tempo_class}", sure("tempo")),
        ("key", analysis.key, sure("key")),
        ("mode", analysis.mode, sure("mode")),
    ]
    if analysis.drums is None:
        rows.append(("drums", "not analysed", "no probe file"))
    else:
        heard = "heard" if "drums" in analysis.heard else "not heard"
        rows.append(("drums", heard, f"probability {analysis.drums:.2f}"))
    families = sorted(
        ((f, p) for f, p in analysis.families.items() if f != "drums"), key=lambda item: -item[1]
    )
    if families:
        heard_families = [f for f in analysis.heard if f != "drums"]
        rows.append((
            "instruments",
            f"heard {', '.join(heard_families) or 'none'}",
            " · ".join(f"{family} {p:.2f}" for family, p in families[:4]),
        ))  # fmt: skip
    tags = list(analysis.tags.items())[:5]
    if tags:
        tag_text = " · ".join(f"{tag} {p:.2f}" for tag, p in tags)
        rows.append(("musicnn tags", tag_text, "MagnaTagATune tag probabilities"))
    items = "".join(
        f"<dt>{_escape(name)}</dt>"
        f'<dd>{_escape(value)} <span class="mc-evidence">{_escape(evidence)}</span></dd>'
        for name, value, evidence in rows
    )
    return (
        '<aside class="mc-analysis"><h4>What the audio says</h4><p class="mc-paper">'
        "the app's own analysis of this window (DSP, musicnn's tags and small probes), not ground "
        "truth: each caption's badges are checked against it; confidence and probability are the "
        "analysis's own</p>"
        f"<dl>{items}</dl></aside>"
    )


def _window_cards(
    captions: list[ModelCaption], comparison: WindowComparison | None, papers: dict[str, str], reference: str
) -> list[str]:
    # a model's caption is scored and checked when its event comes (then its ModelCaption has the
    # analysis) or with the window's comparison; the neighbour's and the user's CLAP scores with the latter
    pending = comparison is None
    analysis = _window_analysis(captions, comparison)

    def checked(text: str, caption_facts: dict | None = None) -> tuple[str, str]:
        """The badges and the grounding score of a caption (the studio checks the models' captions;
        the neighbour's and the user's are checked here, against the same analysis)."""
        if analysis is None:
            return "", f"grounding {_grounding(None, pending)}"
        if caption_facts is None:
            caption_facts = facts(text, analysis)
        score = _grounding(grounding(caption_facts), pending=False)
        return fact_badges(caption_facts, analysis), f"grounding {score}"

    cards = []
    answered = {caption.model: caption for caption in captions}
    # one place per captioner, in display order, whichever answers first: cards never move as they fill in
    for model in [*papers, *(m for m in answered if m not in papers)]:
        caption, paper = answered.get(model), papers.get(model, "")
        if caption is None:
            cards.append(_card("pending", model, paper, "captioning…", []))
            continue
        if caption.result is None:
            cards.append(_card("failed", caption.model, paper, f"failed: {caption.error}", []))
            continue
        scored = not pending or caption.analysis is not None
        if scored:
            badges, grounded = checked(caption.result.text, caption.facts)
        else:
            badges, grounded = "", f"grounding {_grounding(None, pending=True)}"
        meta = [
            f"latency {caption.latency_s:.2f} s",
            f"CLAP {_score(caption.clap_similarity, pending=not scored)}",
            grounded,
        ]
        decoding = _decoding_text(caption.result.decoding)  # on hover: the settings that wrote it
        hint = f"decoding: {decoding}" if decoding else ""
        cards.append(_card("model", caption.model, paper, caption.result.text, meta, hint, badges))
    neighbour = comparison.neighbour if comparison else None
    neighbour = neighbour or next(
        (c.result.neighbour for c in captions if c.result and c.result.neighbour), None
    )
    if neighbour is not None:
        similarity = comparison.similarity.get(NEIGHBOUR) if comparison else None
        retrieved = (
            f"the training caption whose audio is nearest (CLAP audio similarity {neighbour.score:.3f})"
        )
        badges, grounded = checked(neighbour.text)
        meta = [f"CLAP {_score(similarity, pending)}", grounded]
        cards.append(
            _card("neighbour", "nearest training caption", retrieved, neighbour.text, meta, badges=badges)
        )
    if reference:
        similarity = comparison.similarity.get(REFERENCE) if comparison else None
        badges, grounded = checked(reference)
        meta = [f"CLAP {_score(similarity, pending)}", grounded]
        scored = "scored and checked like the models' captions"
        cards.append(_card("reference", "your caption", scored, reference, meta, badges=badges))
    return cards


def _window_analysis(captions: list[ModelCaption], comparison: WindowComparison | None) -> Analysis | None:
    """The window's analysis: its comparison's, or before that the one its scored captions were checked
    against."""
    if comparison is not None:
        return comparison.analysis
    return next((caption.analysis for caption in captions if caption.analysis is not None), None)


def caption_cards(
    clip_windows: list[Window],
    answered: dict[int, list[ModelCaption]],
    completed: dict[int, WindowComparison],
    papers: dict[str, str],
    duration_s: float,
    reference: str = "",
) -> str:
    """Every window's captions as side-by-side cards (model, paper, caption, fact-check badges, latency,
    CLAP and grounding scores) with the nearest training caption beside them, under the window's
    analysis ("What the audio says") once its first caption is scored; several windows read as a
    timeline, each labelled mm:ss–mm:ss with a bar showing where in the file it lies. All text is
    escaped: it is model output."""
    sections = []
    for window in clip_windows:
        captions = answered.get(window.index, [])
        comparison = completed.get(window.index)
        cards = _window_cards(captions, comparison, papers, reference)
        analysis = _window_analysis(captions, comparison)
        panel = analysis_panel(analysis) if analysis else ""
        head = f'<span class="mc-time">{window.label}</span>'
        if len(clip_windows) > 1:
            left = 100 * window.start_s / max(duration_s, 1e-9)
            width = 100 * (window.end_s - window.start_s) / max(duration_s, 1e-9)
            head += (
                f'<span class="mc-where">window {window.index + 1} of {len(clip_windows)}</span>'
                f'<span class="mc-bar"><span style="left:{left:.1f}%;width:{width:.1f}%"></span></span>'
            )
        sections.append(
            f'<section class="mc-window"><header class="mc-window-head">{head}</header>{panel}'
            f'<div class="mc-cards">{"".join(cards)}</div></section>'
        )
    return f'<div class="mc-compare">{"".join(sections)}</div>'


def run_listening_check(
    studio: Studio,
    examples: list[str],
    audio_path,
    window_mode,
    lyrics,
    beams,
    max_tokens,
    no_repeat,
    sample,
    seed,
) -> str:
    """The "Is it listening?" control: the first window of the chosen part captioned again with its audio
    replaced by pink noise and by another example clip (musiccap/listening_check.py), as cards."""
    if not audio_path:
        raise gr.Error("Upload or record a clip first.")
    try:
        audio = load_audio(audio_path)
        window = windows(audio, window_mode or "first", max_windows=MAX_WINDOWS)[0]
        replaced = replacements(audio, window, examples)
    except (AudioError, ValueError) as error:  # unreadable audio, a silent window, no other clip
        raise gr.Error(str(error)) from error
    decoding = _overrides(beams, max_tokens, no_repeat, sample, seed)
    check = listening_check(studio, window, replaced, lyrics=lyrics, decoding=decoding)
    return listening_cards(check)


def _change_text(change: CaptionChange) -> str:
    if change.attribute_change is None:
        attributes = "no attribute stated"
    else:
        changed = f" ({', '.join(change.attributes_changed)})" if change.attributes_changed else ""
        attributes = (
            f"attributes changed {len(change.attributes_changed)} of {len(change.attributes_stated)}{changed}"
        )
    return f"{attributes} · text changed {change.text_change:.2f}"


def listening_cards(check: ListeningCheck) -> str:
    """One card per captioner: for each replacement, how much its caption changed and the caption itself.
    All text is escaped: it is model output."""
    sources = {r.kind: r.description for r in check.replacements}
    replaced = "; ".join(f"{kind}: {description}" for kind, description in sources.items())
    head = (
        f'<header class="mc-check-head"><p class="mc-time">{_escape(check.window.label)} captioned again '
        f"with its audio replaced by {_escape(replaced)}.</p>"
        '<p class="mc-meta">attributes changed: of the attributes either caption states (instruments, tempo, '
        "mode, drums, mood, read by the attribute reader), the share whose statement differs; text changed: "
        "1 − the Jaccard similarity of the captions' word sets. A captioner that ignores its audio shows "
        "0.</p></header>"
    )
    cards = []
    for model in check.models:
        if model.error:
            cards.append(_card("failed", model.model, "", f"failed: {model.error}", []))
            continue
        if model.ignores_audio:
            verdict = "ignores its audio: every caption unchanged"
        elif any(not change.error for change in model.changes):
            verdict = "changes with the audio"
        else:
            verdict = "failed on the replaced audio"
        blocks = []
        for change in model.changes:
            if change.error:
                text, meta = f"failed: {change.error}", ""
            else:
                text, meta = change.text, _change_text(change)
            blocks.append(
                f'<div class="mc-change"><p class="mc-paper">with {_escape(sources[change.replacement])}</p>'
                f'<p class="mc-meta">{_escape(meta)}</p><p class="mc-caption">{_escape(text)}</p></div>'
            )
        cards.append(
            f'<article class="mc-card mc-check"><h4 class="mc-name">{_escape(model.model)}</h4>'
            f'<p class="mc-verdict">{verdict}</p>{"".join(blocks)}</article>'
        )
    return f'<div class="mc-listening">{head}<div class="mc-cards">{"".join(cards)}</div></div>'


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


def _heatmap_to_open(heatmaps: dict) -> str | None:
    """The heatmap the tab opens on: the first captioner's that attends over audio time, else the first."""
    with_attention = [key for key, heatmap in heatmaps.items() if heatmap.views.get(MEAN_VIEW) is not None]
    return (with_attention or list(heatmaps) or [None])[0]


def _heatmap_figure(heatmaps: dict, key: str | None, view: str | None):
    if not key or key not in heatmaps:
        return None
    heatmap = heatmaps[key]
    matrix = heatmap.views.get(view) if view else None
    if matrix is None:
        matrix = heatmap.views.get(MEAN_VIEW)
    return attention_heatmap(heatmap.tokens, matrix, heatmap.times, key, offset_s=heatmap.offset_s)


def build_compare_tab(studio: Studio, examples: list[str], concurrency_limit: int = 2) -> None:
    """``concurrency_limit``: captioning requests (compare and listening check together) run at once;
    the rest wait in Gradio's queue (musiccap/ui/app.py chooses it)."""
    with gr.Row():
        with gr.Column(scale=2):
            audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Music clip")
            if examples:
                gr.Examples(examples=[[e] for e in examples], inputs=[audio], label="Example clips")
            window_mode = gr.Radio(WINDOW_CHOICES, value="first", label="Which part of the clip")
            lyrics = gr.Textbox("", label="Lyrics (optional, used by ALCAP)", lines=2)
            reference = gr.Textbox(
                "", label="Your own caption (optional): scored in CLAP space beside the models'"
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
            similarity = gr.Plot(label="CLAP similarity", elem_id="similarity-plot")
            tags = gr.Label(label="musicnn's top tags (MagnaTagATune)", num_top_classes=8)
    # the captions take the page's full width: seven cards side by side stay wide enough to read
    cards = gr.HTML(css_template=CARDS_CSS, elem_id="caption-cards")
    listen = gr.Button("Is it listening?", elem_id="listening-button")
    listening = gr.HTML(css_template=CARDS_CSS + LISTENING_CSS, elem_id="listening-check")
    downloads = gr.File(
        label="Download: the result as JSON, the captions as SRT and WebVTT subtitles",
        file_count="multiple",
        interactive=False,
        elem_id="downloads",
    )
    with gr.Row():
        heatmap_key = gr.Dropdown(label="Heatmap: captioner and window", choices=[], interactive=True)
        heatmap_view = gr.Dropdown(label="Layer / head", choices=[], interactive=True)
    heatmap = gr.Plot(label="Cross-attention: generated tokens × audio time", elem_id="heatmap-plot")
    state = gr.State({})

    # A typed signature: the /compare API's parameter names, ``audio`` first and the rest with defaults
    def compare(
        audio: str,
        window: str = "first",
        lyrics: str = "",
        reference: str = "",
        beams: int = 0,
        max_new_tokens: int = 0,
        no_repeat_ngram_size: int = -1,
        sample: bool = False,
        seed: int = 0,
        progress=gr.Progress(),  # noqa: B008 (Gradio's progress bar is asked for this way; not an API parameter)
    ):
        """Caption a clip with every captioner.

        Args:
            audio: the music clip (any format the app reads)
            window: which 10 s of it: "first", "middle" or "all" (every window, up to 36, spread evenly)
            lyrics: lyrics, read by ALCAP
            reference: your own caption, scored in CLAP space beside the models'
            beams: beam count; 0 keeps each model's default
            max_new_tokens: caption length limit; 0 keeps each model's default
            no_repeat_ngram_size: -1 keeps each model's default
            sample: sample instead of beam search
            seed: the sampling seed
        """
        yield from run_compare(
            studio,
            audio,
            window,
            lyrics,
            reference,
            beams,
            max_new_tokens,
            no_repeat_ngram_size,
            sample,
            seed,
            progress,
        )

    def check_listening(
        audio: str,
        window: str = "first",
        lyrics: str = "",
        beams: int = 0,
        max_new_tokens: int = 0,
        no_repeat_ngram_size: int = -1,
        sample: bool = False,
        seed: int = 0,
    ):
        """Caption the clip's (first) window again with its audio replaced by pink noise of the same
        loudness and by another example clip, and show how much each captioner's caption changed.

        Args:
            audio: the music clip (any format the app reads)
            window: which 10 s of it: "first", "middle" or "all" (its first window)
            lyrics: lyrics, read by ALCAP (kept with the replaced audio)
            beams: beam count; 0 keeps each model's default
            max_new_tokens: caption length limit; 0 keeps each model's default
            no_repeat_ngram_size: -1 keeps each model's default
            sample: sample instead of beam search
            seed: the sampling seed
        """
        return run_listening_check(
            studio, examples, audio, window, lyrics, beams, max_new_tokens, no_repeat_ngram_size, sample, seed
        )

    def choose_heatmap(heatmaps, key):
        views = list(heatmaps[key].views) if key in heatmaps else []
        view = views[0] if views else None
        return gr.update(choices=views, value=view), _heatmap_figure(heatmaps, key, view)

    def choose_view(heatmaps, key, view):
        return _heatmap_figure(heatmaps, key, view)

    run.click(
        compare,
        inputs=[audio, window_mode, lyrics, reference, beams, max_tokens, no_repeat, sample, seed],
        outputs=[status, cards, downloads, similarity, heatmap_key, heatmap, tags, state],
        api_name="compare",
        concurrency_limit=concurrency_limit,
        concurrency_id="captioning",  # both captioning events share one limit: they contend for the cores
    )
    listen.click(
        check_listening,
        inputs=[audio, window_mode, lyrics, beams, max_tokens, no_repeat, sample, seed],
        outputs=[listening],
        api_name="listening_check",
        concurrency_limit=concurrency_limit,
        concurrency_id="captioning",
    )
    heatmap_key.change(
        choose_heatmap, inputs=[state, heatmap_key], outputs=[heatmap_view, heatmap], api_name=False
    )
    heatmap_view.change(
        choose_view, inputs=[state, heatmap_key, heatmap_view], outputs=[heatmap], api_name=False
    )
