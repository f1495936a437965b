"""``python -m train.features CORPUS_DIR [--watch] [--workers N]`` — fill the feature cache for a corpus.

With ``--watch`` it keeps up with a corpus that is still being rendered (new FLAC files are
picked up as they appear) and stops once the build has written its manifests. ``--workers N`` runs N
processes, each caching its own share of the clips (by a hash of the file name, so the shares hold while
the corpus grows): one per core fills a full corpus's cache in about half the time of one.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import zlib
from pathlib import Path

import torch

from musiccap.audio import AudioError
from train.data import clip_cache_path, clip_features


def in_share(path: Path, share: tuple[int, int]) -> bool:
    """Whether ``path`` is worker ``share[0]``'s of ``share[1]``."""
    return zlib.crc32(path.name.encode()) % share[1] == share[0]


def n_flac(corpus: Path, share: tuple[int, int]) -> int:
    return sum(1 for path in corpus.rglob("*.flac") if in_share(path, share))


def run_workers(args: argparse.Namespace) -> int:
    """This command as ``args.workers`` processes, one share each; the first failure's code, else 0."""
    options = ["--threads", str(args.threads)]
    options += ["--watch"] * args.watch + ["--reverse"] * args.reverse
    options += ["--cache-dir", args.cache_dir] if args.cache_dir else []
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "train.features", args.corpus, *options, "--share", f"{k}/{args.workers}"]
        )
        for k in range(args.workers)
    ]
    codes = [process.wait() for process in processes]
    return next((code for code in codes if code), 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.features", description=__doc__)
    parser.add_argument("corpus")
    parser.add_argument("--watch", action="store_true")
    parser.add_argument("--cache-dir")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--reverse", action="store_true", help="newest files first (a second worker beside one)"
    )
    parser.add_argument("--workers", type=int, default=1, help="processes, each caching its share")
    parser.add_argument("--share", default="0/1", help="K/N: cache only worker K's share of N")
    args = parser.parse_args(argv)
    if args.workers > 1:
        return run_workers(args)
    share = tuple(int(part) for part in args.share.split("/"))
    torch.set_num_threads(args.threads)
    from musiccap.features import embedded_encoder

    encoder = embedded_encoder()
    corpus = Path(args.corpus)
    done: set[Path] = set()
    started = time.time()
    while True:
        finished_build = all(
            (corpus / f"{split}.jsonl").is_file() for split in ("train", "validation", "test")
        )
        # a file untouched for 10 s has been written completely; once the manifests are written, every one
        settled = float("inf") if finished_build else time.time() - 10
        pending = [
            p
            for p in sorted(corpus.rglob("*.flac"))
            if p not in done and in_share(p, share) and p.stat().st_mtime < settled
        ]
        if args.reverse:
            pending.reverse()
        for path in pending:
            try:
                if not clip_cache_path(path, encoder.version, args.cache_dir).is_file():
                    clip_features(path, encoder, args.cache_dir)
            except (OSError, AudioError):
                continue  # unreadable now: tried again on the next pass
            done.add(path)
            if len(done) % 100 == 0:
                print(f"{len(done)} clips cached, {time.time() - started:.0f} s", flush=True)
        if not args.watch or (finished_build and not pending and len(done) >= n_flac(corpus, share)):
            break
        time.sleep(5)
    print(f"{len(done)} clips cached in {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
