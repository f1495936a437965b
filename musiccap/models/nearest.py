"""Nearest-neighbour baseline (RGMC paper, Table 3): the caption of the closest training clip.

"Closest" is the inner product of CLAP audio embeddings over the training split
(:class:`~musiccap.retrieval.CaptionIndex`), the same retrieval RGMC conditions on. The checkpoint
folder holds the index and a path to the CLAP checkpoint relative to itself (``"../clap"``), plus
that checkpoint's hash: an index built with other CLAP weights refuses to load instead of
returning neighbours from a different embedding space.

Build it from a trained CLAP with ``python -m train.nearest`` (train/nearest.py).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from musiccap.checkpoint import CONFIG_NAME, checkpoint_hash, read_config, require_hash
from musiccap.decoding import DecodingConfig
from musiccap.encoders.clap_loader import clap_folder
from musiccap.models.base import Captioner, CaptionResult, Clip, Neighbour, register
from musiccap.registry import reference
from musiccap.retrieval import CaptionIndex
from musiccap.scoring import ClapModel, load_clap


@register
class NearestCaptioner(Captioner):
    name = "nearest"
    paper = "Nearest training caption by CLAP audio embedding (baseline, RGMC paper Table 3)"

    def __init__(self, clap: ClapModel, index: CaptionIndex, clap_path: str | Path, clap_hash: str):
        self.clap = clap
        self.index = index
        self.clap_path = Path(clap_path).resolve()
        self.clap_hash = clap_hash

    @classmethod
    def from_items(cls, clap_path: str | Path, items: list, split: str = "train") -> NearestCaptioner:
        """Index ``items`` (FeatureItems: id, caption, features) with the CLAP at ``clap_path``."""
        folder = clap_folder(clap_path)
        clap = load_clap(folder)
        return cls(clap, CaptionIndex.from_items(clap, items, split=split), folder, checkpoint_hash(folder))

    @classmethod
    def build(cls, config: dict, train_items: list, context) -> NearestCaptioner:
        return cls.from_items(config.get("clap_path", context.clap_path), train_items)

    def generate_batch(self, clips: list[Clip], decoding: DecodingConfig) -> list[CaptionResult]:
        started = time.perf_counter()
        embeddings = self.clap.embed_audio([self.clap.audio_inputs(clip) for clip in clips])
        embedded = time.perf_counter()
        hits = self.index.search_batch(embeddings, 1, exclude_ids=[[clip.id] for clip in clips])
        searched = time.perf_counter()
        share = 1.0 / max(1, len(clips))
        results = []
        for clip, embedding, (hit,) in zip(clips, embeddings, hits):
            results.append(
                CaptionResult(
                    model=self.name,
                    text=hit.caption,
                    tokens=hit.caption.split(),
                    audio_embedding=embedding,
                    neighbour=Neighbour(text=hit.caption, score=hit.score, id=hit.id),
                    timings={
                        "clap_audio": (embedded - started) * share,
                        "search": (searched - embedded) * share,
                    },
                    window=clip.span,
                )
            )
        return results

    def save_pretrained(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        config = {
            "clap_path": reference(self.clap_path, path),
            "clap_hash": self.clap_hash,
            "split": self.index.split,
            "n_captions": len(self.index),
        }
        document = {"architecture": self.name, "config": config}
        (path / CONFIG_NAME).write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
        self.index.save(path)

    @classmethod
    def from_pretrained(cls, path: str | Path) -> NearestCaptioner:
        path = Path(path)
        config = read_config(path)["config"]
        clap_path = clap_folder(config["clap_path"], path).resolve()
        require_hash(
            clap_path, config["clap_hash"], path, "CLAP", "rebuild it with `python -m train.nearest`"
        )
        return cls(load_clap(clap_path), CaptionIndex.load(path), clap_path, config["clap_hash"])
