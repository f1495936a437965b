"""Kim & Park, "Data-Efficient Music Captioning via Contrastive and Semantic Alignment": registry key ``csa``.

A CLAP audio encoder gives frame tokens; a vanilla Transformer decoder cross-attends to them and
writes the caption with the CLAP text encoder's tokenizer. The CLAP is either backend of
``musiccap.encoders.clap_loader.load_clap``: the embedded CLAP (musicnn-based audio tower, MiniLM
text tower; what ``checkpoints/`` ships) or, for the full profile, LAION CLAP HTSAT + RoBERTa
(``HtsatClap``: the paper's encoder; ``train/configs/csa_full.yaml``, ``clap_path`` a folder or a
Hub id). Both answer the same members, so nothing below depends on which one it is.

Training adds two alignment terms to the NLL (paper eq. 2-5):

    L = L_NLL + alpha * L_C + beta * L_S,   alpha = 0.5, beta = 1.0

* **L_C** (contrastive modality alignment): symmetric InfoNCE (audio->text plus text->audio, the
  paper's sum) between the pooled audio embedding E_A and the *frozen* CLAP text embedding E_T of
  the reference caption, with a fixed temperature. Rows of a batch that share a caption are not
  negatives of each other (the synthetic corpus repeats short captions). E_T comes from the
  CLAP's ``embed_text``, once per distinct caption (the tower is frozen).
* **L_S** (semantic alignment): sum over steps t of 1 - cos(f_t(y_hat_1:t), f_t(y)), f_t the frozen
  CLAP text tower. Two choices make it trainable here:

  - *Differentiable prefix.* y_hat_s is the decoder's teacher-forced prediction at step s (the paper
    trains with teacher forcing). Instead of its argmax token (no gradient), the prefix enters the
    text tower as **expected token embeddings**: softmax over the pruned vocabulary times the text
    tower's word embeddings of those ids (MiniLM's, or RoBERTa's), between the embeddings of its
    [CLS]/<s> and [SEP]/</s>, through the CLAP's ``text_embedding_from_inputs_embeds``. Gradients
    reach the decoder through the softmax; the text tower itself stays frozen.
  - *Sampled steps.* One text-tower pass per prefix length is what makes the sum expensive (a
    6-layer MiniLM forward and backward per step per caption: all ~58 steps of a caption would cost
    ~50x the rest of the model). Each caption contributes ``semantic_steps`` prefix lengths (default
    1) drawn uniformly from 1..|y| afresh in every batch, and the loss is their mean, an unbiased
    estimate of the per-step mean of the paper's sum; over the epochs every step is visited.
    ``semantic_rows`` (the shipped configs: 8 of 32) samples which captions of a batch take part, the
    same unbiased estimate at a quarter of the text-tower cost (it was ~70 % of an M4 step). L_NLL
    is likewise the per-token mean of eq. 4's sum; both sums run over the same steps, so dividing
    both by the caption length keeps beta's meaning. In evaluation mode (the trainer's validation
    loss) the draws are seeded, so the early-stopping signal is not noise.

  - *Reference* (``semantic_reference``). The paper compares every prefix with the **whole** caption
    (eq. 3: "y is the full ground-truth caption"); that is the default, in M4 and the shipped model. Its pull
    on a short prefix is towards the caption's content words wherever they fall, against L_NLL's
    word order. ``"prefix"`` compares f(y_hat_1:t) with the reference's own first t tokens f(y_1:t)
    instead (the frozen tower under no_grad; a perfect prediction then scores 0 at every t): an
    ablation row, ``csa_m4_prefix_reference``, not the paper's loss.

What moves under each term. The decoder reads ``memory = LayerNorm(Linear(tokens))``: a trainable
projection of the CLAP frame tokens (the paper's encoder is the HTS-AT blocks *followed by
projection layers*, and M2 freezes only the blocks). E_A is a linear head on the masked mean of that
memory, so L_C shapes exactly what the decoder cross-attends to, as in Wu et al. (2024, the paper's
[24]), whose InfoNCE the paper follows. With the encoder frozen (M2-M4) the projection and the
decoder are what train; M1 also trains the CLAP audio tower.

Sizes. Paper Table I: 8 layers, width 1024, 8 heads, query/key/value 512 (``attention_dim``),
dropout 0.1, 300 tokens: ``csa_full.yaml``. The embedded profile
defaults to 4 layers x 256 wide, 4 heads, feed-forward 1024, dropout 0.1, 128 positions, pre-LN
blocks (stable without warm-up at Adam 1e-4), output layer tied to the token embeddings: sized
for the 0.6 s beam-5 budget on this 2-core CPU (cached keys/values per layer, all beams in one
batch). The tokenizer is the CLAP text tower's (MiniLM's WordPiece; RoBERTa's BPE with HTSAT-CLAP,
as in the paper), **pruned** to the ids that occur in the training captions plus the special
tokens; the map from decoder ids to the text tower's ids is a buffer in the checkpoint (named
``minilm_ids`` after the embedded profile, whose shipped checkpoint stores it under that key).

Pitch-shift augmentation (paper: +-6 semitones on the audio) is applied on features and the
caption's key names alike: ``musiccap/models/pitch_shift.py``.

Checkpoints hold the decoder, the projection, the alignment head and the id map; the CLAP stays in
its own folder (``clap_path``, refused at load if its hash changed), except that M1 also saves the
audio tower it trained (for HTSAT: all of HTSAT and its projection). MiniLM is never saved: the CLAP
rebuilds it from its package.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from musiccap.checkpoint import checkpoint_hash, config_from_dict, read_config, require_hash
from musiccap.conditioning import AnalysisToken
from musiccap.decoding import DecodingConfig
from musiccap.encoders.clap_loader import EMBEDDED, clap_folder, clap_kind, load_clap
from musiccap.models.base import Clip, NeuralCaptioner, SearchStart, register
from musiccap.models.blocks import IGNORE, DecoderShape, TransformerDecoder, layer_views, teacher_forcing
from musiccap.models.pitch_shift import (
    PITCH_CLASSES,
    TONIC_SPELLINGS,
    embedded_pitch_class_blocks,
    pitch_shift_frames,
    transpose_key_names,
)

# Decoder ids 0..3: the text tokenizer's pad, unk, cls (BOS) and sep (EOS) tokens; MiniLM's own ids for
# them are [PAD] 0, [UNK] 100, [CLS] 101, [SEP] 102, RoBERTa's <pad> 1, <unk> 3, <s> 0, </s> 2.
PAD, UNK, BOS, EOS = 0, 1, 2, 3
SPECIAL_TOKEN_ROLES = ("pad_token", "unk_token", "cls_token", "sep_token")
NEVER_GENERATED = [PAD, UNK, BOS]


@dataclass
class CsaConfig:
    clap_path: str = "clap"  # a registry name, a CLAP folder (relative: cwd, then the repo) or a Hub id
    clap_hash: str = ""  # checkpoint_hash of that CLAP at build time: a retrained CLAP is refused at load
    audio_dim: int = 0  # CLAP frame-token width, set at build from the CLAP
    embed_dim: int = 0  # CLAP embedding size, set at build from the CLAP
    train_encoder: bool = False  # M1: the CLAP audio tower trains; M2-M4: frozen
    vocab_size: int = 0  # pruned WordPiece size, set at build from the training captions
    n_layers: int = 4
    n_heads: int = 4
    attention_dim: int = 0  # query/key/value width of every attention (Table I: 512); 0: the model width
    width: int = 256
    ff_dim: int = 1024
    dropout: float = 0.1
    max_positions: int = 128  # decoder positions: BOS + caption tokens (longer captions are cut)
    contrastive_weight: float = 0.5  # alpha (M3, M4); 0 for M1, M2
    contrastive_temperature: float = 0.07
    semantic_weight: float = 1.0  # beta (M4); 0 for M1-M3
    semantic_steps: int = 1  # prefix lengths drawn per caption per batch for L_S (the cost: see module doc)
    semantic_rows: int = 0  # captions of a batch that L_S samples (0: all); each costs a text-tower pass
    # what f_t(y_hat_1:t) is pulled towards: "caption", the whole reference caption f(y) (the paper's eq. 3),
    # or "prefix", the reference's own first t tokens f(y_1:t) (an ablation; see the module doc)
    semantic_reference: str = "caption"
    # a diagnostic, off by default: every n-th training batch, each weighted term's gradient norm over the
    # trainable parameters and the cosine of L_C's and L_S's gradients with L_NLL's (``gradient_probe``)
    gradient_probe_every: int = 0
    pitch_shift_semitones: int = 6  # training rows are shifted by a uniform draw from -n..n
    pitch_class_blocks: list[list[int]] = field(default_factory=list)  # [start, end) frame columns, 12 wide
    # > 1: a variant (never a paper's row) weighting attribute words in the NLL (base.caption_nll)
    attribute_word_weight: float = 1.0
    # > 0: a variant (issue 30, never a paper's row): the last this-many columns of the embedded frames
    # (60: chroma, key-profile correlations, tempogram) reach the decoder unpooled, as a second row of
    # memory beside the CLAP's tokens. The CLAP pools mode and tempo away: a linear probe on its tokens
    # reads mode at chance (docs/RESULTS.md, listening ceilings).
    musical_frames: int = 0
    # a variant (issue 30, never a paper's row): the clip's analysis (musiccap/conditioning.py) as one more
    # memory token, after the audio's
    analysis_conditioning: bool = False
    seed: int = 0

    @property
    def attention_width(self) -> int:
        return self.attention_dim or self.width

    def __post_init__(self):
        if self.width % self.n_heads or self.attention_width % self.n_heads:
            raise ValueError("width and attention_dim must be multiples of n_heads")
        for start, end in self.pitch_class_blocks:
            if end - start != PITCH_CLASSES:
                raise ValueError(f"pitch-class block [{start}, {end}) is not {PITCH_CLASSES} wide")
        if self.semantic_steps < 1:
            raise ValueError("semantic_steps must be at least 1")
        if self.semantic_reference not in ("caption", "prefix"):
            raise ValueError(
                f"semantic_reference must be 'caption' or 'prefix', not {self.semantic_reference!r}"
            )


def symmetric_info_nce(
    audio: torch.Tensor, text: torch.Tensor, temperature: float, groups: torch.Tensor
) -> torch.Tensor:
    """L_C = L_Ca + L_Ct (paper eq. 2) on unit vectors; rows of one ``groups`` value are not negatives."""
    logits = audio @ text.T / temperature
    duplicate = (groups[:, None] == groups[None, :]) & ~torch.eye(len(groups), dtype=torch.bool)
    logits = logits.masked_fill(duplicate, float("-inf"))
    targets = torch.arange(len(groups))
    return F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)


@dataclass
class AudioEncoding:
    memory: torch.Tensor  # [B, S, width] what the decoder cross-attends to
    memory_mask: torch.Tensor  # [B, S] True = real frame
    embedding: torch.Tensor  # [B, E] E_A, unit vectors (L_C)
    clap_embedding: torch.Tensor  # [B, E] the CLAP's own clip embedding (shown in the app)


# ---- the captioner ----------------------------------------------------------------------------------


@register
class CsaCaptioner(NeuralCaptioner):
    """CLAP frame tokens -> projection -> Transformer decoder; trained with L_NLL + alpha L_C + beta L_S."""

    name = "csa"
    paper = "Data-Efficient Music Captioning via Contrastive and Semantic Alignment (Kim & Park)"
    config_class = CsaConfig
    component_fields = ("clap_path",)
    # A checkpoint keeps its own decoding (config.json); the shipped one, chosen on validation, is greedy.
    default_decoding = DecodingConfig(num_beams=5, no_repeat_ngram_size=3, max_new_tokens=80)

    def __init__(self, config: CsaConfig, *, clap):
        super().__init__(config)
        if clap.audio_dim != config.audio_dim or clap.embed_dim != config.embed_dim:
            raise ValueError(
                f"the CLAP has audio_dim={clap.audio_dim}, embed_dim={clap.embed_dim}; "
                f"this model was built for {config.audio_dim}, {config.embed_dim}"
            )
        # The CLAP lives in its own checkpoint and stays out of this module (and its state dict);
        # M1 registers the audio tower it trains, which is then saved here.
        self._clap = (clap,)
        clap.eval().requires_grad_(False)
        if config.train_encoder:
            self.audio_tower = clap.audio
            self.audio_tower.requires_grad_(True)
        self.audio_projection = nn.Linear(config.audio_dim, config.width)
        self.audio_norm = nn.LayerNorm(config.width)
        if config.musical_frames:
            self.musical_projection = nn.Linear(config.musical_frames, config.width)
            self.musical_norm = nn.LayerNorm(config.width)
        if config.analysis_conditioning:
            self.analysis_token = AnalysisToken(config.width)
        self.alignment_head = nn.Linear(config.width, config.embed_dim)
        self.decoder = TransformerDecoder(  # GPT style: pre-LN blocks, final norm, tied output layer
            DecoderShape(
                config.vocab_size,
                config.max_positions,
                config.width,
                config.n_layers,
                config.n_heads,
                config.ff_dim,
                config.dropout,
                config.attention_width,
                pre_norm=True,
                fused_key_value=True,
            )
        )
        # decoder id -> text-tower id (the name predates the HTSAT backend); filled by ``build``
        self.register_buffer("minilm_ids", torch.zeros(config.vocab_size, dtype=torch.long))
        self._reference_cache: dict[str, torch.Tensor] = {}  # caption -> frozen E_T (training only)
        self._training_batches = 0  # counts batches for gradient_probe_every

    @property
    def clap(self):
        return self._clap[0]

    @property
    def tokenizer(self):
        return self.clap.tokenizer

    # ---- building, loading ---------------------------------------------------------------------

    @classmethod
    def build(cls, config: dict, train_items: list, context) -> CsaCaptioner:
        settings = config_from_dict(CsaConfig, {"clap_path": context.clap_path, **config})
        clap_dir = clap_folder(settings.clap_path)
        clap = load_clap(clap_dir)
        if clap_kind(clap_dir) == EMBEDDED:
            frame_dim = context.feature_dims[0]
            blocks = settings.pitch_class_blocks or (
                embedded_pitch_class_blocks(frame_dim) if settings.pitch_shift_semitones else []
            )
            if any(end > frame_dim for _, end in blocks):
                raise ValueError(f"pitch-class blocks {blocks} do not fit frames of width {frame_dim}")
            if settings.musical_frames > frame_dim:
                raise ValueError(
                    f"musical_frames={settings.musical_frames} exceeds the frame width {frame_dim}"
                )
        elif settings.musical_frames:
            raise ValueError(
                "musical_frames reads the embedded frames' columns; an HTSAT CLAP reads log-mels"
            )
        elif settings.pitch_shift_semitones or settings.pitch_class_blocks:
            raise ValueError(
                "pitch shift on features rotates the embedded frames' pitch-class blocks; an HTSAT CLAP "
                "reads log-mels: set pitch_shift_semitones to 0"
            )
        else:
            blocks = []
        captions = [item.caption for item in train_items]
        # a transposed caption may name a tonic no training caption does: keep all twelve in the vocabulary
        minilm_ids = pruned_vocabulary(clap.tokenizer, captions + (list(TONIC_SPELLINGS) if blocks else []))
        settings = replace(
            settings,
            clap_hash=checkpoint_hash(clap_dir),
            audio_dim=int(clap.audio_dim),
            embed_dim=int(clap.embed_dim),
            vocab_size=len(minilm_ids),
            pitch_class_blocks=[list(b) for b in blocks],
        )
        torch.manual_seed(settings.seed)
        model = cls(settings, clap=clap)
        model.minilm_ids.copy_(torch.tensor(minilm_ids))
        return model

    @classmethod
    def load_extra(cls, path: Path) -> dict[str, Any]:
        config = read_config(path)["config"]
        clap_dir = clap_folder(config["clap_path"], path)
        remedy = "retrain csa (its projection reads that CLAP's frame tokens)"
        return {"clap": load_clap(require_hash(clap_dir, config.get("clap_hash", ""), path, "CLAP", remedy))}

    # ---- vocabulary ------------------------------------------------------------------------------

    def encode_captions(self, texts: list[str]) -> list[list[int]]:
        """Decoder ids of captions (no BOS/EOS; tokens outside the pruned vocabulary become UNK)."""
        to_decoder = {minilm: own for own, minilm in enumerate(self.minilm_ids.tolist())}
        encoded = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [[to_decoder.get(i, UNK) for i in ids] for ids in encoded]

    def caption_token_ids(self, text: str) -> list[int]:
        return [i for i in self.encode_captions([text])[0] if i != UNK]

    def detokenize(self, ids: list[int]) -> tuple[str, list[str]]:
        """Caption text and one text-tower token per id (the heatmap's rows)."""
        minilm = [int(self.minilm_ids[i]) for i in ids]
        tokens = self.tokenizer.convert_ids_to_tokens(minilm)
        return self.tokenizer.decode(minilm, skip_special_tokens=True).strip(), tokens

    # ---- audio side ------------------------------------------------------------------------------

    def encode_audio(
        self,
        frames: torch.Tensor,
        frame_mask: torch.Tensor,
        pooled: torch.Tensor,
        analysis: torch.Tensor | None = None,
    ) -> AudioEncoding:
        # The CLAP ignores ``pooled`` when it has no pooled input (embedded pooled_dim 0, HTSAT).
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.config.train_encoder):
            tokens, clap_embedding = self.clap.audio_tokens(frames, frame_mask, pooled)
        memory = self.audio_norm(self.audio_projection(tokens))
        weights = frame_mask.to(memory.dtype) / frame_mask.sum(1, keepdim=True).clamp(min=1)
        pooled_memory = torch.einsum("bs,bsd->bd", weights, memory)
        embedding = F.normalize(self.alignment_head(pooled_memory), dim=-1)
        if self.config.musical_frames:  # the variant: memory = [CLAP tokens | musical frames], one time axis
            musical = self.musical_norm(self.musical_projection(frames[..., -self.config.musical_frames :]))
            memory, frame_mask = (
                torch.cat([memory, musical], dim=1),
                torch.cat([frame_mask, frame_mask], dim=1),
            )
        if self.config.analysis_conditioning:
            memory, frame_mask = self.analysis_token.append_to(memory, frame_mask, analysis)
        return AudioEncoding(memory, frame_mask, embedding, clap_embedding)

    # ---- training --------------------------------------------------------------------------------

    def collate(self, items: list) -> dict[str, torch.Tensor]:
        audio = self.clap.audio_batch([item.features for item in items])
        limit = self.config.max_positions - 1  # BOS takes one position
        captions = [ids[:limit] for ids in self.encode_captions([item.caption for item in items])]
        input_ids, targets = teacher_forcing(captions, BOS, EOS, PAD)
        first = {}
        groups = [first.setdefault(item.caption, row) for row, item in enumerate(items)]
        return {
            "frames": audio["frames"],
            "frame_mask": audio["mask"],
            "pooled": audio["pooled"],
            "input_ids": input_ids,
            "targets": targets,
            "caption_lengths": torch.tensor([len(c) for c in captions]),
            "caption_group": torch.tensor(groups),
            **self._reference_embeddings([item.caption for item in items]),
            **self.training_analysis(items),
        }

    def train_collate(self, items: list) -> dict[str, torch.Tensor]:
        """``collate`` with the pitch-shift augmentation (training batches only; validation is unshifted).

        Each row draws a shift from -n..n: its pitch-class frame blocks rotate by it and its caption's
        key names move by it, so audio and caption still agree (and L_C / L_S compare with the
        embedding of the transposed caption).
        """
        limit = self.config.pitch_shift_semitones if self.config.pitch_class_blocks else 0
        if not limit:
            return self.collate(items)
        semitones = torch.randint(-limit, limit + 1, (len(items),))
        shifted = [
            replace(item, caption=transpose_key_names(item.caption, int(n)))
            for item, n in zip(items, semitones, strict=True)
        ]
        batch = self.collate(shifted)
        batch["frames"] = pitch_shift_frames(batch["frames"], semitones, self.config.pitch_class_blocks)
        return batch

    def _reference_embeddings(self, captions: list[str]) -> dict[str, torch.Tensor]:
        """{"text_embedding": E_T [B, E]} of the frozen CLAP text tower (what L_C and L_S compare with).

        The tower is frozen, so each distinct caption is embedded once and remembered: later epochs
        only look it up. Empty when neither alignment term is on (M1, M2).
        """
        if not (self.config.contrastive_weight or self.config.semantic_weight):
            return {}
        missing = sorted({c for c in captions if c not in self._reference_cache})
        if missing:
            for caption, embedding in zip(missing, self.clap.embed_text(missing), strict=True):
                self._reference_cache[caption] = torch.from_numpy(embedding)
        return {"text_embedding": torch.stack([self._reference_cache[c] for c in captions])}

    def semantic_alignment_loss(
        self,
        logits: torch.Tensor,
        caption_lengths: torch.Tensor,
        reference: torch.Tensor,
        targets: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mean over sampled steps t of 1 - cos(f_t(soft prefix y_hat_1:t), f_t(y)); see the module doc.

        ``targets`` (the caption's token ids) is needed only for ``semantic_reference="prefix"``.
        """
        n_items, steps = logits.shape[0], self.config.semantic_steps
        generator = None if self.training else torch.Generator().manual_seed(self.config.seed)
        word_embeddings = self.clap.text_input_embeddings.weight
        vocabulary_embeddings = word_embeddings.index_select(0, self.minilm_ids)  # [V, text width]
        expected = logits.float().softmax(dim=-1) @ vocabulary_embeddings  # [B, L, text width]

        chosen = torch.arange(n_items)
        if 0 < self.config.semantic_rows < n_items:
            chosen = torch.randperm(n_items, generator=generator)[: self.config.semantic_rows].sort().values
        draws = torch.rand(len(chosen), steps, generator=generator)
        lengths_of_chosen = caption_lengths[chosen][:, None]
        prefix_lengths = (1 + (draws * lengths_of_chosen).long()).clamp(max=lengths_of_chosen)
        prefix_lengths = prefix_lengths.clamp(min=1).reshape(-1)  # [chosen * steps]
        rows = chosen.repeat_interleave(steps)
        prefix_embedding = self._prefix_text_embedding(expected[rows], prefix_lengths)
        if self.config.semantic_reference == "prefix":
            if targets is None:
                raise ValueError("semantic_reference='prefix' needs the caption's token ids")
            with torch.no_grad():  # the reference's own prefix, through the same frozen tower
                real_tokens = word_embeddings[self.minilm_ids[targets[rows].clamp(min=0)]]
                target_embedding = self._prefix_text_embedding(real_tokens, prefix_lengths)
        else:
            target_embedding = reference[rows]
        cosine = (prefix_embedding * target_embedding).sum(-1)
        return (1.0 - cosine).mean()

    def _prefix_text_embedding(
        self, token_embeddings: torch.Tensor, prefix_lengths: torch.Tensor
    ) -> torch.Tensor:
        """The CLAP text embedding of ``[CLS] token_embeddings[:t] [SEP]`` for each row's length t."""
        word_embeddings = self.clap.text_input_embeddings.weight
        n_positions = int(prefix_lengths.max()) + 2  # [CLS] prefix [SEP]
        positions = torch.arange(n_positions)[None, :]
        source_positions = (positions[0] - 1).clamp(0, token_embeddings.shape[1] - 1)
        body = token_embeddings[:, source_positions]  # [R, P, text width]
        cls, sep, pad = word_embeddings[self.minilm_ids[[BOS, EOS, PAD]]]
        lengths = prefix_lengths[:, None]
        inputs = torch.where(
            ((positions >= 1) & (positions <= lengths))[..., None],
            body,
            torch.where(
                (positions == lengths + 1)[..., None], sep, torch.where((positions == 0)[..., None], cls, pad)
            ),
        )
        mask = (positions <= lengths + 1).long()
        return self.clap.text_embedding_from_inputs_embeds(inputs, mask)

    def training_loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        audio = self.encode_audio(
            batch["frames"], batch["frame_mask"], batch["pooled"], batch.get("analysis")
        )
        memory_keys, memory_values = self.decoder.memory_cache(audio.memory)
        logits = self.decoder(batch["input_ids"], memory_keys, memory_values, audio.memory_mask).logits
        optimised_nll, nll = self.caption_nll(logits, batch["targets"], IGNORE)
        losses = {"nll": nll}
        weighted = {"nll": optimised_nll}
        total = optimised_nll
        reference = batch.get("text_embedding")
        if self.config.contrastive_weight:
            contrastive = symmetric_info_nce(
                audio.embedding, reference, self.config.contrastive_temperature, batch["caption_group"]
            )
            losses["contrastive"] = contrastive
            weighted["contrastive"] = self.config.contrastive_weight * contrastive
            total = total + weighted["contrastive"]
        if self.config.semantic_weight:
            # logits[:, :n] predict the caption's tokens; the last real position predicts EOS
            semantic = self.semantic_alignment_loss(
                logits, batch["caption_lengths"], reference, batch["targets"]
            )
            losses["semantic"] = semantic
            weighted["semantic"] = self.config.semantic_weight * semantic
            total = total + weighted["semantic"]
        if self.training and torch.is_grad_enabled() and self.config.gradient_probe_every:
            self._training_batches += 1
            if self._training_batches % self.config.gradient_probe_every == 0:
                losses |= self.gradient_probe(weighted)
        return {"loss": total, **{name: value.detach() for name, value in losses.items()}}

    def gradient_probe(self, weighted: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """How hard each weighted loss term pulls the trainable parameters, and whether L_C and L_S pull the
        same way as L_NLL: ``grad_norm_<term>`` and ``grad_cos_<term>_nll`` (Adam follows the direction of the
        summed gradient, so a term whose gradient is larger and not aligned with L_NLL's steers the decoder
        away from the captions). One extra backward pass per term on the batches it probes."""
        parameters = [p for p in self.parameters() if p.requires_grad]
        flat = {}
        for name, term in weighted.items():
            gradients = torch.autograd.grad(term, parameters, retain_graph=True, allow_unused=True)
            flat[name] = torch.cat(
                [
                    (g if g is not None else torch.zeros_like(p)).reshape(-1)
                    for g, p in zip(gradients, parameters)
                ]
            )
        probe = {f"grad_norm_{name}": vector.norm() for name, vector in flat.items()}
        for name, vector in flat.items():
            if name != "nll":
                probe[f"grad_cos_{name}_nll"] = F.cosine_similarity(vector, flat["nll"], dim=0)
        return probe

    # ---- captioning ------------------------------------------------------------------------------

    def decode_step(self, last_tokens: torch.Tensor, state: dict):
        """One cached decoder step for :func:`musiccap.decoding.search`."""
        return self.decoder.cached_step(last_tokens, state, NEVER_GENERATED)

    def encode_clips(self, clips: list[Clip], features: list) -> AudioEncoding:
        inputs = self.clap.audio_batch(features)
        analysis = self.captioning_analysis(clips)
        return self.encode_audio(inputs["frames"], inputs["mask"], inputs["pooled"], analysis)

    def start_search(self, audio: AudioEncoding, expand: torch.Tensor) -> SearchStart:
        state = self.decoder.search_state(audio.memory, audio.memory_mask, expand)
        return SearchStart(self.decode_step, state, BOS, EOS)

    def explain(self, result, row: int, hypothesis, audio: AudioEncoding, features: list) -> None:
        """Cross-attention over the CLAP's frame tokens: mean over layers and heads, each layer, each head.
        With ``musical_frames`` the attention to a frame's CLAP token and to its musical columns is summed;
        the analysis token (``analysis_conditioning``) has no time and is left out of the heatmap."""
        n_memory = audio.memory.shape[1]
        n_timed = n_memory - int(self.config.analysis_conditioning)
        per_time = n_timed // 2 if self.config.musical_frames else n_timed
        n_frames = int(audio.memory_mask[row, :per_time].sum())
        shape = (self.config.n_layers, self.config.n_heads, n_memory)
        if hypothesis.attention is not None:
            weights = hypothesis.attention.reshape(-1, *shape)
            if self.config.musical_frames:
                weights = weights[..., :per_time] + weights[..., per_time:n_timed]
            weights = weights[..., :n_frames]
            if self.config.analysis_conditioning:  # the share the analysis token took, spread back over time
                weights = weights / np.maximum(weights.sum(-1, keepdims=True), 1e-9)
        else:
            weights = np.zeros((0, *shape[:2], n_frames), dtype=np.float32)
        result.attention = weights.mean(axis=(1, 2)).astype(np.float32)
        result.attention_times = self.clap.token_times(features[row])[:n_frames]
        result.attention_views = layer_views(weights, per_head=True, renormalise=False)
        result.audio_embedding = audio.clap_embedding[row].numpy()


def pruned_vocabulary(tokenizer, captions: list[str]) -> list[int]:
    """Text-tower ids of pad, unk, cls and sep, then of every token the captions use (sorted)."""
    special = tokenizer.convert_tokens_to_ids([getattr(tokenizer, role) for role in SPECIAL_TOKEN_ROLES])
    used = set()
    for ids in tokenizer(captions, add_special_tokens=False)["input_ids"]:
        used.update(ids)
    return list(special) + sorted(used - set(special))
