"""BLAP (Lanzendörfer et al., NeurIPS-W 2024): CLAP audio tokens -> Q-Former -> soft prompt -> frozen T5.

BLIP-2 carried over to music. The pieces, and what the embedded (and the full) profile uses for each:

* **Audio encoder**: the frame tokens of a CLAP's audio tower (``audio_tokens``), loaded by
  ``musiccap.encoders.clap_loader.load_clap``: the embedded CLAP over ``AudioFeatures.frames``, or in
  the full profile LAION CLAP HTSAT over log-mels (``HtsatClap``; HTS-AT CLAP, as the paper). Frozen
  in both stages and kept out of this module's state dict: it is reloaded from ``clap_path`` with a
  hash check. The paper fine-tunes its CLAP in stage 1 because LAION CLAP was trained on general
  audio; the embedded CLAP was trained on this corpus already, so that reason does not apply and
  freezing it saves a third of a step. (The full profile keeps its music CLAP frozen too: stage 1
  does not fine-tune HTSAT as the paper's does.)
* **Q-Former** (``musiccap/models/qformer.py``): ``n_queries`` learned queries and a text path
  sharing BERT-style layers (self-attention over [queries; text], cross-attention from the queries only to the audio tokens,
  a feed-forward block; pre-LayerNorm, which trains stably from a random start). The paper starts
  from BERT-base (cross-attention random); here every part starts at random: MiniLM is 384 wide
  with 12 heads and a 30k WordPiece vocabulary, so reusing its layers would force a 384-wide
  Q-Former (≈2.3× the cost of 256 per layer) and a text path whose vocabulary differs from the
  LM's, on a budget of ≤ 8 CPU-minutes per stage. The text path embeds the frozen LM's caption
  tokenizer with its own (trained) table.
* **Frozen LM**: a T5 encoder-decoder (``T5ForConditionalGeneration``) never updated here: in the
  embedded profile a small T5 pre-trained on caption text by ``python -m train.blap_lm``; in the full
  profile Flan-T5 (``google/flan-t5-base``; Flan-T5-xl in the paper), a folder or a Hub id fetched
  with ``huggingface_hub``. Either comes with its own tokenizer (``tokenizer.json``), which the
  Q-Former's text path shares. The checkpoint references the LM (``lm_path``: a folder written
  relative to the BLAP folder, or the Hub id) and its fingerprint (config, weights, tokenizer); a
  changed LM is refused at load.
* **Soft prompt**: Q-Former query outputs -> linear -> ``n_queries`` vectors placed before the
  embedded instruction "Generate an objective music description." in the LM encoder input.

Training (``model.stage``, two runs of the shared trainer; ``model.init_from`` starts stage 2 from
a stage-1 checkpoint, and without it stage 2 starts from scratch: the paper-style ablation):

* stage 1, representation (BLIP-2 §3.1), three losses summed, each with its own self-attention mask:
  audio–text contrastive (ATC: each query output vs the Q-Former text path's first token, best
  query wins, symmetric InfoNCE with a learnable temperature; chosen over the CLAP text embedding
  because that is what BLIP-2 does and it trains the Q-Former's text path, which ATM and the
  stage-1 LM loss also need); audio–text matching (ATM: binary head over the mean query output of
  a bidirectional pass, positives plus one hard negative text per clip and one hard negative clip
  per text, sampled in proportion to the contrastive similarity); and query-conditioned captioning
  (LM: causal text attending to the queries, output layer tied to the text embeddings). Identical
  captions in a batch are never each other's negatives (the synthetic corpus repeats captions).
* stage 2, generation (§3.2): the LM loss of the caption through the frozen T5; only the Q-Former
  layers, the queries and the prompt projection train.

Heatmap: the attention of generated token t to audio frame τ is
``Σ_q P(t, q) · A(q, τ)``, where ``A`` is the Q-Former cross-attention of query q over the frames
(mean over layers and heads; rows sum to 1) and ``P`` is the T5 decoder's cross-attention from t
to the soft-prompt positions (mean over layers and heads), renormalised over those positions
(the share t gives the instruction tokens has no time and is dropped). A product of row-stochastic
matrices is row-stochastic, so every row sums to 1. ``attention_views`` hold each Q-Former layer
(with the decoder mean) and each decoder layer (with the Q-Former mean).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from tokenizers import Tokenizer
from torch import nn
from transformers import DynamicCache, EncoderDecoderCache, T5ForConditionalGeneration
from transformers.modeling_outputs import BaseModelOutput

from musiccap.checkpoint import (
    WEIGHTS_NAME,
    checkpoint_hash,
    config_from_dict,
    read_config,
    require_hash,
)
from musiccap.conditioning import AnalysisToken
from musiccap.decoding import DecodingConfig
from musiccap.encoders.caption_lm import (
    lm_fingerprint,
    lm_folder,
    load_lm,
    special_ids,
)
from musiccap.encoders.clap_loader import clap_folder, load_clap
from musiccap.hub import portable_path, resolve_path
from musiccap.models.base import Clip, NeuralCaptioner, SearchStart, register
from musiccap.models.blocks import rows_to_one
from musiccap.models.qformer import QFormer, QFormerOutput

INSTRUCTION = "Generate an objective music description."


@dataclass
class BLAPConfig:
    stage: int = 2  # 1: representation (ATC + ATM + LM in the Q-Former); 2: generation through the frozen LM
    init_from: str = ""  # stage 2: a stage-1 checkpoint folder to start from ("" = stage 2 only)
    clap_path: str = "clap"  # a registry name, a CLAP folder or a LAION CLAP Hub id
    clap_hash: str = ""  # checkpoint_hash of that CLAP, set at build: a retrained CLAP is refused at load
    audio_dim: int = 0  # CLAP frame-token width, set at build
    lm_path: str = "blap_lm"  # a registry name, a folder (saved relative, e.g. ../blap_lm) or a Hub id
    lm_hash: str = ""  # lm_fingerprint of that folder, set at build
    lm_width: int = 0  # T5 d_model, set at build
    vocab_size: int = 0  # LM tokenizer size, set at build
    n_queries: int = 8
    width: int = 256
    n_layers: int = 2
    n_heads: int = 4
    ff_dim: int = 1024
    dropout: float = 0.1
    embed_dim: int = 128  # stage-1 contrastive space
    init_temperature: float = 0.07
    max_caption_tokens: int = 80
    max_match_tokens: int = 32  # caption tokens the ATC/ATM text path reads (BLIP-2 truncates to 32 too)
    max_text_positions: int = 96  # learned positions of the Q-Former text path
    instruction: str = INSTRUCTION
    # > 1: a variant (never a paper's row) weighting attribute words in the NLL (base.caption_nll)
    attribute_word_weight: float = 1.0
    # a variant (issue 30, never a paper's row): stage 2's soft prompt gets the clip's analysis
    # (musiccap/conditioning.py) as one more position, after the queries
    analysis_conditioning: bool = False
    seed: int = 0

    def __post_init__(self):
        if self.stage not in (1, 2):
            raise ValueError(f"stage must be 1 or 2, not {self.stage!r}")
        if self.init_from and self.stage != 2:
            raise ValueError("init_from starts stage 2 from a stage-1 checkpoint")
        if self.width % self.n_heads:
            raise ValueError("width must be a multiple of n_heads")
        if self.max_caption_tokens + 1 > self.max_text_positions:
            raise ValueError("max_text_positions must hold the caption and its first token")


@dataclass
class BLAPEncoding:
    """What captioning reads from the audio side of a batch."""

    encoded: torch.Tensor  # [B, P, d_model] the frozen LM encoder's output over the soft prompt
    audio_mask: torch.Tensor  # [B, T] True = real CLAP frame token
    qformer_attention: np.ndarray  # [B, layers, n_queries, T] Q-Former cross-attention, mean over heads
    clap_embeddings: np.ndarray  # [B, E] the CLAP's clip embeddings (shown in the app)


# ---- the captioner ------------------------------------------------------------------------------


@register
class BLAPCaptioner(NeuralCaptioner):
    name = "blap"
    paper = "BLAP: Bootstrapping Language-Audio Pre-training for Music Captioning (Lanzendörfer et al., 2024)"
    config_class = BLAPConfig
    component_fields = ("clap_path", "lm_path")
    default_decoding = DecodingConfig(
        num_beams=5, max_new_tokens=60, min_new_tokens=5, no_repeat_ngram_size=3
    )
    # Parameters that train in each stage (the rest stay as they are: stage-1 heads in stage 2, the
    # prompt projection in stage 1).
    STAGE_1 = ("qformer.", "audio_proj.", "text_proj.", "itm_head.", "lm_bias", "logit_scale")
    STAGE_2 = (
        "qformer.queries",
        "qformer.embed_norm.",
        "qformer.layers.",
        "qformer.final_norm.",
        "prompt_proj.",
        "analysis_token.",
    )

    def __init__(self, config: BLAPConfig, *, tokenizer: Tokenizer, lm: T5ForConditionalGeneration, clap):
        super().__init__(config)
        self.tokenizer = tokenizer
        self.pad_id, self.eos_id, self.cls_id, self.dec_id = special_ids(tokenizer)
        # Frozen and saved in their own folders: outside this module's parameters and state dict.
        self._frozen = (clap.eval().requires_grad_(False), lm.eval().requires_grad_(False))
        self.qformer = QFormer(config)
        self.audio_proj = nn.Linear(config.width, config.embed_dim)
        self.text_proj = nn.Linear(config.width, config.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / config.init_temperature)))
        self.itm_head = nn.Linear(config.width, 2)
        self.lm_bias = nn.Parameter(torch.zeros(config.vocab_size))  # stage-1 LM head: tied to text_embed
        self.prompt_proj = nn.Linear(config.width, config.lm_width)
        if config.analysis_conditioning:
            self.analysis_token = AnalysisToken(config.lm_width)
        # add_special_tokens=False: Flan-T5's tokenizer would append </s> itself
        instruction = tokenizer.encode(config.instruction, add_special_tokens=False).ids
        self.instruction_ids = torch.tensor(instruction + [self.eos_id])
        trained = self.STAGE_1 if config.stage == 1 else self.STAGE_2
        for name, parameter in self.named_parameters():
            parameter.requires_grad = name.startswith(trained)
        self._audio_cache: dict[str, torch.Tensor] = {}  # frozen CLAP tokens per training clip id

    @property
    def clap(self):
        return self._frozen[0]

    @property
    def lm(self) -> T5ForConditionalGeneration:
        return self._frozen[1]

    # ---- building, saving, loading ---------------------------------------------------------------

    @classmethod
    def build(cls, config: dict, train_items: list, context) -> BLAPCaptioner:
        settings = config_from_dict(BLAPConfig, {"clap_path": context.clap_path, **config})
        clap_dir, lm_dir = clap_folder(settings.clap_path), lm_folder(settings.lm_path)
        clap = load_clap(clap_dir)
        lm, tokenizer = load_lm(lm_dir)
        settings = replace(
            settings,
            clap_path=portable_path(settings.clap_path),
            clap_hash=checkpoint_hash(clap_dir),
            audio_dim=int(clap.audio_dim),
            lm_path=portable_path(settings.lm_path),
            lm_hash=lm_fingerprint(lm_dir),
            lm_width=int(lm.config.d_model),
            vocab_size=tokenizer.get_vocab_size(),
        )
        torch.manual_seed(settings.seed)
        model = cls(settings, tokenizer=tokenizer, lm=lm, clap=clap)
        if settings.init_from:
            model.load_stage_one(resolve_path(settings.init_from))
        return model

    def load_stage_one(self, path: Path) -> None:
        """Start stage 2 from a stage-1 checkpoint trained on the same CLAP and LM (paper §4.3)."""
        stage_one = read_config(path)
        settings = stage_one.get("config", {})
        if stage_one.get("architecture") != self.name or settings.get("stage") != 1:
            raise ValueError(f"{path} is not a BLAP stage-1 checkpoint")
        for key in (
            "clap_hash",
            "lm_hash",
            "n_queries",
            "width",
            "n_layers",
            "n_heads",
            "ff_dim",
            "vocab_size",
        ):
            if settings.get(key) != getattr(self.config, key):
                raise ValueError(
                    f"{path}: the stage-1 {key} is {settings.get(key)!r}, this run has {getattr(self.config, key)!r}"
                )
        missing, unexpected = self.load_state_dict(load_file(str(path / WEIGHTS_NAME)), strict=False)
        # the analysis token exists in stage 2 only: it trains there
        missing = [key for key in missing if not key.startswith("analysis_token.")]
        if missing or unexpected:
            raise ValueError(
                f"{path}: stage-1 weights do not fit (missing {missing[:5]}, unexpected {unexpected[:5]})"
            )

    @classmethod
    def load_extra(cls, path: Path) -> dict[str, Any]:
        config = read_config(path)["config"]
        clap_dir = clap_folder(config["clap_path"], path)
        lm_dir = lm_folder(config["lm_path"], path)
        require_hash(
            clap_dir,
            config.get("clap_hash", ""),
            path,
            "CLAP",
            "retrain BLAP (its Q-Former reads that CLAP's tokens)",
        )
        remedy = "retrain BLAP (its soft prompt is tuned to that LM)"
        require_hash(lm_dir, config["lm_hash"], path, "frozen LM", remedy, found=lm_fingerprint(lm_dir))
        lm, tokenizer = load_lm(lm_dir)
        return {"tokenizer": tokenizer, "lm": lm, "clap": load_clap(clap_dir)}

    def parameter_counts(self) -> dict[str, int]:
        """Trainable (this stage) and frozen parameters, the frozen CLAP and LM included."""
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        own_frozen = sum(p.numel() for p in self.parameters() if not p.requires_grad)
        clap = sum(p.numel() for p in self.clap.audio.parameters())
        lm = sum(p.numel() for p in self.lm.parameters())
        return {
            "trainable": trainable,
            "frozen_other_stage": own_frozen,
            "frozen_clap_audio": clap,
            "frozen_lm": lm,
        }

    # ---- batches ---------------------------------------------------------------------------------

    @torch.no_grad()
    def audio_tokens(self, features_list: list) -> tuple[torch.Tensor, torch.Tensor]:
        """Frozen CLAP frame tokens [B, T, audio_dim] and their mask [B, T] for a list of the CLAP's features
        (the CLAP ignores ``pooled`` when it has no pooled input)."""
        batch = self.clap.audio_batch(features_list)
        tokens, _ = self.clap.audio_tokens(batch["frames"], batch["mask"], batch["pooled"])
        return tokens, batch["mask"]

    def _cached_audio(self, items: list) -> tuple[torch.Tensor, torch.Tensor]:
        missing = [item for item in items if item.id not in self._audio_cache]
        if missing:
            tokens, mask = self.audio_tokens([item.features for item in missing])
            for row, item in enumerate(missing):
                self._audio_cache[item.id] = tokens[row, : int(mask[row].sum())].clone()
        rows = [self._audio_cache[item.id] for item in items]
        longest = max(row.shape[0] for row in rows)
        tokens = torch.zeros(len(rows), longest, rows[0].shape[1])
        mask = torch.zeros(len(rows), longest, dtype=torch.bool)
        for index, row in enumerate(rows):
            tokens[index, : row.shape[0]] = row
            mask[index, : row.shape[0]] = True
        return tokens, mask

    def _caption_ids(self, caption: str) -> list[int]:
        return self.tokenizer.encode(caption, add_special_tokens=False).ids[: self.config.max_caption_tokens]

    @staticmethod
    def _pad(rows: list[list[int]], value: int) -> torch.Tensor:
        out = torch.full((len(rows), max(map(len, rows))), value, dtype=torch.long)
        for index, row in enumerate(rows):
            out[index, : len(row)] = torch.tensor(row)
        return out

    def collate(self, items: list) -> dict[str, torch.Tensor]:
        audio, audio_mask = self._cached_audio(items)
        captions = [self._caption_ids(item.caption) for item in items]
        batch = {"audio": audio, "audio_mask": audio_mask}
        labels = [ids + [self.eos_id] for ids in captions]
        if self.config.stage == 1:
            batch["text_ids"] = self._pad(
                [[self.cls_id] + ids[: self.config.max_match_tokens] for ids in captions], self.pad_id
            )
            batch["decoder_ids"] = self._pad([[self.dec_id] + ids for ids in captions], self.pad_id)
            batch["text_mask"] = (batch["text_ids"] != self.pad_id).long()
            first: dict[str, int] = {}
            batch["caption_group"] = torch.tensor(
                [first.setdefault(item.caption, i) for i, item in enumerate(items)]
            )
        batch["labels"] = self._pad(labels, -100)
        if self.config.stage == 2:
            batch |= self.training_analysis(items)
        return batch

    # ---- training --------------------------------------------------------------------------------

    def training_loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.config.stage == 1:
            return self.stage_one_loss(batch)
        logits = self.lm(
            inputs_embeds=self.encoder_inputs(
                self.query_outputs(batch["audio"], batch["audio_mask"]), batch.get("analysis")
            ),
            labels=batch["labels"],
        ).logits
        optimised_nll, nll = self.caption_nll(logits, batch["labels"], -100)
        return {"loss": optimised_nll, "nll": nll.detach()}

    def caption_token_ids(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def query_outputs(self, audio: torch.Tensor, audio_mask: torch.Tensor, need_weights: bool = False):
        return self.qformer(audio, audio_mask, mode="unimodal", need_weights=need_weights)

    def encoder_inputs(
        self, query_output: QFormerOutput, analysis: torch.Tensor | None = None
    ) -> torch.Tensor:
        """[soft prompt; instruction; </s>] embeddings for the T5 encoder: [B, n_queries + K, lm_width]
        (with ``analysis_conditioning``, the analysis token after the queries: n_queries + 1 + K)."""
        prompt = self.prompt_proj(query_output.queries)
        if self.config.analysis_conditioning:
            prompt = torch.cat([prompt, self.analysis_token(analysis)], dim=1)
        instruction = self.lm.get_input_embeddings()(self.instruction_ids)
        return torch.cat([prompt, instruction.expand(prompt.shape[0], -1, -1)], dim=1)

    def contrastive_logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """ATC logits [clips, texts]: every query against the text's first token, the best-matching query
        scoring the pair; another clip with the same caption is -inf (neither a positive nor a negative)."""
        queries = F.normalize(
            self.audio_proj(self.query_outputs(batch["audio"], batch["audio_mask"]).queries), dim=-1
        )
        text = self.qformer(None, None, batch["text_ids"], batch["text_mask"], mode="unimodal").text[:, 0]
        text = F.normalize(self.text_proj(text), dim=-1)
        similarity = torch.einsum("aqe,te->atq", queries, text).max(dim=-1).values
        n = similarity.shape[0]
        groups = batch["caption_group"]
        same_caption = (groups[:, None] == groups[None, :]) & ~torch.eye(n, dtype=torch.bool)
        return (self.logit_scale.clamp(max=math.log(100.0)).exp() * similarity).masked_fill(
            same_caption, float("-inf")
        )

    @staticmethod
    @torch.no_grad()
    def hard_negatives(
        logits: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[dict[int, int], dict[int, int]]:
        """BLIP-2's hard negatives: {clip: another clip's text} and {text: another clip}, each drawn in
        proportion to the contrastive similarity (a row with no valid negative is left out); from
        ``generator``, else torch's global one (training)."""
        candidates = logits.detach().masked_fill(torch.eye(len(logits), dtype=torch.bool), float("-inf"))
        drawn = []
        for scores in (candidates, candidates.T):
            valid = torch.isfinite(scores).any(dim=1)
            picked = (
                torch.multinomial(scores[valid].softmax(dim=1), 1, generator=generator).squeeze(1).tolist()
                if valid.any()
                else []
            )
            drawn.append(dict(zip(valid.nonzero().squeeze(1).tolist(), picked, strict=True)))
        return drawn[0], drawn[1]

    def matching_logits(self, batch: dict[str, torch.Tensor], audio_rows: list[int], text_rows: list[int]):
        """ATM logits [pairs, 2] (index 1 = match) for the pairs (clip audio_rows[i], text text_rows[i])."""
        joint = self.qformer(
            batch["audio"][audio_rows],
            batch["audio_mask"][audio_rows],
            batch["text_ids"][text_rows],
            batch["text_mask"][text_rows],
            mode="bidirectional",
        )
        return self.itm_head(joint.queries).mean(dim=1)

    def stage_one_loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        n = batch["audio"].shape[0]
        logits = self.contrastive_logits(batch)
        targets = torch.arange(n)
        atc = 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))

        # ATM: the positives + a hard negative text per clip and a hard negative clip per text.
        text_for_clip, clip_for_text = self.hard_negatives(logits)
        audio_rows = list(range(n)) + list(text_for_clip) + list(clip_for_text.values())
        text_rows = list(range(n)) + list(text_for_clip.values()) + list(clip_for_text)
        labels = torch.tensor([1] * n + [0] * (len(text_for_clip) + len(clip_for_text)))
        matching = self.matching_logits(batch, audio_rows, text_rows)
        atm = F.cross_entropy(matching, labels)

        # LM: the caption decoded by the text path, attending to the queries (which see only the audio).
        decoder_mask = torch.ones_like(batch["decoder_ids"])
        decoder_mask[:, 1:] = batch["labels"][:, :-1] != -100
        hidden = self.qformer(
            batch["audio"], batch["audio_mask"], batch["decoder_ids"], decoder_mask, mode="causal"
        ).text
        token_logits = F.linear(hidden, self.qformer.text_embed.weight, self.lm_bias)
        lm = F.cross_entropy(token_logits.reshape(-1, token_logits.shape[-1]), batch["labels"].reshape(-1))
        return {"loss": atc + atm + lm, "atc": atc.detach(), "atm": atm.detach(), "lm": lm.detach()}

    # ---- captioning ------------------------------------------------------------------------------

    def encode_clips(self, clips: list[Clip], features: list) -> BLAPEncoding:
        """CLAP frame tokens -> Q-Former queries -> soft prompt -> the frozen LM's encoder."""
        audio, audio_mask = self.audio_tokens(features)
        query_output = self.query_outputs(audio, audio_mask, need_weights=True)
        analysis = self.captioning_analysis(clips)
        encoded = self.lm.get_encoder()(
            inputs_embeds=self.encoder_inputs(query_output, analysis)
        ).last_hidden_state
        # Q-Former cross-attention per layer: [B, layers, n_queries, T], mean over heads.
        qformer_attention = torch.stack(query_output.cross_attention, dim=1).mean(dim=2).numpy()
        return BLAPEncoding(encoded, audio_mask, qformer_attention, self.clap.embed_audio(features))

    def start_search(self, encoding: BLAPEncoding, expand: torch.Tensor) -> SearchStart:
        state = {"encoded": encoding.encoded.index_select(0, expand), "self": (), "cross": ()}
        return SearchStart(self._decoder_step, state, self.lm.config.decoder_start_token_id, self.eos_id)

    def detokenize(self, token_ids: list[int]) -> tuple[str, list[str]]:
        tokens = [self.tokenizer.decode([token]).strip() for token in token_ids]
        return self.tokenizer.decode(token_ids).strip(), tokens

    def explain(self, result, row: int, hypothesis, encoding: BLAPEncoding, features: list) -> None:
        """Tokens x audio time through the soft prompt: the LM's attention to the queries, then theirs."""
        n_frames = int(encoding.audio_mask[row].sum())  # real frames first (padding, or HTSAT past the audio)
        per_query = encoding.qformer_attention[row, :, :, :n_frames]
        per_query = per_query / np.maximum(per_query.sum(-1, keepdims=True), 1e-12)
        n_layers, n_heads = self.lm.config.num_decoder_layers, self.lm.config.num_heads
        decoder = (
            hypothesis.attention.reshape(len(hypothesis.token_ids), n_layers, n_heads, -1)
            if hypothesis.attention is not None
            else np.zeros((0, n_layers, n_heads, encoding.encoded.shape[1]), dtype=np.float32)
        )
        result.attention, result.attention_views = combine_attention(
            decoder.mean(axis=2), per_query, self.config.n_queries
        )
        result.attention_times = self.clap.token_times(features[row])[:n_frames]
        result.audio_embedding = encoding.clap_embeddings[row]

    def _decoder_step(self, last_tokens: torch.Tensor, state: dict):
        """One T5 decoder step for every row: self-attention cache grows, cross-attention keys are reused."""
        cache = EncoderDecoderCache(
            DynamicCache(ddp_cache_data=state["self"]) if state["self"] else DynamicCache(),
            DynamicCache(ddp_cache_data=state["cross"]) if state["cross"] else DynamicCache(),
        )
        out = self.lm(
            encoder_outputs=BaseModelOutput(last_hidden_state=state["encoded"]),
            decoder_input_ids=last_tokens[:, None],
            past_key_values=cache,
            use_cache=True,
            output_attentions=True,
        )
        layers = out.past_key_values
        new_state = {
            "encoded": state["encoded"],
            "self": tuple((layer.keys, layer.values) for layer in layers.self_attention_cache.layers),
            "cross": tuple((layer.keys, layer.values) for layer in layers.cross_attention_cache.layers),
        }
        # [layers, N, heads, 1, S] -> [N, layers * heads * S]
        attention = torch.stack(out.cross_attentions)[:, :, :, 0].permute(1, 0, 2, 3)
        return out.logits[:, -1], new_state, attention.reshape(len(last_tokens), -1)


def combine_attention(
    decoder: np.ndarray, qformer: np.ndarray, n_queries: int
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Tokens × audio time from decoder [n_tokens, dec_layers, S] and Q-Former [qf_layers, n_queries, T].

    Each decoder row is cut to the soft-prompt positions and renormalised (-> P), each Q-Former row sums
    to 1 (-> A); the heatmap is P @ A (mean over layers on both sides), rows summing to 1. Views: each
    Q-Former layer with the decoder mean, each decoder layer with the Q-Former mean.
    """
    prompt = decoder[..., :n_queries]
    prompt = prompt / np.maximum(prompt.sum(-1, keepdims=True), 1e-12)  # [n_tokens, dec_layers, n_queries]
    decoder_mean = rows_to_one(prompt.mean(axis=1))
    qformer_mean = rows_to_one(qformer.mean(axis=0))
    views = {}
    for layer in range(qformer.shape[0]):
        views[f"Q-Former layer {layer + 1} (LM decoder mean)"] = rows_to_one(decoder_mean @ qformer[layer])
    for layer in range(prompt.shape[1]):
        views[f"LM decoder layer {layer + 1} (Q-Former mean)"] = rows_to_one(prompt[:, layer] @ qformer_mean)
    return rows_to_one(decoder_mean @ qformer_mean), views
