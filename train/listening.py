"""The listening table: how much of what a captioner says comes from the audio (docs/METRICS.md, "listening").

For each attribute the corpus controls (instrument families F1, tempo class, mode, drums, mood),
three numbers on a split, all scored by the same reader and scorer
(``musiccap.metrics.attributes.read_caption`` / ``score_reads``):

* **floor** — the best single fixed caption: among the training captions, the one whose statement
  about the attribute scores best on train as a constant prediction for every clip; its text is
  recorded under ``floor_captions``. A captioner that ignores its audio can reach this and no more.
* **ceiling** — a linear probe on the captioner's own audio input as its decoder side receives it
  (``probe_input``: the frozen CLAP frame tokens for CSA/BLAP, the CLAP embedding RGMC's prefix and
  the Nearest baseline read, the embedded frames/chunks MusCaps and ALCAP feed their trainable
  encoders, the trained CNN's chunks for MusCaps without pre-training; an encoder a config trains
  is probed as trained). Pooled over time (mean, std, max), standardised, logistic regression
  (families one-vs-rest) fitted on train, its regularisation chosen on validation.
  Random has no audio input: no ceiling, and ``ceiling_input`` is null with a note.
* **caption** — the captioner's own captions read back (saying nothing counts as wrong).

``audio_sensitivity`` perturbs the audio of a seeded subset of the split's clips and captions them
again (clip id, lyrics and everything else kept):

* ``swap_changed`` — the share of clips whose statement about each attribute changes when the clip's
  audio is swapped for another clip's (a seeded derangement), and its mean over the attributes
  (``overall``). A captioner that ignores its audio scores 0.
* ``original`` / ``swap`` / ``noise`` / ``silence`` — the attribute scores of the subset's captions
  with its own audio, with the swapped audio, with noise (a seeded bank of white and pink noise at
  three levels, one per clip) and with silence; the fall from ``original`` is what the audio gave.

Every value is in [0, 1]; the table (``musiccap.metrics.listening``) derives the gap closed.
"""

from __future__ import annotations

import dataclasses
import functools
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from musiccap.attributes import FAMILIES
from musiccap.metrics.attributes import READER_VERSION, CaptionAttributes, read_caption, score_reads
from musiccap.metrics.listening import ATTRIBUTES

PROBE_CS = (0.001, 0.01, 0.1, 1.0)  # inverse regularisation strengths tried on validation
PROBE_BATCH = 64
PROBE_FAMILIES = tuple(f for f in FAMILIES if f != "drums")  # drums has its own attribute
READ_FIELDS = {"tempo": "tempo_class", "mode": "mode", "drums": "drums", "mood": "mood"}
NOISE_SECONDS = 10.0
NOISE_RATE = 16000
NOISE_LEVELS = (0.01, 0.05, 0.2)  # RMS: about -40, -26 and -14 dBFS
DEFAULT_SENSITIVITY_CLIPS = 200


def attribute_scores(reads: Sequence[CaptionAttributes], truths: Sequence[dict]) -> dict[str, float]:
    """The five listening attributes of ``score_reads`` under their listening names."""
    accuracy = score_reads(reads, truths)
    return {
        "instrument_f1": accuracy.instrument_f1,
        "tempo": accuracy.tempo_acc,
        "mode": accuracy.mode_acc,
        "drums": accuracy.drums_acc,
        "mood": accuracy.mood_acc,
    }


def statement(read: CaptionAttributes, attribute: str):
    """What a read caption says about one attribute (families as a frozenset; None: nothing)."""
    if attribute == "instrument_f1":
        return frozenset(read.families)
    return getattr(read, READ_FIELDS[attribute])


# ---- floor -------------------------------------------------------------------------------------------


def _constant_score(attribute: str, value, truths: Sequence[dict]) -> float:
    """Train score of stating ``value`` for every clip (the same numbers ``attribute_scores`` gives)."""
    if attribute != "instrument_f1":
        field = READ_FIELDS[attribute]
        return sum(truth[field] == value for truth in truths) / len(truths)
    present = Counter(f for truth in truths for f in set(truth["families"]) - {"drums"})
    true_positives = sum(present[f] for f in value)
    predicted, actual = len(value) * len(truths), sum(present.values())
    return 2 * true_positives / (predicted + actual) if predicted + actual else 0.0


def choose_floor(train_captions: Sequence[str], train_truths: Sequence[dict]) -> dict[str, str]:
    """Per attribute, the training caption whose statement scores best on train as a constant
    (the first such caption in corpus order on a tie)."""
    first_stating: dict[str, dict] = {attribute: {} for attribute in ATTRIBUTES}
    for caption in dict.fromkeys(train_captions):
        read = read_caption(caption)
        for attribute in ATTRIBUTES:
            value = statement(read, attribute)
            if value is not None and value != frozenset():
                first_stating[attribute].setdefault(value, caption)
    chosen = {}
    for attribute, captions in first_stating.items():
        if not captions:
            raise ValueError(f"no training caption states {attribute}: the floor is undefined")
        best = max(captions, key=lambda value: _constant_score(attribute, value, train_truths))
        chosen[attribute] = captions[best]
    return chosen


def floor_scores(floor_captions: dict[str, str], truths: Sequence[dict]) -> dict[str, float]:
    return {
        attribute: attribute_scores([read_caption(caption)] * len(truths), truths)[attribute]
        for attribute, caption in floor_captions.items()
    }


# ---- ceiling: what each architecture's decoder side receives -----------------------------------------


@dataclass
class ProbeInput:
    description: str
    features: Callable[[list], np.ndarray]  # FeatureItems -> [N, D]


def pool_over_time(sequences: Sequence[np.ndarray]) -> np.ndarray:
    """[N, 3D]: mean, standard deviation and maximum over time of each [T, D] sequence."""
    return np.stack(
        [
            np.concatenate([s.mean(0), s.std(0), s.max(0)])
            for s in (np.asarray(x, np.float64) for x in sequences)
        ]
    ).astype(np.float32)


def clap_token_input(clap, what: str) -> ProbeInput:
    """A CLAP audio tower's frame tokens (CSA and BLAP cross-attend to them)."""

    def features(items: list) -> np.ndarray:
        sequences = []
        clap.eval()
        with torch.inference_mode():
            for start in range(0, len(items), PROBE_BATCH):
                batch = clap.audio_batch([item.features for item in items[start : start + PROBE_BATCH]])
                tokens, _ = clap.audio_tokens(batch["frames"], batch["mask"], batch["pooled"])
                # the tokens over real audio (a prefix for the embedded CLAP; HTSAT's mask need not be one)
                sequences += [t[m].numpy() for t, m in zip(tokens, batch["mask"].bool(), strict=True)]
        return pool_over_time(sequences)

    return ProbeInput(f"{what} frame tokens (mean, std, max over time)", features)


def clap_embedding_input(clap, what: str) -> ProbeInput:
    """A CLAP's clip embedding (RGMC maps it to its prefix; the Nearest baseline retrieves with it)."""

    def features(items: list) -> np.ndarray:
        with torch.inference_mode():
            return np.asarray(clap.embed_audio([item.features for item in items], batch_size=PROBE_BATCH))

    return ProbeInput(f"{what} clip embedding", features)


def cached_sequence_input(field: str, what: str) -> ProbeInput:
    """A sequence of the cached embedded features (``frames`` or ``chunks``), as a trainable encoder gets it."""

    def features(items: list) -> np.ndarray:
        return pool_over_time([getattr(item.features, field) for item in items])

    return ProbeInput(f"{what} (mean, std, max over time)", features)


def scratch_cnn_input(captioner) -> ProbeInput:
    """MusCaps without pre-training: the chunk features its trained musicnn computes from log-mels."""
    from musiccap.models.muscaps import audio_file_mel_patches

    def features(items: list) -> np.ndarray:
        sequences = []
        with torch.inference_mode():
            for item in items:
                # one clip's log-mels at a time: the probe trains on every training clip, whose patches
                # together (10,000 clips of corpus v2) would hold several GB
                mel = (
                    item.mel_patches
                    if item.mel_patches is not None
                    else audio_file_mel_patches(item.audio_path)
                )
                patches = torch.as_tensor(np.asarray(mel, np.float32))
                mask = torch.ones(1, len(patches), dtype=torch.bool)
                sequences.append(captioner.chunk_features(patches[None], mask)[0].numpy())
        return pool_over_time(sequences)

    return ProbeInput("the trained musicnn's chunk features (mean, std, max over time)", features)


def probe_input(captioner) -> ProbeInput | None:
    """What the captioner's decoder side receives from the audio before its own trainable parts
    (an encoder the config trains is read as trained); None for Random, which hears nothing."""
    name = captioner.name
    if isinstance(captioner, torch.nn.Module):
        captioner.eval()  # the encoder as captioning runs it: no dropout (a trained CLAP lives inside)
    trained = getattr(getattr(captioner, "config", None), "train_encoder", False)
    clap_kind = "trained CLAP audio tower" if trained else "frozen CLAP"
    if name == "random":
        return None
    if name == "nearest":
        return clap_embedding_input(captioner.clap, "frozen CLAP")
    if name == "rgmc":
        return clap_embedding_input(captioner.encoder, clap_kind)
    if name in ("csa", "blap"):
        return clap_token_input(captioner.clap, clap_kind)
    if name == "alcap":
        return cached_sequence_input("frames", "embedded frames (musicnn + chroma/key + tempogram)")
    if name == "muscaps":
        if captioner.config.audio_encoder == "scratch":
            return scratch_cnn_input(captioner)
        field = captioner.config.audio_input
        return cached_sequence_input(
            field,
            f"embedded {field} (musicnn{' + chroma/key + tempogram' if field == 'frames' else ' penultimate'})",
        )
    raise ValueError(f"no probe input defined for architecture {name!r}")


@dataclass
class Probe:
    """Standardisation + one logistic regression per attribute (per family for ``instrument_f1``)."""

    mean: np.ndarray
    scale: np.ndarray
    models: dict[str, object]  # attribute (or family) -> fitted classifier, or a constant label
    strengths: dict[str, float]  # attribute -> the C chosen on validation

    def reads(self, x: np.ndarray) -> list[CaptionAttributes]:
        x = (x - self.mean) / self.scale
        predicted = {key: _predict(model, x) for key, model in self.models.items()}
        return [
            CaptionAttributes(
                families={f for f in PROBE_FAMILIES if predicted[f][row]},
                drums=bool(predicted["drums"][row]),
                tempo_class=predicted["tempo"][row],
                mode=predicted["mode"][row],
                mood=predicted["mood"][row],
            )
            for row in range(len(x))
        ]


def _predict(model, x: np.ndarray) -> list:
    if isinstance(model, Constant):
        return [model.label] * len(x)
    return model.predict(x).tolist()


@dataclass
class Constant:
    """The classifier for a label train never varies on."""

    label: object


def _labels(truths: Sequence[dict], key: str) -> list:
    if key in PROBE_FAMILIES:
        return [key in truth["families"] for truth in truths]
    return [truth[READ_FIELDS[key]] for truth in truths]


def _fit(x: np.ndarray, labels: list, strength: float):
    from sklearn.linear_model import LogisticRegression

    if len(set(labels)) < 2:
        return Constant(labels[0])
    return LogisticRegression(C=strength, max_iter=2000).fit(x, labels)


def fit_probe(
    train_x: np.ndarray, train_truths: Sequence[dict], val_x: np.ndarray, val_truths: Sequence[dict]
) -> Probe:
    """Fit on train; per attribute keep the C whose model scores best on validation (the smallest on a tie)."""
    mean = train_x.mean(0)
    scale = train_x.std(0)
    scale[scale == 0] = 1.0
    train_x, val_x = (train_x - mean) / scale, (val_x - mean) / scale
    models: dict[str, object] = {}
    strengths: dict[str, float] = {}
    for attribute in ATTRIBUTES:
        keys = PROBE_FAMILIES if attribute == "instrument_f1" else (attribute,)
        best = None
        for strength in PROBE_CS:
            fitted = {key: _fit(train_x, _labels(train_truths, key), strength) for key in keys}
            candidate = Probe(np.zeros(1), np.ones(1), {**_placeholders(), **fitted}, {})
            score = attribute_scores(candidate.reads(val_x), val_truths)[attribute]
            if best is None or score > best[0]:
                best = (score, strength, fitted)
        models.update(best[2])
        strengths[attribute] = best[1]
    return Probe(mean, scale, models, strengths)


def _placeholders() -> dict[str, Constant]:
    """Stand-ins for the attributes not being chosen, so a partial probe can be read and scored."""
    return {**{f: Constant(False) for f in PROBE_FAMILIES}, **{a: Constant(None) for a in READ_FIELDS}}


# ---- audio sensitivity -------------------------------------------------------------------------------


@dataclass
class Replacement:
    """Audio standing in for a clip's own: its features and a file (for inputs computed from the waveform)."""

    name: str
    features: object
    audio_path: str

    @functools.cached_property
    def analysis(self):
        """What the app's analysis hears in it (analysis-conditioned captioners read it); computed on first use."""
        from musiccap.analysis import analyze
        from musiccap.audio import load_audio, windows
        from musiccap.clip import Clip

        return analyze(Clip(windows(load_audio(self.audio_path), "first")[0]))


def noise_bank(encoder, directory: Path, seed: int = 0) -> tuple[list[Replacement], Replacement]:
    """White and pink noise at ``NOISE_LEVELS`` and one silence, as files under ``directory`` and as
    the features ``encoder`` (the captioner's feature encoder) computes from them."""
    import soundfile

    rng = np.random.default_rng(seed)
    n = int(NOISE_SECONDS * NOISE_RATE)
    white = rng.standard_normal(n)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum[1:] /= np.sqrt(np.arange(1, len(spectrum)))  # 1/f power
    spectrum[0] = 0
    pink = np.fft.irfft(spectrum, n)
    signals = {}
    for colour, base in (("white", white), ("pink", pink)):
        for level in NOISE_LEVELS:
            signals[f"{colour} noise, RMS {level}"] = base / np.sqrt(np.mean(base**2)) * level
    signals["silence"] = np.zeros(n)
    bank = []
    for index, (name, samples) in enumerate(signals.items()):
        samples = samples.astype(np.float32)
        path = directory / f"replacement_{index}.wav"
        soundfile.write(path, samples, NOISE_RATE, subtype="FLOAT")
        bank.append(Replacement(name, encoder(samples, NOISE_RATE), str(path)))
    return bank[:-1], bank[-1]


def with_audio(item, replacement: Replacement | object):
    """A copy of ``item`` (same id, caption, lyrics, attributes) with another audio: a Replacement or
    another item."""
    return dataclasses.replace(
        item,
        features=replacement.features,
        audio_path=replacement.audio_path,
        mel_patches=getattr(replacement, "mel_patches", None),
        # the replacement's own analysis, when the item's is there to be replaced (a corpus with analyses)
        analysis=replacement.analysis if getattr(item, "analysis", None) is not None else None,
    )


def derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A permutation with no fixed point: a random order, each position taking the next one's clip."""
    if n < 2:
        raise ValueError("swapping audio needs at least two clips")
    order = rng.permutation(n)
    donor = np.empty(n, dtype=int)
    donor[order] = np.roll(order, -1)
    return donor


def audio_sensitivity(
    items: list,
    predictions: Sequence[str],
    caption: Callable[[list], list[str]],
    encoder,
    n_clips: int = DEFAULT_SENSITIVITY_CLIPS,
    seed: int = 0,
) -> dict:
    """Caption a seeded subset of ``items`` again with swapped audio, noise and silence (``caption``:
    items -> texts, the captioner's own decoding) and compare with ``predictions``."""
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(items), size=min(n_clips, len(items)), replace=False))
    subset = [items[i] for i in chosen]
    truths = [item.attributes for item in subset]
    original = [read_caption(predictions[i]) for i in chosen]
    donors = derangement(len(subset), rng)
    swapped = [
        read_caption(t) for t in caption([with_audio(item, subset[d]) for item, d in zip(subset, donors)])
    ]
    changed = {
        attribute: float(
            np.mean([statement(a, attribute) != statement(b, attribute) for a, b in zip(original, swapped)])
        )
        for attribute in ATTRIBUTES
    }
    changed["overall"] = float(np.mean([changed[a] for a in ATTRIBUTES]))
    with tempfile.TemporaryDirectory() as directory:
        noises, silence = noise_bank(encoder, Path(directory), seed)
        assigned = rng.integers(len(noises), size=len(subset))
        noisy = caption([with_audio(item, noises[k]) for item, k in zip(subset, assigned)])
        silent = caption([with_audio(item, silence) for item in subset])
    return {
        "n": len(subset),
        "seed": seed,
        "swap_changed": changed,
        "original": attribute_scores(original, truths),
        "swap": attribute_scores(swapped, truths),
        "noise": attribute_scores([read_caption(t) for t in noisy], truths),
        "silence": attribute_scores([read_caption(t) for t in silent], truths),
        "noise_bank": [n.name for n in noises],
    }


# ---- the block ---------------------------------------------------------------------------------------


@dataclass
class ListeningReference:
    """What every split's block shares: the floor captions and the fitted probe (None: no audio input)."""

    floor_captions: dict[str, str]
    probe: Probe | None
    probe_input: ProbeInput | None

    @classmethod
    def fit(
        cls, captioner, train_rows: Sequence[dict], train_items: list, val_items: list
    ) -> ListeningReference:
        """``train_rows``: the train manifest (its captions choose the floor); ``*_items``: FeatureItems
        with the captioner's own features (the probe's data)."""
        captions = [text for row in train_rows for text in row.get("captions") or [row["caption"]]]
        floor_captions = choose_floor(captions, [row["attributes"] for row in train_rows])
        source = probe_input(captioner)
        if source is None:
            return cls(floor_captions, None, None)
        probe = fit_probe(
            source.features(train_items),
            [item.attributes for item in train_items],
            source.features(val_items),
            [item.attributes for item in val_items],
        )
        return cls(floor_captions, probe, source)

    def block(self, split: str, items: list, predictions: Sequence[str], sensitivity: dict) -> dict:
        truths = [item.attributes for item in items]
        floor = floor_scores(self.floor_captions, truths)
        caption = attribute_scores([read_caption(p) for p in predictions], truths)
        ceiling = (
            attribute_scores(self.probe.reads(self.probe_input.features(items)), truths)
            if self.probe
            else None
        )
        attributes = {
            a: {"floor": floor[a], **({"ceiling": ceiling[a]} if ceiling else {}), "caption": caption[a]}
            for a in ATTRIBUTES
        }
        block = {
            "split": split,
            "n": len(items),
            "attributes": attributes,
            "floor_captions": self.floor_captions,
            "ceiling_input": self.probe_input.description if self.probe_input else None,
            "attribute_reader": READER_VERSION,
        }
        if self.probe:
            block["ceiling_probe_c"] = self.probe.strengths
        else:
            block["ceiling_note"] = (
                "no audio input: the captioner never hears the clip, so there is nothing to probe"
            )
        block["audio_sensitivity"] = sensitivity
        return block


def listening_report(
    captioner,
    corpus: str | Path,
    split: str,
    items: list,
    predictions: Sequence[str],
    caption: Callable[[list], list[str]],
    *,
    encoder=None,
    sensitivity_clips: int = DEFAULT_SENSITIVITY_CLIPS,
    seed: int = 0,
    unseen_corpus: str | Path | None = None,
) -> dict:
    """``{"listening": block}`` for ``split`` (whose ``items`` the captioner captioned as
    ``predictions``), plus ``"listening_unseen"`` from the unseen split of ``unseen_corpus`` (default:
    the corpus itself, when it has one); ``{}`` for a corpus without attributes. ``caption``: items ->
    texts with the captioner's decoding; ``encoder``: the captioner's feature encoder (None: the
    embedded one). Another corpus's unseen split measures a model trained on a corpus without one (v1)
    on compositions and a soundfont it never met; the floor and probe still come from its own corpus."""
    from musiccap.features import embedded_encoder
    from train.data import load_items, read_manifest

    train_rows = read_manifest(corpus, "train")
    if any(row.get("attributes") is None for row in train_rows) or any(i.attributes is None for i in items):
        return {}
    encoder = encoder or embedded_encoder()
    reference = ListeningReference.fit(
        captioner,
        train_rows,
        load_items(corpus, "train", encoder=encoder),
        load_items(corpus, "validation", encoder=encoder),
    )

    def block(name: str, split_items: list, texts: Sequence[str]) -> dict:
        sensitivity = audio_sensitivity(split_items, texts, caption, encoder, sensitivity_clips, seed)
        return reference.block(name, split_items, texts, sensitivity)

    report = {"listening": block(split, items, predictions)}
    unseen_corpus = Path(unseen_corpus or corpus)
    if split != "unseen" and (unseen_corpus / "unseen.jsonl").is_file():
        unseen = load_items(unseen_corpus, "unseen", encoder=encoder)
        report["listening_unseen"] = block("unseen", unseen, caption(unseen))
        report["listening_unseen"]["corpus"] = unseen_corpus.name
    return report
