"""Standalone arena server on the loopback interface with fixed demo captions (no model needed).

    python -m musiccap.arena.serve --db /tmp/arena.sqlite --port 7861 [--clips DIR] [--min-listen-s 8]

Used by the load and crash tests and `python -m musiccap.arena.loadtest`; the app mounts the same router.
"""

import argparse
import ipaddress
from pathlib import Path

import numpy as np
import soundfile as sf
import uvicorn

from .api import create_app
from .captions import DEMO_PHRASES, FixedCaptionSource
from .clips import AUDIO_SUFFIXES, build_pool
from .service import ArenaService, load_or_create_salt

DEMO_TONES_HZ = (220.0, 261.63, 329.63, 392.0)


def write_demo_clips(folder: Path, seconds: float = 2.0, sample_rate: int = 16000) -> list[Path]:
    """A few quiet sine tones, identical on every run, so the demo pool's hashes are stable."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    for frequency in DEMO_TONES_HZ:
        path = folder / f"tone-{frequency:.0f}hz.wav"
        if not path.exists():
            sf.write(path, (0.2 * np.sin(2 * np.pi * frequency * t)).astype(np.float32), sample_rate)
        paths.append(path)
    return paths


def parse_rate(text: str) -> tuple[int, float]:
    count, _, seconds = text.partition("/")
    return int(count), float(seconds or 60.0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", required=True, help="SQLite file (created if missing)")
    parser.add_argument("--port", type=int, default=7861)
    parser.add_argument("--host", default="127.0.0.1", help="a loopback address")
    parser.add_argument("--clips", help="folder of audio files for the pool (default: generated tones)")
    parser.add_argument("--min-listen-s", type=float, default=8.0)
    parser.add_argument("--rate-limit", type=parse_rate, default=(30, 60.0), help="VOTES/SECONDS per voter")
    parser.add_argument("--daily-cap", type=int, default=500)
    parser.add_argument(
        "--trusted-proxies", type=int, default=0, help="reverse proxies setting X-Forwarded-For"
    )
    parser.add_argument("--seed", type=int)
    args = parser.parse_args(argv)

    if args.host != "localhost" and not ipaddress.ip_address(args.host).is_loopback:
        parser.error("the standalone arena server only listens on a loopback address")
    db_path = Path(args.db)
    if args.clips:
        audio_files = [p for p in Path(args.clips).iterdir() if p.suffix.lower() in AUDIO_SUFFIXES]
    else:
        audio_files = write_demo_clips(db_path.parent / f"{db_path.stem}-demo-clips")
    service = ArenaService(
        db_path,
        list(DEMO_PHRASES),
        build_pool(audio_files),
        FixedCaptionSource(DEMO_PHRASES),
        salt=load_or_create_salt(db_path),
        min_listen_s=args.min_listen_s,
        rate_limit=args.rate_limit,
        daily_cap=args.daily_cap,
        seed=args.seed,
    )
    app = create_app(service, trusted_proxies=args.trusted_proxies)
    # keep idle connections longer than uvicorn's 5 s: on a busy machine a client's next request can
    # cross the server closing the connection, and the request is lost with a read error
    uvicorn.run(
        app, host=args.host, port=args.port, log_level="warning", access_log=False, timeout_keep_alive=60
    )


if __name__ == "__main__":
    main()
