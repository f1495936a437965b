"""``python -m train.diagnostics.render_realism --real FILE... --corpus v1=DIR --corpus v2=DIR`` — do a
corpus's renders sit closer to real recordings in musicnn's tag space?

musicnn (MagnaTagATune head, trained on real recordings) tags each real file's middle 10 s and the first
``--clips`` training clips of each corpus (probabilities averaged over its 3 s patches: 50 tags per
clip). Per corpus: the mean, over real excerpts, of the cosine similarity to the nearest render and of
the mean similarity to the ``--k`` nearest; and the cosine similarity between the mean real tag vector
and the corpus's mean. Higher is closer to real audio. Also each set's five most probable tags.
Written as JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from musiccap.audio import load_audio, windows
from musiccap.encoders.musicnn import labels_for, shared_tagger
from train.data import read_manifest

MODEL = "MTT_musicnn"


def tag_vector(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    tags = shared_tagger(MODEL)(samples, sample_rate).mean_tags()
    return np.array([tags[label] for label in labels_for(MODEL)], np.float64)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def top_tags(vectors: np.ndarray, k: int = 5) -> dict[str, float]:
    mean = vectors.mean(0)
    return {labels_for(MODEL)[i]: round(float(mean[i]), 3) for i in np.argsort(-mean)[:k]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.diagnostics.render_realism", description=__doc__)
    parser.add_argument("--real", nargs="+", required=True, help="real recordings (their middle 10 s)")
    parser.add_argument("--corpus", action="append", required=True, help="NAME=DIR; once per corpus")
    parser.add_argument("--clips", type=int, default=200, help="training clips tagged per corpus")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    started = time.time()
    real = []
    for path in args.real:
        window = windows(load_audio(path), "middle")[0]
        real.append(tag_vector(window.samples, window.sample_rate))
    real = np.stack(real)
    report = {
        "model": MODEL,
        "real": [Path(p).name for p in args.real],
        "real_top_tags": top_tags(real),
        "clips_per_corpus": args.clips,
        "corpora": {},
    }
    for entry in args.corpus:
        name, corpus = entry.split("=", 1)
        rows = read_manifest(corpus, "train")[: args.clips]
        renders = []
        for row in rows:
            audio = load_audio(Path(corpus) / row["audio"])
            renders.append(tag_vector(audio.samples, audio.sample_rate))
        renders = np.stack(renders)
        similarity = unit(real) @ unit(renders).T  # [real, renders]
        nearest = np.sort(similarity, axis=1)[:, ::-1]
        report["corpora"][name] = {
            "dir": corpus,
            "nearest_render_cosine": round(float(nearest[:, 0].mean()), 4),
            f"top{args.k}_render_cosine": round(float(nearest[:, : args.k].mean()), 4),
            "mean_vector_cosine": round(float(unit(real.mean(0)) @ unit(renders.mean(0))), 4),
            "top_tags": top_tags(renders),
        }
        print(name, {k: v for k, v in report["corpora"][name].items() if k != "dir"})
    report["seconds"] = round(time.time() - started, 1)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
