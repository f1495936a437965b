"""musicnn (Pons & Serra, 2019) in PyTorch, with the weights of the ``musicnn`` 0.1.0 wheel.

The wheel ships TF1 checkpoints for MagnaTagATune (MTT) and Million Song Dataset (MSD) taggers, each
as the musically motivated ``musicnn`` and a ``vgg`` baseline. The first use of a model reads its
checkpoint with the numpy reader in ``tf_checkpoint`` (no TensorFlow) and caches the converted
weights as safetensors under ``$MUSICCAP_CACHE/musicnn`` (default ``~/.cache/musiccap/musicnn``).
The wheel is installed with ``pip install --no-deps musicnn==0.1.0`` and never imported (its
``__init__`` imports TensorFlow); its files are found with ``importlib.util.find_spec``.
musicnn is ISC-licensed, see ``MUSICNN_LICENSE`` beside this file.

The network, as in musicnn's ``models.py`` (TF NHWC with H = time, W = mel band):

* front end: batch norm of the log-mel patch, then timbral convolutions (7 frames x 38 / 67 bands,
  204 filters each) and temporal convolutions (128 / 64 / 32 frames x 1 band, 51 filters each),
  each ReLU -> batch norm -> max over frequency; concatenated: 561 features per frame.
* mid end: three 1-D convolutions over time (7 frames, 64 filters) with residual connections; the
  "dense" output is [front end, conv1, conv1+conv2, conv1+conv2+conv3] = 753 features per frame.
* back end: max and mean over time, interleaved per feature (TF flattens a [753, 2] tensor), batch
  norm, 200-unit dense + ReLU + batch norm (the "penultimate" embedding), 50 logits.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SAMPLE_RATE = 16000
N_FFT = 512
HOP_LENGTH = 256
N_MELS = 96
PATCH_FRAMES = 187  # librosa.time_to_frames(3 s) + 1, musicnn's input_length = 3
FRAME_SECONDS = HOP_LENGTH / SAMPLE_RATE
BN_EPSILON = 1e-3  # tf.compat.v1.layers.batch_normalization default

# musicnn.configuration.MTT_LABELS / MSD_LABELS, in the models' output order
MTT_LABELS = (
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast", "piano",
    "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male", "singing",
    "vocals", "no vocals", "harpsichord", "loud", "quiet", "flute", "woman", "male vocal", "no vocal",
    "pop", "soft", "sitar", "solo", "man", "classic", "choir", "voice", "new age", "dance", "male voice",
    "female vocal", "beats", "harp", "cello", "no voice", "weird", "country", "metal", "female voice",
    "choral",
)  # fmt: skip
MSD_LABELS = (
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s",
    "alternative rock", "jazz", "beautiful", "metal", "chillout", "male vocalists", "classic rock",
    "soul", "indie rock", "Mellow", "electronica", "80s", "folk", "90s", "chill", "instrumental", "punk",
    "oldies", "blues", "hard rock", "ambient", "acoustic", "experimental", "female vocalist", "guitar",
    "Hip-Hop", "70s", "party", "country", "easy listening", "sexy", "catchy", "funk", "electro",
    "heavy metal", "Progressive rock", "60s", "rnb", "indie pop", "sad", "House", "happy",
)  # fmt: skip

# MSD_vgg is left out: the wheel's MSD_vgg checkpoint, put through this same VGG (the graphs in the
# wheel's MTT_vgg and MSD_vgg .meta files are identical), does not reproduce the TF reference outputs.
MODELS = ("MTT_musicnn", "MSD_musicnn", "MTT_vgg")


def labels_for(model_name: str) -> tuple[str, ...]:
    return MTT_LABELS if model_name.startswith("MTT") else MSD_LABELS


# ----------------------------------------------------------------------------------------------------
# Front end (log-mel patches), exactly as musicnn.extractor.batch_data


def resample(samples: np.ndarray, sample_rate: int, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 at ``target_rate``; soxr high quality, what ``librosa.load(sr=16000)`` uses."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 2:  # (channels, samples) or (samples, channels): average the shorter axis
        samples = samples.mean(axis=0 if samples.shape[0] < samples.shape[1] else 1)
    if sample_rate == target_rate:
        return samples
    import librosa

    return librosa.resample(samples, orig_sr=sample_rate, target_sr=target_rate, res_type="soxr_hq").astype(
        np.float32
    )


def mel_power(samples_16k: np.ndarray) -> np.ndarray:
    """[frames, 96] mel power spectrogram, frame t centred at t * 16 ms."""
    import librosa

    return librosa.feature.melspectrogram(
        y=samples_16k, sr=SAMPLE_RATE, hop_length=HOP_LENGTH, n_fft=N_FFT, n_mels=N_MELS
    ).T


def log_compress(mel: np.ndarray) -> np.ndarray:
    """musicnn's ``log10(10000 x + 1)``.

    musicnn was trained on mel spectrograms stored as float16 (config ``mtt_float16``), and its
    extractor casts to float16 before the log. The float16 rounding is kept (clipped to float16's
    range) so the input matches training, but the arithmetic is float32: in float16, ``10000 x``
    overflows to inf for any mel power above 6.55, i.e. on every loud recording, and all tags go NaN.
    """
    rounded = np.minimum(mel, np.finfo(np.float16).max).astype(np.float16).astype(np.float32)
    return np.log10(np.float32(10000) * rounded + np.float32(1))


def log_mel(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """[frames, 96] float32 musicnn input representation of a clip at any sample rate."""
    return log_compress(mel_power(resample(samples, sample_rate)))


def patch_starts(n_frames: int, hop: int = PATCH_FRAMES, cover_end: bool = False) -> list[int]:
    """First frame of each 187-frame patch: musicnn's ``range(0, n - 187 + 1, hop)``.

    musicnn drops the frames after the last whole patch; ``cover_end`` adds one patch flush with the
    end so every frame gets features (used for frame sequences, not for tags).
    """
    last = max(n_frames - PATCH_FRAMES, 0)
    starts = list(range(0, last + 1, hop))
    if cover_end and starts[-1] != last:
        starts.append(last)
    return starts


def make_patches(log_mel_frames: np.ndarray, starts: list[int]) -> np.ndarray:
    """[n_patches, 187, 96]; a clip shorter than one patch is repeat-padded as musicnn's training was."""
    if len(log_mel_frames) < PATCH_FRAMES:
        repeats = -(-PATCH_FRAMES // max(len(log_mel_frames), 1))
        log_mel_frames = np.tile(log_mel_frames, (repeats, 1))[:PATCH_FRAMES]
    return np.stack([log_mel_frames[s : s + PATCH_FRAMES] for s in starts]).astype(np.float32)


# ----------------------------------------------------------------------------------------------------
# Networks


def _pad_time(x: torch.Tensor, before: int, after: int) -> torch.Tensor:
    """Zero-pad dim 2 (time) of an NCHW / NCL tensor."""
    if x.dim() == 4:
        return F.pad(x, (0, 0, before, after))
    return F.pad(x, (before, after))


class TimbralBlock(nn.Module):
    """conv (7 x bands, valid in frequency, 'same' in time) -> ReLU -> BN -> max over frequency."""

    def __init__(self, bands: int, filters: int):
        super().__init__()
        self.conv = nn.Conv2d(1, filters, kernel_size=(7, bands))
        self.bn = nn.BatchNorm2d(filters, eps=BN_EPSILON)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, 1, T, F] -> [B, filters, T]
        return self.bn(F.relu(self.conv(_pad_time(x, 3, 3)))).amax(dim=3)


class TemporalBlock(nn.Module):
    """conv (length x 1, TF 'same' padding: the odd extra frame goes after) -> ReLU -> BN -> max over frequency."""

    def __init__(self, length: int, filters: int):
        super().__init__()
        self.length = length
        self.conv = nn.Conv2d(1, filters, kernel_size=(length, 1))
        self.bn = nn.BatchNorm2d(filters, eps=BN_EPSILON)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        before = (self.length - 1) // 2
        return self.bn(F.relu(self.conv(_pad_time(x, before, self.length - 1 - before)))).amax(dim=3)


class MidendLayer(nn.Module):
    """A 7-frame convolution over all features (TF: conv2d [7, width] on [T, width, 1]) -> ReLU -> BN."""

    def __init__(self, in_features: int, filters: int):
        super().__init__()
        self.conv = nn.Conv1d(in_features, filters, kernel_size=7, padding=3)
        self.bn = nn.BatchNorm1d(filters, eps=BN_EPSILON)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, T] -> [B, filters, T]
        return self.bn(F.relu(self.conv(x)))


@dataclass
class MusicnnActivations:
    """Per patch: logits [B, n_tags], penultimate [B, 200], frontend [B, 561, T], midend [B, 192, T]."""

    logits: torch.Tensor
    penultimate: torch.Tensor
    frontend: torch.Tensor
    midend: torch.Tensor


class Musicnn(nn.Module):
    def __init__(
        self,
        n_tags: int = 50,
        frontend_scale: float = 1.6,
        midend_filters: int = 64,
        backend_units: int = 200,
    ):
        super().__init__()
        timbral_filters, temporal_filters = int(frontend_scale * 128), int(frontend_scale * 32)
        self.input_bn = nn.BatchNorm2d(1, eps=BN_EPSILON)
        self.timbral = nn.ModuleList([TimbralBlock(int(0.4 * N_MELS), timbral_filters), TimbralBlock(int(0.7 * N_MELS), timbral_filters)])  # fmt: skip
        self.temporal = nn.ModuleList([TemporalBlock(n, temporal_filters) for n in (128, 64, 32)])
        frontend_dim = 2 * timbral_filters + 3 * temporal_filters
        self.midend = nn.ModuleList(
            [MidendLayer(frontend_dim, midend_filters)]
            + [MidendLayer(midend_filters, midend_filters) for _ in range(2)]
        )
        dense_dim = frontend_dim + 3 * midend_filters
        self.pool_bn = nn.BatchNorm1d(2 * dense_dim, eps=BN_EPSILON)
        self.penultimate = nn.Linear(2 * dense_dim, backend_units)
        self.penultimate_bn = nn.BatchNorm1d(backend_units, eps=BN_EPSILON)
        self.classifier = nn.Linear(backend_units, n_tags)

    def forward(self, patches: torch.Tensor) -> MusicnnActivations:  # patches: [B, T, 96] log-mel
        x = self.input_bn(patches.unsqueeze(1))
        frontend = torch.cat([block(x) for block in (*self.timbral, *self.temporal)], dim=1)
        conv1 = self.midend[0](frontend)
        res2 = self.midend[1](conv1) + conv1
        res3 = self.midend[2](res2) + res2
        dense = torch.cat([frontend, conv1, res2, res3], dim=1)  # [B, 753, T]
        # TF concatenates max and mean on a last axis and flattens: max_0, mean_0, max_1, mean_1, ...
        pooled = torch.stack([dense.amax(dim=2), dense.mean(dim=2)], dim=2).flatten(1)
        penultimate = self.penultimate_bn(F.relu(self.penultimate(self.pool_bn(pooled))))
        return MusicnnActivations(
            logits=self.classifier(penultimate),
            penultimate=penultimate,
            frontend=frontend,
            midend=torch.cat([conv1, res2, res3], dim=1),
        )


class MusicnnVGG(nn.Module):
    """musicnn's vgg baseline: 5 x (3x3 conv -> ReLU -> BN -> max pool), dense to the tags."""

    POOLS = ((4, 1), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((4, 4), (4, 4))

    def __init__(self, n_tags: int = 50, filters: int = 128):
        super().__init__()
        self.input_bn = nn.BatchNorm2d(1, eps=BN_EPSILON)
        self.convs = nn.ModuleList(
            [nn.Conv2d(1 if i == 0 else filters, filters, 3, padding=1) for i in range(5)]
        )
        self.bns = nn.ModuleList([nn.BatchNorm2d(filters, eps=BN_EPSILON) for _ in range(5)])
        self.classifier = nn.Linear(2 * filters, n_tags)  # pool5 is [2 time, 1 band, filters]

    def forward(self, patches: torch.Tensor) -> torch.Tensor:  # -> logits [B, n_tags]
        x = self.input_bn(patches.unsqueeze(1))
        for conv, bn, (size, stride) in zip(self.convs, self.bns, self.POOLS):
            x = F.max_pool2d(bn(F.relu(conv(x))), kernel_size=size, stride=stride)
        return self.classifier(x.permute(0, 2, 3, 1).flatten(1))  # flatten in TF's NHWC order


# ----------------------------------------------------------------------------------------------------
# Weights: TF checkpoint in the musicnn wheel -> PyTorch state dict -> safetensors cache


def musicnn_package_dir() -> Path:
    spec = importlib.util.find_spec("musicnn")  # locate without importing (it imports tensorflow)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the musicnn wheel is not installed: pip install --no-deps musicnn==0.1.0")
    return Path(next(iter(spec.submodule_search_locations)))


def cache_dir() -> Path:
    root = os.environ.get("MUSICCAP_CACHE") or Path.home() / ".cache" / "musiccap"
    return Path(root) / "musicnn"


def _conv2d(kernel: np.ndarray) -> np.ndarray:  # TF [kh, kw, in, out] -> torch [out, in, kh, kw]
    return kernel.transpose(3, 2, 0, 1)


def _batch_norm(tf: dict[str, np.ndarray], scope: str, prefix: str) -> dict[str, np.ndarray]:
    return {
        f"{prefix}.weight": tf[f"{scope}/gamma"],
        f"{prefix}.bias": tf[f"{scope}/beta"],
        f"{prefix}.running_mean": tf[f"{scope}/moving_mean"],
        f"{prefix}.running_var": tf[f"{scope}/moving_variance"],
    }


def _bn_scope(i: int) -> str:
    return "batch_normalization" if i == 0 else f"batch_normalization_{i}"


def _conv_scope(i: int) -> str:
    return "conv2d" if i == 0 else f"conv2d_{i}"


def convert_musicnn(tf: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """TF variable names follow layer creation order in ``build_musicnn``: input BN, then per block conv+BN."""
    sd = _batch_norm(tf, _bn_scope(0), "input_bn")
    blocks = (
        [f"timbral.{i}" for i in range(2)]
        + [f"temporal.{i}" for i in range(3)]
        + [f"midend.{i}" for i in range(3)]
    )
    for i, name in enumerate(blocks):
        kernel = tf[f"{_conv_scope(i)}/kernel"]
        if name.startswith(
            "midend"
        ):  # conv2d [7, width, 1, out] over [T, width, 1] == conv1d [out, width, 7]
            kernel = kernel[:, :, 0, :].transpose(2, 1, 0)
        else:
            kernel = _conv2d(kernel)
        sd[f"{name}.conv.weight"] = kernel
        sd[f"{name}.conv.bias"] = tf[f"{_conv_scope(i)}/bias"]
        sd.update(_batch_norm(tf, _bn_scope(i + 1), f"{name}.bn"))
    sd.update(_batch_norm(tf, _bn_scope(len(blocks) + 1), "pool_bn"))
    sd["penultimate.weight"], sd["penultimate.bias"] = tf["dense/kernel"].T, tf["dense/bias"]
    sd.update(_batch_norm(tf, _bn_scope(len(blocks) + 2), "penultimate_bn"))
    sd["classifier.weight"], sd["classifier.bias"] = tf["dense_1/kernel"].T, tf["dense_1/bias"]
    return sd


def convert_vgg(tf: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    sd = _batch_norm(tf, _bn_scope(0), "input_bn")
    for i in range(5):
        sd[f"convs.{i}.weight"] = _conv2d(tf[f"{i + 1}CNN/kernel"])
        sd[f"convs.{i}.bias"] = tf[f"{i + 1}CNN/bias"]
        sd.update(_batch_norm(tf, _bn_scope(i + 1), f"bns.{i}"))
    sd["classifier.weight"], sd["classifier.bias"] = tf["dense/kernel"].T, tf["dense/bias"]
    return sd


def _build(model_name: str) -> nn.Module:
    if model_name not in MODELS:
        raise ValueError(f"unknown musicnn model {model_name!r}; choose from {MODELS}")
    return MusicnnVGG() if model_name.endswith("vgg") else Musicnn()


def cached_weights(model_name: str) -> Path:
    """Path of the converted safetensors file, converting from the wheel's checkpoint on first use."""
    from safetensors.numpy import save_file

    path = cache_dir() / f"{model_name}.safetensors"
    if not path.exists():
        from .tf_checkpoint import load_checkpoint

        tf = load_checkpoint(f"{musicnn_package_dir() / model_name}/")
        convert = convert_vgg if model_name.endswith("vgg") else convert_musicnn
        state = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in convert(tf).items()}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        save_file(state, str(tmp), metadata={"source": f"musicnn 0.1.0 wheel, {model_name} (ISC)"})
        tmp.replace(path)  # atomic: concurrent first uses never see a half-written file
    return path


def load_model(model_name: str = "MTT_musicnn") -> nn.Module:
    """The PyTorch network with musicnn's weights, in eval mode."""
    from safetensors.torch import load_file

    model = _build(model_name)
    model.load_state_dict(load_file(str(cached_weights(model_name))))
    return model.eval()


# ----------------------------------------------------------------------------------------------------
# Tagging / feature extraction


@dataclass
class MusicnnOutput:
    """What one clip gives. Patch p covers frames [patch_starts[p], + 187); frame t is centred at t * 16 ms."""

    model: str
    labels: tuple[str, ...]
    tags: np.ndarray  # [n_patches, n_tags] sigmoid probabilities
    logits: np.ndarray  # [n_patches, n_tags]
    patch_times: np.ndarray  # [n_patches, 2] start/end seconds
    penultimate: np.ndarray | None  # [n_patches, 200] (musicnn models only)
    frontend: np.ndarray | None  # [n_frames, 561] timbral (408) + temporal (153) features
    midend: np.ndarray | None  # [n_frames, 192] cnn1, cnn2, cnn3
    frame_times: np.ndarray | None  # [n_frames] seconds

    def mean_tags(self) -> dict[str, float]:
        return dict(zip(self.labels, self.tags.mean(axis=0).tolist()))


class MusicnnTagger:
    """Loads a musicnn model lazily and runs it on raw audio or on ready-made log-mel patches."""

    def __init__(self, model_name: str = "MTT_musicnn", device: str = "cpu"):
        if model_name not in MODELS:
            raise ValueError(f"unknown musicnn model {model_name!r}; choose from {MODELS}")
        self.model_name = model_name
        self.labels = labels_for(model_name)
        self.device = torch.device(device)
        self._model: nn.Module | None = None

    @property
    def model(self) -> nn.Module:
        if self._model is None:
            self._model = load_model(self.model_name).to(self.device)
        return self._model

    @property
    def is_vgg(self) -> bool:
        return self.model_name.endswith("vgg")

    @torch.inference_mode()
    def run_patches(self, patches: np.ndarray, batch_size: int = 16) -> MusicnnActivations | torch.Tensor:
        """Activations for [n, 187, 96] patches; batches bound the memory of long files (~30 MB a patch)."""
        x = torch.from_numpy(np.ascontiguousarray(patches, dtype=np.float32)).to(self.device)
        outs = [self.model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
        if self.is_vgg:
            return torch.cat(outs)
        return MusicnnActivations(
            *(torch.cat([getattr(o, f.name) for o in outs]) for f in fields(MusicnnActivations))
        )

    def __call__(self, samples: np.ndarray, sample_rate: int, cover_end: bool = False) -> MusicnnOutput:
        frames = log_mel(samples, sample_rate)
        starts = patch_starts(len(frames), cover_end=cover_end)
        out = self.run_patches(make_patches(frames, starts))
        patch_times = np.array([[s, s + PATCH_FRAMES] for s in starts], dtype=np.float32) * FRAME_SECONDS
        if self.is_vgg:
            logits = out.numpy()
            return MusicnnOutput(self.model_name, self.labels, _sigmoid(logits), logits, patch_times, None, None, None, None)  # fmt: skip
        n_frames = max(len(frames), PATCH_FRAMES)
        frontend = stitch_patches(out.frontend.numpy(), starts, n_frames)
        midend = stitch_patches(out.midend.numpy(), starts, n_frames)
        logits = out.logits.numpy()
        if cover_end and len(starts) > len(
            patch_starts(len(frames))
        ):  # tags/penultimate: musicnn's patches only
            logits, penultimate, patch_times = logits[:-1], out.penultimate.numpy()[:-1], patch_times[:-1]
        else:
            penultimate = out.penultimate.numpy()
        frame_times = np.arange(len(frontend), dtype=np.float32) * FRAME_SECONDS
        return MusicnnOutput(
            self.model_name,
            self.labels,
            _sigmoid(logits),
            logits,
            patch_times,
            penultimate,
            frontend,
            midend,
            frame_times,
        )


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-x.astype(np.float64)))).astype(np.float32)


def stitch_patches(per_patch: np.ndarray, starts: list[int], n_frames: int) -> np.ndarray:
    """[n_patches, C, 187] -> [frames covered, C]; a frame in two patches takes the earlier patch."""
    end = min(starts[-1] + PATCH_FRAMES, n_frames)
    out = np.zeros((end, per_patch.shape[1]), dtype=np.float32)
    for patch, start in reversed(list(zip(per_patch, starts))):
        out[start : start + PATCH_FRAMES] = patch.T[: end - start]
    return out


@lru_cache(maxsize=4)
def shared_tagger(model_name: str = "MTT_musicnn") -> MusicnnTagger:
    """One tagger per model per process, so the weights load once."""
    return MusicnnTagger(model_name)


def top_tags(
    samples: np.ndarray, sample_rate: int, k: int = 10, model_name: str = "MTT_musicnn"
) -> dict[str, float]:
    """The k most probable tags (probability averaged over musicnn's 3 s patches), highest first."""
    tags = shared_tagger(model_name)(samples, sample_rate).mean_tags()
    return dict(sorted(tags.items(), key=lambda kv: -kv[1])[:k])
