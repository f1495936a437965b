"""The captioner interface every architecture implements, its result type, the registry and checkpoints.

A captioner answers one call, ``caption(clip, decoding) -> CaptionResult``; a
:class:`~musiccap.clip.Clip` is one 10 s window plus the features computed from it.

Checkpoint folders (their files, config and hash) are ``musiccap/checkpoint.py``.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from musiccap.checkpoint import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    checkpoint_hash,
    config_from_dict,
    config_to_dict,
    read_config,
)
from musiccap.clip import AUDIO_FEATURES, Clip
from musiccap.conditioning import clip_analysis_batch, item_analysis_batch
from musiccap.decoding import DecodingConfig, Hypothesis, StepFunction, rows_per_input, search
from musiccap.features import audio_features
from musiccap.hub import local_folder, portable_path
from musiccap.metrics.attributes import attribute_token_ids
from musiccap.registry import reference
from musiccap.text import clean_caption


@dataclass
class Neighbour:
    text: str
    score: float
    id: str = ""


@dataclass
class CaptionResult:
    """What a captioner says about one window, and what the app needs to explain it."""

    model: str
    text: str  # as shown: cleaned when the decoding asked for it (musiccap/text.py)
    tokens: list[str] = field(default_factory=list)
    attention: np.ndarray | None = None  # [n_tokens, n_times], rows sum to 1 over audio time
    attention_times: np.ndarray | None = None  # [n_times] seconds from the window start (centres)
    attention_views: dict[str, np.ndarray] = field(default_factory=dict)  # e.g. "layer 2, head 1"
    audio_embedding: np.ndarray | None = None
    neighbour: Neighbour | None = None
    decoding: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    window: tuple[float, float] = (0.0, 0.0)
    decoded_text: str = ""  # the text as decoded, before the clean-up ("" when there was none)

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "window": [round(self.window[0], 3), round(self.window[1], 3)],
            "text": self.text,
            "decoded_text": self.decoded_text or self.text,
            "tokens": list(self.tokens),
            "attention_shape": list(self.attention.shape) if self.attention is not None else None,
            "neighbour": asdict(self.neighbour) if self.neighbour else None,
            "decoding": self.decoding,
        }


class Captioner:
    """Base class: a name in the registry, default decoding, ``caption``, and checkpoint I/O.

    Architectures implement ``generate_batch`` (the text as their decoder gives it); ``caption_batch``
    is what callers use: it adds the text clean-up the decoding asks for, the same for every captioner.
    """

    name: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    default_decoding: DecodingConfig = DecodingConfig()
    checkpoint_hash: str = ""

    def generate_batch(self, clips: list[Clip], decoding: DecodingConfig) -> list[CaptionResult]:
        raise NotImplementedError

    def caption_batch(self, clips: list[Clip], decoding: DecodingConfig | None = None) -> list[CaptionResult]:
        decoding = decoding or self.default_decoding
        results = self.generate_batch(clips, decoding)
        if decoding.clean_text:
            for result in results:
                result.decoded_text = result.text
                result.text = clean_caption(
                    result.text,
                    hit_length_limit=len(result.tokens) >= decoding.max_new_tokens,
                    dedupe=decoding.dedupe_sentences,
                )
        return results

    def caption(self, clip: Clip, decoding: DecodingConfig | None = None) -> CaptionResult:
        return self.caption_batch([clip], decoding)[0]

    @classmethod
    def from_pretrained(cls, path: str | Path) -> Captioner:
        raise NotImplementedError

    def save_pretrained(self, path: str | Path) -> None:
        raise NotImplementedError


_REGISTRY: dict[str, type[Captioner]] = {}


def register(cls: type[Captioner]) -> type[Captioner]:
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no registry name")
    _REGISTRY[cls.name] = cls
    return cls


def registry() -> dict[str, type[Captioner]]:
    import musiccap.models  # noqa: F401  (importing the package registers every architecture)

    return dict(_REGISTRY)


def load_captioner(path: str | Path) -> Captioner:
    """Rebuild whichever architecture a checkpoint folder holds."""
    architecture = read_config(path)["architecture"]
    classes = registry()
    if architecture not in classes:
        raise ValueError(f"{path}: unknown architecture {architecture!r}; known: {sorted(classes)}")
    captioner = classes[architecture].from_pretrained(path)
    captioner.checkpoint_hash = checkpoint_hash(path)
    return captioner


_NUMBER = re.compile(r"\d+(?:\.\d+)?")


@dataclass
class SearchStart:
    """Where decoding begins: the step function, its state (a row per clip and beam), BOS and EOS ids."""

    step: StepFunction
    state: Any
    bos_id: int
    eos_id: int


class NeuralCaptioner(torch.nn.Module, Captioner):
    """A captioner that is a ``torch.nn.Module`` built from a dataclass config.

    Subclasses set ``config_class``, build themselves in ``__init__(config)``, and may keep extra
    files (a vocabulary, a neighbour index) with ``save_extra``/``load_extra``.

    Captioning is one skeleton for every architecture (:meth:`generate_batch`): features -> encode ->
    :func:`musiccap.decoding.search` -> CaptionResult. An architecture supplies the parts, in the
    order they run: ``clip_features``, ``encode_clips``, ``start_search``, ``detokenize`` and
    ``explain`` (its heatmaps and what else it shows), and names the Clip feature it reads
    (``feature_name``) so that the shared features' time is reported once.
    """

    config_class: ClassVar[type]
    # State-dict prefixes rebuilt from an installed package at load (frozen MiniLM, musicnn):
    # referenced, not copied into every checkpoint.
    package_prefixes: ClassVar[tuple[str, ...]] = ()
    # Config fields naming another checkpoint's folder (the CLAP, a frozen LM): held as absolute paths
    # while loaded, saved as the registry name or the path relative to the checkpoint that finds the
    # same folder from there, so a checkpoints folder trained anywhere works where it is copied to.
    component_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config):
        torch.nn.Module.__init__(self)
        self.config = config

    def forward(self, batch):
        """Training entry point: the named loss terms of a batch (see ``train/trainer.py``)."""
        return self.training_loss(batch)

    # ---- training: the caption NLL every architecture optimises ----------------------------------

    def caption_token_ids(self, text: str) -> list[int]:
        """The target ids of a caption text, as the architecture's collate makes them (no BOS/EOS)."""
        raise NotImplementedError

    def caption_nll(
        self, logits: torch.Tensor, targets: torch.Tensor, ignore_index: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(the NLL to optimise, the plain mean token NLL) of ``logits [..., V]`` against ``targets [...]``.

        With ``config.attribute_word_weight`` w > 1 (a variant, never a paper's row), a target token that
        belongs to a word the attribute reader reads (instrument, drum, tempo, mode and mood words, a
        stated BPM's number, and "no"/"without") weighs w in the mean: those few tokens carry what the listening table scores,
        and a plain NLL spends most of its gradient on phrasing. The plain NLL is returned alongside
        so runs with and without the weight compare on one scale."""
        flat_logits, flat_targets = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
        token_nll = F.cross_entropy(flat_logits, flat_targets, ignore_index=ignore_index, reduction="none")
        real = (flat_targets != ignore_index).to(token_nll.dtype)
        plain = (token_nll * real).sum() / real.sum().clamp(min=1)
        weight = getattr(self.config, "attribute_word_weight", 1.0)
        if weight == 1.0:
            return plain, plain
        if getattr(self, "_attribute_ids", None) is None:
            self._attribute_ids = torch.tensor(sorted(attribute_token_ids(self.caption_token_ids)))
        weights = real * (1 + (weight - 1) * torch.isin(flat_targets, self._attribute_ids).to(real.dtype))
        return (token_nll * weights).sum() / weights.sum().clamp(min=1), plain

    # ---- the analysis-conditioned variants (musiccap/conditioning.py): what reads the analysis ----

    @property
    def reads_analysis(self) -> bool:
        return getattr(self.config, "analysis_conditioning", False)

    def training_analysis(self, items: list) -> dict[str, torch.Tensor]:
        """``{"analysis": [B, ANALYSIS_SIZE]}`` of training items for a conditioned model, else nothing."""
        return {"analysis": item_analysis_batch(items)} if self.reads_analysis else {}

    def captioning_analysis(self, clips: list[Clip]) -> torch.Tensor | None:
        """[B, ANALYSIS_SIZE] of the clips being captioned for a conditioned model, else None."""
        return clip_analysis_batch(clips) if self.reads_analysis else None

    # ---- captioning: the skeleton and the parts an architecture supplies -------------------------

    @torch.no_grad()
    def generate_batch(self, clips: list[Clip], decoding: DecodingConfig) -> list[CaptionResult]:
        self.eval()
        started = time.perf_counter()
        features = self.clip_features(clips)
        feature_time = time.perf_counter() - started

        started = time.perf_counter()
        encoded = self.encode_clips(clips, features)
        encode_time = time.perf_counter() - started

        started = time.perf_counter()
        start = self.start_search(
            encoded, torch.arange(len(clips)).repeat_interleave(rows_per_input(decoding))
        )
        hypotheses = search(
            start.step,
            start.state,
            batch_size=len(clips),
            bos_id=start.bos_id,
            eos_id=start.eos_id,
            config=decoding,
            number_tokens=self.number_token_mask,
        )
        decode_time = time.perf_counter() - started

        results = []
        for row, (clip, hypothesis) in enumerate(zip(clips, hypotheses, strict=True)):
            text, tokens = self.detokenize(hypothesis.token_ids)
            result = CaptionResult(
                model=self.name,
                text=text,
                tokens=tokens,
                decoding=decoding.to_dict(),
                timings={
                    "features": clip.timings.get(self.feature_name, feature_time / len(clips)),
                    "encode": encode_time / len(clips),
                    "decode": decode_time / len(clips),
                },
                window=clip.span,
            )
            self.explain(result, row, hypothesis, encoded, features)
            results.append(result)
        return results

    def number_token_mask(self, vocab_size: int) -> torch.Tensor:
        """[vocab_size] bool: the decoder's tokens that are a number ("120", GPT-2's " 96"; not a WordPiece
        "##5", which continues one), for ``DecodingConfig.group_numbers``. Read once from ``detokenize``."""
        if getattr(self, "_number_mask", None) is None or len(self._number_mask) != vocab_size:
            tokens = self.detokenize(list(range(vocab_size)))[1]
            self._number_mask = torch.tensor(
                [_NUMBER.fullmatch(token.strip()) is not None for token in tokens]
            )
        return self._number_mask

    @property
    def feature_name(self) -> str:
        """The Clip feature the captioner reads (its time is the shared features' time): its CLAP's
        input when it reads a CLAP's tokens (``self.clap``), else the embedded features."""
        clap = getattr(self, "clap", None)
        return clap.feature_name if clap is not None else AUDIO_FEATURES

    def clip_features(self, clips: list[Clip]) -> Any:
        """The clips' input features, memoised on each clip (computed once for every captioner)."""
        clap = getattr(self, "clap", None)
        if clap is not None:
            return [clap.audio_inputs(clip) for clip in clips]
        return [audio_features(clip) for clip in clips]

    def encode_clips(self, clips: list[Clip], features: Any) -> Any:
        """The encoder: whatever ``start_search`` and ``explain`` read, for the whole batch."""
        raise NotImplementedError

    def start_search(self, encoded: Any, expand: torch.Tensor) -> SearchStart:
        """The decoder's step and state; ``expand`` [clips * rows] repeats each clip once per beam."""
        raise NotImplementedError

    def detokenize(self, token_ids: list[int]) -> tuple[str, list[str]]:
        """The caption text as decoded and one token string per id (the heatmap's rows)."""
        raise NotImplementedError

    def explain(self, result: CaptionResult, row: int, hypothesis: Hypothesis, encoded: Any, features: Any):
        """Fill in what the app shows beside the text: attention over audio time, its views, the audio
        embedding, a retrieved neighbour, decoding details."""

    def save_pretrained(self, path: str | Path, *, half: bool = False) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        config = config_to_dict(self.config)
        for name in self.component_fields:
            folder = local_folder(config[name])
            config[name] = reference(folder, path) if folder is not None else config[name]  # Hub ids stay
        document = {
            "architecture": self.name,
            "config": config,
            "decoding": self.default_decoding.to_dict(),
        }
        (path / CONFIG_NAME).write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
        state = {}
        for key, tensor in self.state_dict().items():
            if key.startswith(self.package_prefixes):
                continue
            tensor = tensor.detach().cpu().contiguous()
            if half and tensor.is_floating_point():
                tensor = tensor.half()  # storage only: loading casts back to the module's dtype
            state[key] = tensor
        save_file(state, str(path / WEIGHTS_NAME), metadata={"architecture": self.name})
        self.save_extra(path)

    @classmethod
    def from_pretrained(cls, path: str | Path):
        document = read_config(path)
        if document.get("architecture") != cls.name:
            raise ValueError(f"{path} holds {document.get('architecture')!r}, not {cls.name!r}")
        config = config_from_dict(cls.config_class, document["config"])
        config = replace(
            config,
            **{name: portable_path(getattr(config, name), Path(path)) for name in cls.component_fields},
        )
        model = cls(config, **cls.load_extra(Path(path)))
        state = load_file(str(Path(path) / WEIGHTS_NAME))
        own = model.state_dict()
        state = {key: value.to(own[key].dtype) if key in own else value for key, value in state.items()}
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [key for key in missing if not key.startswith(cls.package_prefixes)]
        if missing or unexpected:
            raise ValueError(
                f"{path}: weights do not fit the config (missing {missing[:5]}, unexpected {unexpected[:5]})"
            )
        if "decoding" in document:
            model.default_decoding = DecodingConfig.from_dict(document["decoding"])
        model.eval()
        return model

    def save_extra(self, path: Path) -> None:
        """Write tokenizer/vocabulary/index files beside the weights."""

    @classmethod
    def load_extra(cls, path: Path) -> dict[str, Any]:
        """Read what ``save_extra`` wrote; returned as keyword arguments to ``__init__``."""
        return {}
