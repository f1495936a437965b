"""``python -m train.features CORPUS_DIR [--watch]`` — fill the feature cache for a corpus.

With ``--watch`` it keeps up with a corpus that is still being rendered (new FLAC files are
picked up as they appear) and stops once the build has written its manifests.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from musiccap.audio import AudioError
from train.data import clip_cache_path, clip_features


def n_flac(corpus: Path) -> int:
    return sum(1 for _ in corpus.rglob("*.flac"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.features", description=__doc__)
    parser.add_argument("corpus")
    parser.add_argument("--watch", action="store_true")
    parser.add_argument("--cache-dir")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--reverse", action="store_true", help="newest files first (a second worker beside one)"
    )
    args = parser.parse_args(argv)
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
        settled = time.time() - 10  # a file untouched for 10 s has been written completely
        pending = [p for p in sorted(corpus.rglob("*.flac")) if p not in done and p.stat().st_mtime < settled]
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
        if not args.watch or (finished_build and not pending and len(done) >= n_flac(corpus)):
            break
        time.sleep(5)
    print(f"{len(done)} clips cached in {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
