"""The ``musiccap`` command: caption, tags, analyze, eval, serve, bench, deploy.

Bad input (unreadable audio, missing files, bad options) prints one message on stderr and
exits with status 2 — never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from musiccap.audio import AudioError, load_audio
from musiccap.export import FORMATS, SUBTITLE_FORMATS

EXIT_BAD_INPUT = 2


def _fail(message: str) -> int:
    print(f"musiccap: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _decoding_from_args(args):
    from musiccap.decoding import DecodingConfig

    overrides = {
        key: value
        for key, value in {
            "num_beams": args.beams,
            "max_new_tokens": args.max_tokens,
            "no_repeat_ngram_size": args.no_repeat_ngram,
            "do_sample": True if args.sample else None,
            "group_numbers": True if args.group_numbers else None,
            "seed": args.seed,
        }.items()
        if value is not None
    }
    return overrides, DecodingConfig


def cmd_caption(args) -> int:
    from musiccap import export
    from musiccap.studio import LONG_AUDIO_BATCH, CompareOptions, ModelCaption, Studio

    if args.json and args.format not in (None, "json"):
        return _fail(f"--json is --format json; it cannot go with --format {args.format}")
    output_format = args.format or ("json" if args.json else "text")
    if output_format in SUBTITLE_FORMATS and len(args.files) > 1:
        return _fail(f"--format {output_format} writes one file's subtitles; give one audio file per call")
    if args.listening_check and output_format != "json":
        return _fail("--listening-check adds to the JSON rows: use it with --format json")
    if args.max_windows < 0:
        return _fail("--max-windows must be 0 (every window) or more")
    try:
        studio = Studio(
            args.checkpoints,
            None if args.model == "all" else args.model.split(","),
            clean_text=not args.decoded_text,
        )
    except (ValueError, FileNotFoundError) as error:
        return _fail(str(error))
    overrides, _ = _decoding_from_args(args)
    options = CompareOptions(args.window, args.max_windows or None, args.lyrics, decoding=overrides)
    status, unreadable = 0, []
    for file, audio in _decoded(args.files, unreadable):
        comparisons = []
        for event in studio.compare(audio, options, window_batch=LONG_AUDIO_BATCH):
            if isinstance(event, ModelCaption):
                continue  # printed with its window, once the CLAP similarities are in
            comparisons.append(event)
            check = None
            if args.listening_check:
                check, check_status = _listening_check(studio, audio, event, options)
                status = max(status, check_status)
            for caption in event.captions:
                if caption.error:
                    print(
                        f"musiccap: {caption.model} failed on {event.window.label}: {caption.error}",
                        file=sys.stderr,
                    )
                    status = 1
                elif output_format == "json":
                    row = export.caption_row(str(file), caption)
                    if check is not None:
                        row["listening_check"] = check.to_json(caption.model)
                    print(json.dumps(row), flush=True)
                elif output_format == "text":
                    print(export.text_line(caption), flush=True)
        if output_format == "srt":
            print(export.srt(comparisons), end="", flush=True)
        elif output_format == "vtt":
            print(export.webvtt(comparisons), end="", flush=True)
        for name, error in studio.load_errors.items():
            print(f"musiccap: {name} could not be loaded: {error}", file=sys.stderr)
    return max(status, EXIT_BAD_INPUT if unreadable else 0)


def _decoded(files, unreadable: list[str]):
    """Each file that decodes, with its audio (its warnings on stderr); a file that does not is reported on
    stderr and added to ``unreadable``, and the command goes on with the others (then exits 2)."""
    for file in files:
        try:
            audio = load_audio(file)
        except AudioError as error:
            print(f"musiccap: {error}", file=sys.stderr)
            unreadable.append(str(file))
            continue
        for warning in audio.warnings:
            print(f"musiccap: warning: {Path(file).name}: {warning}", file=sys.stderr)
        yield file, audio


def _listening_check(studio, audio, comparison, options):
    """``--listening-check``: the window captioned again with noise and another example clip (its own
    captions reused), and the exit status to report (1 when it could not run, as for a failed caption)."""
    from musiccap.listening_check import listening_check, replacements
    from musiccap.registry import example_files

    try:
        replaced = replacements(audio, comparison.window, example_files())
    except (AudioError, ValueError) as error:  # a silent window, no other clip
        print(f"musiccap: no listening check on {comparison.window.label}: {error}", file=sys.stderr)
        return None, 1
    originals = {c.model: c.result.text for c in comparison.captions if c.result is not None}
    check = listening_check(
        studio,
        comparison.window,
        replaced,
        lyrics=options.lyrics,
        decoding=options.decoding,
        originals=originals,
    )
    return check, 0


def cmd_tags(args) -> int:
    from musiccap.encoders.musicnn import top_tags

    try:
        audio = load_audio(args.file)
    except AudioError as error:
        return _fail(str(error))
    tags = top_tags(audio.samples, audio.sample_rate, k=args.k)
    if args.json:
        print(json.dumps({tag: round(float(p), 4) for tag, p in tags.items()}))
    else:
        for tag, probability in tags.items():
            print(f"{probability:6.3f}  {tag}")
    return 0


def cmd_analyze(args) -> int:
    from musiccap.analysis import analyze
    from musiccap.audio import windows
    from musiccap.clip import Clip

    unreadable = []
    for file, audio in _decoded(args.files, unreadable):
        for window in windows(audio, args.window, max_windows=args.max_windows):
            analysis = analyze(Clip(window))
            if args.json:
                print(json.dumps({"file": str(file), **analysis.to_json()}), flush=True)
                continue
            heard = ", ".join(analysis.heard) or "-"
            drums = "?" if analysis.drums is None else f"{analysis.drums:.2f}"
            print(
                f"{file} [{window.label}] {analysis.tempo_bpm:.0f} BPM ({analysis.tempo_class}), "
                f"{analysis.key}, drums {drums}, heard: {heard}",
                flush=True,
            )
    return EXIT_BAD_INPUT if unreadable else 0


def cmd_eval(argv: list[str]) -> int:
    from musiccap.metrics.cli import main as eval_main

    return eval_main(argv)


def cmd_bench(argv: list[str]) -> int:
    from musiccap.bench import main as bench_main

    return bench_main(argv)


def cmd_serve(args) -> int:
    from musiccap.ui.app import launch, server_address

    host, port = server_address()
    launch(checkpoints=args.checkpoints, port=args.port or port, host=args.host or host)
    return 0


def cmd_deploy(args) -> int:
    from musiccap.deploy import deploy

    try:
        deploy(args.space, private=args.private, dry_run=args.dry_run)
    except (ValueError, FileNotFoundError) as error:  # a malformed Space id, a file the Space needs missing
        return _fail(str(error))
    except OSError as error:  # the Hub refused or could not be reached (HfHubHTTPError is an OSError)
        return _fail(f"deploy to {args.space} failed: {error}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="musiccap", description="Music captioning studio")
    sub = parser.add_subparsers(dest="command", required=True)

    caption = sub.add_parser("caption", help="caption audio files with one or every captioner")
    caption.add_argument("files", nargs="+")
    caption.add_argument("--model", default="all", help="registry name, comma-separated names, or all")
    caption.add_argument("--window", choices=["first", "middle", "all"], default="first")
    caption.add_argument(
        "--max-windows",
        type=int,
        default=0,
        help="with --window all: at most this many, spread evenly; 0 (default): every window",
    )
    caption.add_argument("--lyrics", help="lyrics for ALCAP")
    caption.add_argument("--beams", type=int)
    caption.add_argument("--max-tokens", type=int)
    caption.add_argument("--no-repeat-ngram", type=int)
    caption.add_argument("--sample", action="store_true")
    caption.add_argument("--seed", type=int)
    caption.add_argument(
        "--group-numbers",
        action="store_true",
        help="greedy/beam: where the numbers together are the likeliest next word, write the likeliest number "
        "(else a tempo's spread over 150 values comes out as 'about BPM')",
    )
    caption.add_argument(
        "--format",
        choices=FORMATS,
        help="json: one line per caption (the contract in DESIGN.md); text (default); srt / vtt: subtitles, "
        "one cue per window at its own times",
    )
    caption.add_argument("--json", action="store_true", help="the same as --format json")
    caption.add_argument(
        "--decoded-text",
        action="store_true",
        help="print captions as decoded (the text the paper tables score), without the clean-up",
    )
    caption.add_argument(
        "--listening-check",
        action="store_true",
        help="with --format json: caption each window again with pink noise of its loudness and with another "
        "example clip; each row adds how much of its caption changed",
    )
    caption.add_argument("--checkpoints", default=None)

    tags = sub.add_parser("tags", help="musicnn's top tags for a file")
    tags.add_argument("file")
    tags.add_argument("-k", type=int, default=10)
    tags.add_argument("--json", action="store_true")

    analyze = sub.add_parser("analyze", help="tempo, key, drums and instruments of audio files")
    analyze.add_argument("files", nargs="+")
    analyze.add_argument("--window", choices=["first", "middle", "all"], default="first")
    analyze.add_argument("--max-windows", type=int, default=12)
    analyze.add_argument("--json", action="store_true")

    serve = sub.add_parser("serve", help="start the studio app")
    serve.add_argument("--port", type=int, help="default: GRADIO_SERVER_PORT, PORT, else 7860")
    serve.add_argument("--host", help="default: GRADIO_SERVER_NAME, else 127.0.0.1")
    serve.add_argument("--checkpoints", default=None)

    deploy = sub.add_parser("deploy", help="upload the app to a Hugging Face Space")
    deploy.add_argument("--space", required=True, help="OWNER/NAME of the Space (created if missing)")
    deploy.add_argument("--dry-run", action="store_true", help="list every file and the total size, offline")
    deploy.add_argument("--private", action="store_true", help="create the Space private")

    sub.add_parser(
        "eval", help="score predictions against references (see musiccap eval --help)", add_help=False
    )
    sub.add_parser("bench", help="measure speed and memory; writes docs/BENCHMARKS.md", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "eval":
        return cmd_eval(argv[1:])
    if argv and argv[0] == "bench":
        return cmd_bench(argv[1:])
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return EXIT_BAD_INPUT if exit_.code else 0
    if getattr(args, "checkpoints", "x") is None:
        from musiccap.studio import DEFAULT_CHECKPOINTS

        args.checkpoints = DEFAULT_CHECKPOINTS
    handlers = {
        "caption": cmd_caption,
        "tags": cmd_tags,
        "analyze": cmd_analyze,
        "serve": cmd_serve,
        "deploy": cmd_deploy,
    }
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
