"""RGMC (Srivatsan et al., IJCAI 2024): retrieval-guided music captioning with a multimodal prefix.

The caption of a clip x is decoded by a causal LM from the prefix ``g(f(x)) ⊕ ỹ``:

* ``f(x)``: the CLAP audio embedding (the embedded CLAP here, frozen by default as in the
  embedded profile; HTSAT-CLAP in the paper);
* ``g``: a two-layer MLP (ClipCap's mapping network) to ``n_prefix`` = 10 vectors of the LM width;
* ``ỹ``: the caption of the training clip whose audio embedding has the highest dot product with
  ``f(x)``, never the clip itself (paper §3: candidates are the training set minus the example);
* the LM: a GPT-2-architecture ``GPT2LMHeadModel``. Embedded profile: a small one (e.g. 4 × 256)
  over a byte-level BPE trained on the training captions; full profile: GPT-2 124M with its own
  tokenizer (``lm_name_or_path``). A separator token ``<|caption|>`` ends the prompt and starts the
  caption; ``<|endoftext|>`` ends it.

Training is teacher forcing with cross-entropy on the caption tokens (and EOS) only; retrieval is a
fixed observation (no gradient), recomputed at the start of an epoch only when the encoder trains.
Decoding is beam 5 without repeated trigrams, stopping at EOS, through
:func:`musiccap.decoding.search` with GPT-2's key/value cache (all beams in one batch).

Ablations are config keys: ``use_audio: false`` (text only), ``use_text: false`` (audio only), and at
evaluation time ``candidate: random | nearest | gold`` (paper Table 4).

Heatmap: every generated token attends to the 10 prefix positions and to the neighbour's tokens
(``attention_views``, per layer and averaged). The prefix is computed from one pooled embedding, so
the 10 prefix positions carry no time of their own: the time row of every token is the CLAP audio
tower's own attention-pooling weights over its frames (``EmbeddedClap.frame_weights``). The rows
are therefore the same for every token; how much a token relies on the audio rather than on the
neighbour is in the views.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, load_model, save_file, save_model
from tokenizers import Tokenizer
from transformers import GPT2Config, GPT2LMHeadModel

from musiccap.checkpoint import checkpoint_hash, config_from_dict, read_config, require_hash
from musiccap.clip import REFERENCE_CAPTION
from musiccap.conditioning import ANALYSIS_SIZE
from musiccap.decoding import DecodingConfig, SameForEveryBeam
from musiccap.encoders.gpt2_bpe import END_OF_TEXT, pretrained_tokenizer, train_caption_tokenizer
from musiccap.features import audio_features
from musiccap.hub import resolve_path
from musiccap.models.base import Clip, Neighbour, NeuralCaptioner, SearchStart, register
from musiccap.models.blocks import gpt2_cached_step, layer_views, rows_to_one
from musiccap.training import load_optimizer_state_tensors, optimizer_state_tensors

EOS = END_OF_TEXT
SEP = "<|caption|>"  # ends the prompt (audio prefix ⊕ neighbour caption); the caption follows
TOKENIZER_NAME = "tokenizer.json"
TEXT_PRETRAINING_NAME = "text_pretraining.safetensors"  # in the run's build folder
INDEX_DIR = "neighbours"
CANDIDATE_MODES = ("nearest", "random", "gold")


class PretrainingProgress:
    """RGMC's text pretraining after its last finished epoch, in a run's build folder: the LM (with the
    epochs' losses and what the pretraining was made from as metadata), the optimiser's moments and the
    shuffling generator. Safetensors only; each file is written whole and then renamed into place, and
    the two must carry the same losses to be reloaded."""

    def __init__(self, folder: Path, made_from: dict[str, str]):
        self.folder = folder
        self.made_from = made_from
        self.lm_file = folder / TEXT_PRETRAINING_NAME
        self.optimizer_file = folder / "text_pretraining_optimizer.safetensors"

    def save(self, lm, optimizer, generator: torch.Generator, losses: list[float]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        metadata = {**self.made_from, "losses": json.dumps(losses)}
        moments = optimizer_state_tensors(optimizer)
        moments["generator"] = generator.get_state()
        partial = self.optimizer_file.with_suffix(".partial")
        save_file(moments, str(partial), metadata=metadata)
        partial.replace(self.optimizer_file)
        partial = self.lm_file.with_suffix(".partial")
        save_model(lm, str(partial), metadata=metadata)  # save_model: GPT-2 ties its embeddings
        partial.replace(self.lm_file)

    def reload(self, lm, optimizer, generator: torch.Generator) -> list[float]:
        """The saved epochs' losses after loading their state, or [] when nothing matching is kept."""
        if not (self.lm_file.is_file() and self.optimizer_file.is_file()):
            return []
        with safe_open(str(self.lm_file), "pt") as file:
            metadata = file.metadata()
        with safe_open(str(self.optimizer_file), "pt") as file:
            same_epochs = file.metadata().get("losses") == metadata.get("losses")
        if not same_epochs or any(metadata.get(key) != value for key, value in self.made_from.items()):
            return []
        load_model(lm, str(self.lm_file))
        moments = load_file(str(self.optimizer_file))
        generator.set_state(moments.pop("generator"))
        load_optimizer_state_tensors(optimizer, moments, optimizer.state_dict()["param_groups"])
        return json.loads(metadata["losses"])


@dataclass
class RGMCConfig:
    clap_path: str = "clap"  # the embedded CLAP: a registry name or a folder (relative: cwd, then the repo)
    clap_hash: str = ""  # checkpoint_hash of that CLAP at build time: a retrained CLAP is refused at load
    embed_dim: int = 0  # CLAP embedding size, set at build from the CLAP
    train_encoder: bool = False  # paper: HTS-AT trains; embedded profile: CLAP frozen
    n_prefix: int = 10
    use_audio: bool = True  # false: the text-only ablation (no audio prefix)
    use_text: bool = True  # false: the audio-only ablation (no neighbour caption)
    candidate: str = "nearest"  # evaluation-time ablation: nearest | random | gold (training uses nearest)
    # What a training clip's retrieval skips: "clip" (the paper: the example itself) or "piece" (every clip
    # of the same composition: test neighbours never share the query's piece, since splits are by piece).
    training_neighbours_exclude: str = "clip"
    lm_name_or_path: str = ""  # full profile: a GPT-2 folder or hub name; empty: the small LM below
    vocab_size: int = 2048  # BPE size trained on the captions (full profile: GPT-2's + the separator)
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 256
    n_positions: int = 256
    dropout: float = 0.1
    max_caption_tokens: int = 72
    max_neighbour_tokens: int = 72
    # >0: before captioning, train the LM on caption text alone (build time), each caption written after
    # its nearest other caption in CLAP text space: the LM learns to copy from a candidate before it must
    # learn when to (pretrained GPT-2 arrives able to; a small LM from scratch does not learn it in a few
    # hundred steps: docs/RESULTS.md, RGMC gold-candidate row).
    pretrain_epochs: int = 0
    pretrain_captions_csv: str = ""  # MusicCaps CSV whose `caption` column joins the pretraining text
    # > 1: a variant (never a paper's row) weighting attribute words in the NLL (base.caption_nll)
    attribute_word_weight: float = 1.0
    # a variant (issue 30, never a paper's row): the clip's analysis (musiccap/conditioning.py) joins the
    # CLAP embedding at the prefix mapper's input, so the prefix carries it
    analysis_conditioning: bool = False
    seed: int = 0

    def __post_init__(self):
        if self.candidate not in CANDIDATE_MODES:
            raise ValueError(f"candidate must be one of {CANDIDATE_MODES}, not {self.candidate!r}")
        if not (self.use_audio or self.use_text):
            raise ValueError("RGMC needs the audio prefix, the neighbour caption or both")
        if self.training_neighbours_exclude not in ("clip", "piece"):
            raise ValueError("training_neighbours_exclude must be 'clip' or 'piece'")
        if self.analysis_conditioning and not self.use_audio:
            raise ValueError(
                "analysis_conditioning reaches the LM through the audio prefix: use_audio must be true"
            )


def musiccaps_captions(csv_path: str | Path) -> list[str]:
    import csv

    with open(csv_path, newline="") as handle:
        return [row["caption"].strip() for row in csv.DictReader(handle) if row.get("caption", "").strip()]


def audio_inputs(clap, features_list: list) -> dict[str, torch.Tensor]:
    """Padded CLAP audio-tower inputs {"frames", "frame_mask", "pooled"} for a list of AudioFeatures."""
    batch = clap.audio_batch(features_list)
    return {"frames": batch["frames"], "frame_mask": batch["mask"], "pooled": batch["pooled"]}


class PrefixMapper(torch.nn.Module):
    """g: one CLAP embedding -> ``n_prefix`` vectors of the LM width (ClipCap's two-layer MLP)."""

    def __init__(self, embed_dim: int, n_prefix: int, width: int):
        super().__init__()
        self.n_prefix, self.width = n_prefix, width
        hidden = n_prefix * width // 2
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(embed_dim, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, n_prefix * width)
        )

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.mlp(embedding).view(-1, self.n_prefix, self.width)


@dataclass
class PromptEncoding:
    """A batch's prompts, run through GPT-2 once, and what the app shows beside the captions."""

    cache: tuple[tuple[torch.Tensor, torch.Tensor], ...]  # per layer (keys, values) over the prompt
    mask: torch.Tensor  # [B, P] 1 = real prompt position (prompts are left-padded)
    frame_weights: torch.Tensor | None  # [B, T] the audio prefix's weights over frames (audio used)
    embeddings: torch.Tensor  # [B, E] CLAP audio embeddings
    neighbours: list  # the retrieved Neighbour per clip (None when the text is not used)


@register
class RGMCCaptioner(NeuralCaptioner):
    name = "rgmc"
    paper = "RGMC: Retrieval Guided Music Captioning via Multimodal Prefixes (Srivatsan et al., IJCAI 2024)"
    config_class = RGMCConfig
    component_fields = ("clap_path",)
    default_decoding = DecodingConfig(num_beams=5, no_repeat_ngram_size=3, max_new_tokens=60)

    def __init__(self, config: RGMCConfig, *, tokenizer: Tokenizer, index, clap):
        super().__init__(config)
        self.tokenizer = tokenizer
        self.eos_id = tokenizer.token_to_id(EOS)
        self.sep_id = tokenizer.token_to_id(SEP)
        self.index = index  # musiccap.retrieval.CaptionIndex over the training split
        if config.train_encoder:
            self.clap = clap
        else:  # frozen and saved in its own checkpoint: kept out of this module's state dict
            self._frozen_clap = (clap,)
            clap.eval().requires_grad_(False)
        lm_config = GPT2Config(
            vocab_size=tokenizer.get_vocab_size(),
            n_positions=config.n_positions,
            n_embd=config.n_embd,
            n_layer=config.n_layer,
            n_head=config.n_head,
            resid_pdrop=config.dropout,
            embd_pdrop=config.dropout,
            attn_pdrop=config.dropout,
            bos_token_id=self.sep_id,
            eos_token_id=self.eos_id,
        )
        lm_config._attn_implementation = "eager"  # decoding reads the attention weights
        self.lm = GPT2LMHeadModel(lm_config)
        mapper_input = config.embed_dim + (ANALYSIS_SIZE if config.analysis_conditioning else 0)
        self.mapper = PrefixMapper(mapper_input, config.n_prefix, config.n_embd) if config.use_audio else None
        # GPT-2 ties its output layer to the token embeddings; safetensors refuses shared tensors, so
        # the tied copy is left out of the state dict and comes back through the tie at load.
        self.register_state_dict_post_hook(_drop_tied_output_weight)
        self.register_load_state_dict_post_hook(_forgive_tied_output_weight)
        self._train_items: list = []
        self._piece_members: dict[str, list[str]] = {}

    # ---- building, saving, loading -------------------------------------------------------------

    @property
    def encoder(self):
        return self.clap if self.config.train_encoder else self._frozen_clap[0]

    @classmethod
    def build(cls, config: dict, train_items: list, context) -> RGMCCaptioner:
        from musiccap.encoders.embedded_clap import EmbeddedClap

        values = {"clap_path": context.clap_path, **config}
        settings = config_from_dict(RGMCConfig, values)
        clap_dir = resolve_path(settings.clap_path)
        clap = EmbeddedClap.from_pretrained(clap_dir)
        settings = replace(settings, embed_dim=int(clap.embed_dim), clap_hash=checkpoint_hash(clap_dir))
        torch.manual_seed(settings.seed)

        train_captions = [item.caption for item in train_items]
        extra_text = (
            musiccaps_captions(settings.pretrain_captions_csv) if settings.pretrain_captions_csv else []
        )
        pretrained_lm = None
        if settings.lm_name_or_path:
            tokenizer = pretrained_tokenizer(settings.lm_name_or_path, SEP)
            pretrained_lm = GPT2LMHeadModel.from_pretrained(str(resolve_path(settings.lm_name_or_path)))
            lm = pretrained_lm.config
            settings = replace(
                settings, n_layer=lm.n_layer, n_head=lm.n_head, n_embd=lm.n_embd, n_positions=lm.n_positions
            )
        else:
            tokenizer = train_caption_tokenizer(train_captions + extra_text, settings.vocab_size, SEP)
        settings = replace(settings, vocab_size=tokenizer.get_vocab_size())

        index = build_index(clap, train_items)
        model = cls(settings, tokenizer=tokenizer, index=index, clap=clap)
        if pretrained_lm is not None:
            pretrained_lm.resize_token_embeddings(tokenizer.get_vocab_size())
            model.lm.load_state_dict(pretrained_lm.state_dict())
        if settings.pretrain_epochs:
            model.pretrain_or_reload(train_captions + extra_text, settings.pretrain_epochs, context)
        model._remember_training_items(train_items)
        return model

    def save_extra(self, path: Path) -> None:
        self.tokenizer.save(str(path / TOKENIZER_NAME))
        if self.config.train_encoder and self._train_items:  # the index must match the saved encoder
            self.index = build_index(self.encoder, self._train_items)
        self.index.save(path / INDEX_DIR)

    @classmethod
    def load_extra(cls, path: Path) -> dict[str, Any]:
        from musiccap.encoders.embedded_clap import EmbeddedClap
        from musiccap.retrieval import CaptionIndex

        config = read_config(path)["config"]
        clap_dir = resolve_path(config["clap_path"], path)
        remedy = "retrain RGMC (its prefix mapper and neighbour index belong to that CLAP)"
        require_hash(clap_dir, config.get("clap_hash", ""), path, "CLAP", remedy)
        return {
            "tokenizer": Tokenizer.from_file(str(path / TOKENIZER_NAME)),
            "index": CaptionIndex.load(path / INDEX_DIR),
            "clap": EmbeddedClap.from_pretrained(clap_dir),
        }

    # ---- audio side and retrieval ----------------------------------------------------------------

    def embed(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """f(x): the CLAP audio tower's frame tokens [B, T, d] and L2-normalised embedding [B, E]."""
        clap = self.encoder
        pooled = inputs["pooled"] if clap.config.pooled_dim else None
        return clap.audio_tokens(inputs["frames"], inputs["frame_mask"], pooled)

    def nearest_neighbours(
        self, embeddings: torch.Tensor, own_ids: list[str], excluded: list[list[str]] | None = None
    ) -> list[Neighbour]:
        """The best training caption for each row, never the row's own clip (nor `excluded[row]`).

        By default only the clip itself is excluded, as in the paper (candidates = training set minus
        the example); another clip with the same caption is a fair neighbour, at training and test time.
        """
        excluded = excluded or [[] for _ in own_ids]
        hits = self.index.search_batch(
            embeddings.detach().cpu().numpy(),
            1,
            exclude_ids=[[own, *more] for own, more in zip(own_ids, excluded, strict=True)],
        )
        return [Neighbour(text=hit[0].caption, score=hit[0].score, id=hit[0].id) for hit in hits]

    def _same_piece_ids(self, item) -> list[str]:
        """Training clips of `item`'s composition, when the config keeps a clip's own piece out of its retrieval."""
        if self.config.training_neighbours_exclude != "piece":
            return []
        return self._piece_members.get(getattr(item, "piece", None), [])

    def _remember_training_items(self, train_items: list) -> None:
        self._train_items = list(train_items)
        self._piece_members = {}
        for item in self._train_items:
            self._piece_members.setdefault(getattr(item, "piece", item.id), []).append(item.id)

    def on_epoch_start(self, epoch: int, train_items: list) -> None:
        """Paper §3.2: with a training encoder, candidate embeddings are recomputed every epoch."""
        self._remember_training_items(train_items)
        if self.config.train_encoder and epoch > 0:
            self.index = build_index(self.encoder, train_items)

    # ---- training --------------------------------------------------------------------------------

    def _encode(self, text: str, limit: int) -> list[int]:
        return self.tokenizer.encode(text).ids[:limit]

    def collate(self, items: list) -> dict[str, torch.Tensor]:
        audio = audio_inputs(self.encoder, [item.features for item in items])
        neighbours: list[Neighbour | None] = [None] * len(items)
        if self.config.use_text:
            embeddings = torch.as_tensor(self.encoder.embed_audio([item.features for item in items]))
            neighbours = self.nearest_neighbours(
                embeddings, [item.id for item in items], [self._same_piece_ids(item) for item in items]
            )
        layouts = [
            self._layout(neighbour.text if neighbour is not None else None, item.caption)
            for item, neighbour in zip(items, neighbours, strict=True)
        ]
        return {**audio, **self._pad(layouts), **self.training_analysis(items)}

    def _layout(self, candidate: str | None, caption: str) -> tuple[list[int], list[int]]:
        """(tokens, labels) of one training sequence: audio-prefix placeholders (their embeddings become
        the prefix), the candidate caption, SEP, the caption and EOS; loss on the caption and EOS only."""
        prompt = [self.eos_id] * (self.config.n_prefix if self.config.use_audio else 0)
        if candidate is not None:
            prompt += self._encode(candidate, self.config.max_neighbour_tokens)
        target = self._encode(caption, self.config.max_caption_tokens) + [self.eos_id]
        return prompt + [self.sep_id] + target, [-100] * (len(prompt) + 1) + target

    def _pad(self, layouts: list[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
        """Right-padded input_ids, labels and attention_mask for a list of ``_layout`` results."""
        longest = max(len(sequence) for sequence, _ in layouts)
        if longest > self.config.n_positions:
            raise ValueError(f"sequence of {longest} tokens exceeds n_positions={self.config.n_positions}")
        input_ids = torch.full((len(layouts), longest), self.eos_id, dtype=torch.long)
        labels = torch.full((len(layouts), longest), -100, dtype=torch.long)
        attention_mask = torch.zeros(len(layouts), longest, dtype=torch.long)
        for row, (sequence, target) in enumerate(layouts):
            input_ids[row, : len(sequence)] = torch.tensor(sequence)
            labels[row, : len(target)] = torch.tensor(target)
            attention_mask[row, : len(sequence)] = 1
        return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}

    def _input_embeddings(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        embeds = self.lm.get_input_embeddings()(batch["input_ids"])
        if self.config.use_audio:
            with torch.set_grad_enabled(torch.is_grad_enabled() and self.config.train_encoder):
                embedding = self.embed(batch)[1]
            prefix = self.audio_prefix(embedding, batch.get("analysis"))
            embeds = torch.cat([prefix.to(embeds.dtype), embeds[:, self.config.n_prefix :]], dim=1)
        return embeds

    def training_loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        embeds = self._input_embeddings(batch)
        logits = self.lm(inputs_embeds=embeds, attention_mask=batch["attention_mask"]).logits
        optimised_nll, nll = self.caption_nll(logits[:, :-1].float(), batch["labels"][:, 1:], -100)
        return {"loss": optimised_nll, "nll": nll.detach()}

    def caption_token_ids(self, text: str) -> list[int]:
        return self._encode(text, len(text) + 1)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.training_loss(batch)

    def text_neighbours(self, texts: list[str]) -> list[str]:
        """For each text, the nearest *other* text of the list by the CLAP text embedding (cosine)."""
        embeddings = torch.as_tensor(np.asarray(self.encoder.embed_text(texts)), dtype=torch.float32)
        similarity = embeddings @ embeddings.T
        # Never the text itself; an identical caption of another clip is a fair neighbour.
        similarity.fill_diagonal_(-float("inf"))
        return [texts[j] for j in similarity.argmax(1).tolist()]

    def pretrain_or_reload(self, texts: list[str], epochs: int, context) -> None:
        """Text pretraining, kept epoch by epoch: a run interrupted during or after it continues from its
        last finished epoch instead of pretraining again. Kept work is reloaded only when it was made from
        the same inputs (``pretraining_inputs``). With ``context.shared_dir`` it is kept there, under a
        name drawn from those inputs, for every later run that agrees on them (the paper recipe and its
        attribute-word, analysis and piece-exclusion variants differ only after it); else in the run's
        ``context.build_dir``, removed when the run ends."""
        made_from = self.pretraining_inputs(texts, epochs)
        if context.shared_dir:
            name = hashlib.sha256(json.dumps(made_from, sort_keys=True).encode()).hexdigest()[:16]
            folder = Path(context.shared_dir) / "rgmc_text_pretraining" / name
        else:
            folder = Path(context.build_dir) if context.build_dir else None
        keep = PretrainingProgress(folder, made_from) if folder else None
        self.pretrain_on_text(texts, epochs=epochs, keep=keep)

    def pretraining_inputs(self, texts: list[str], epochs: int) -> dict[str, str]:
        """Everything the text pretraining's result depends on: the texts, the tokenizer, the sequence
        layout, the LM's shape, the CLAP that picks each text's neighbour, the epochs and the seed. Not the
        captioning-only settings (attribute-word weight, analysis, which neighbours training skips)."""
        config = self.config
        layout = {
            "prefix_positions": config.n_prefix if config.use_audio else 0,
            "candidate": config.use_text,
            "max_neighbour_tokens": config.max_neighbour_tokens,
            "max_caption_tokens": config.max_caption_tokens,
        }
        lm = {key: getattr(config, key) for key in ("n_layer", "n_head", "n_embd", "n_positions", "dropout")}
        return {
            "epochs": str(epochs),
            "texts": hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16],
            "tokenizer": hashlib.sha256(self.tokenizer.to_str().encode()).hexdigest()[:16],
            "layout": json.dumps(layout, sort_keys=True),
            "lm": json.dumps({**lm, "from": config.lm_name_or_path}, sort_keys=True),
            "clap": config.clap_hash,
            "seed": str(config.seed),
        }

    def pretrain_on_text(
        self,
        texts: list[str],
        *,
        epochs: int,
        batch_size: int = 32,
        lr: float = 5e-4,
        keep: PretrainingProgress | None = None,
    ) -> list[float]:
        """Caption-text pretraining of the LM alone, in the captioning layout; returns epoch losses.

        Each sequence is laid out as at captioning time: the audio-prefix placeholders (their embeddings
        stay the placeholder token's: there is no audio here), the nearest other caption by CLAP text
        embedding as the candidate (when the model uses one), SEP, the caption, EOS; loss on the caption.
        With ``keep`` each finished epoch is saved there and a saved one is continued from.
        """
        generator = torch.Generator().manual_seed(self.config.seed)
        optimizer = torch.optim.AdamW(self.lm.parameters(), lr=lr)
        losses = keep.reload(self.lm, optimizer, generator) if keep is not None else []
        if losses:
            print(
                f"rgmc text pretraining: {len(losses)}/{epochs} epochs reloaded from {keep.folder}",
                flush=True,
            )
        if len(losses) >= epochs:
            self.lm.eval()
            return losses
        candidates = self.text_neighbours(texts) if self.config.use_text else [None] * len(texts)
        layouts = [self._layout(candidate, text) for text, candidate in zip(texts, candidates, strict=True)]
        self.lm.train()
        for _ in range(len(losses), epochs):
            order = torch.randperm(len(layouts), generator=generator).tolist()
            total, count = 0.0, 0
            for start in range(0, len(order), batch_size):
                batch = self._pad([layouts[i] for i in order[start : start + batch_size]])
                loss = self.lm(**batch).loss
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.lm.parameters(), 1.0)
                optimizer.step()
                total, count = total + loss.item(), count + 1
            losses.append(total / max(count, 1))
            print(f"rgmc text pretraining: epoch {len(losses)}/{epochs} loss {losses[-1]:.3f}", flush=True)
            if keep is not None:
                keep.save(self.lm, optimizer, generator, losses)
        self.lm.eval()
        return losses

    # ---- captioning ------------------------------------------------------------------------------

    def candidates(self, clips: list[Clip], embeddings: torch.Tensor) -> list[Neighbour]:
        """The caption appended to each prompt, per ``config.candidate`` (paper Table 4)."""
        mode = self.config.candidate
        if mode == "nearest":
            return self.nearest_neighbours(embeddings, [clip.id for clip in clips])
        if mode == "random":  # a training caption chosen by the clip id: reproducible, unrelated to the audio
            picked = []
            for clip, embedding in zip(clips, embeddings, strict=True):
                digest = hashlib.sha256(f"{self.config.seed}:{clip.id}".encode()).digest()
                position = int.from_bytes(digest[:8], "big") % len(self.index.ids)
                if self.index.ids[position] == clip.id:  # never the clip itself, here either
                    position = (position + 1) % len(self.index.ids)
                score = float(np.dot(self.index.embeddings[position], embedding.numpy()))
                picked.append(
                    Neighbour(text=self.index.captions[position], score=score, id=self.index.ids[position])
                )
            return picked
        missing = [clip.id for clip in clips if REFERENCE_CAPTION not in clip.features]
        if missing:
            raise ValueError(
                f"candidate='gold' needs clip.features[{REFERENCE_CAPTION!r}]; missing for {missing[:3]}"
            )
        golds = [clip.features[REFERENCE_CAPTION] for clip in clips]
        text_embeddings = torch.as_tensor(np.asarray(self.encoder.embed_text(golds)), dtype=embeddings.dtype)
        scores = (text_embeddings * embeddings).sum(-1)  # audio-text similarity: there is no neighbour clip
        return [
            Neighbour(text=g, score=float(s), id=clip.id)
            for g, s, clip in zip(golds, scores, clips, strict=True)
        ]

    def audio_prefix(self, embedding: torch.Tensor, analysis: torch.Tensor | None) -> torch.Tensor:
        """g: [B, E] CLAP embeddings (and, conditioned, [B, ANALYSIS_SIZE] analyses) -> [B, n_prefix, d]."""
        if self.config.analysis_conditioning:
            embedding = torch.cat([embedding, analysis.to(embedding.dtype)], dim=-1)
        return self.mapper(embedding)

    def _prompts(
        self,
        embeddings: torch.Tensor,
        neighbours: list[Neighbour | None],
        analysis: torch.Tensor | None = None,
    ):
        """Left-padded prompt embeddings [B, P, d] (audio prefix, then neighbour tokens) and mask [B, P]."""
        width = self.config.n_embd
        prefix = (
            self.audio_prefix(embeddings, analysis)
            if self.config.use_audio
            else torch.zeros(len(neighbours), 0, width)
        )
        neighbour_ids = [
            self._encode(n.text, self.config.max_neighbour_tokens) if n is not None else []
            for n in neighbours
        ]
        lengths = [prefix.shape[1] + len(ids) for ids in neighbour_ids]
        longest = max(lengths)
        embeds = torch.zeros(len(neighbours), longest, width)
        mask = torch.zeros(len(neighbours), longest, dtype=torch.long)
        token_embedding = self.lm.get_input_embeddings()
        for row, ids in enumerate(neighbour_ids):
            start = longest - lengths[row]
            parts = [prefix[row]]
            if ids:
                parts.append(token_embedding(torch.tensor(ids)))
            embeds[row, start:] = torch.cat(parts)
            mask[row, start:] = 1
        return embeds, mask

    def clip_features(self, clips: list[Clip]) -> list:
        return [audio_features(clip) for clip in clips]

    def encode_clips(self, clips: list[Clip], features: list) -> PromptEncoding:
        """The audio prefix and the retrieved caption, run through GPT-2 once: the cache decoding extends."""
        audio = audio_inputs(self.encoder, features)
        tokens, _ = self.embed(audio)
        weights = self.encoder.frame_weights(tokens, audio["frame_mask"]) if self.config.use_audio else None
        # embed_audio batches by length without padding: the same clip gets the same neighbour in any batch
        embeddings = torch.as_tensor(self.encoder.embed_audio(features))
        neighbours = self.candidates(clips, embeddings) if self.config.use_text else [None] * len(clips)
        analysis = self.captioning_analysis(clips)
        embeds, prompt_mask = self._prompts(embeddings, neighbours, analysis)
        positions = (prompt_mask.cumsum(1) - 1).clamp(min=0)
        output = self.lm(
            inputs_embeds=embeds, attention_mask=prompt_mask, position_ids=positions, use_cache=True
        )
        cache = tuple((layer.keys, layer.values) for layer in output.past_key_values.layers)
        return PromptEncoding(cache, prompt_mask, weights, embeddings, neighbours)

    def start_search(self, prompt: PromptEncoding, expand: torch.Tensor) -> SearchStart:
        prompt_length = prompt.mask.shape[1]
        prompt_kv = tuple((k.index_select(0, expand), v.index_select(0, expand)) for k, v in prompt.cache)
        state = {
            # the prompt's cache is every beam's alike: beam search does not copy it at every step
            "prompt_kv": SameForEveryBeam(prompt_kv),
            "kv": tuple((k[:, :, :0], v[:, :, :0]) for k, v in prompt_kv),  # the generated tokens'
            "mask": prompt.mask.index_select(0, expand),
            "position": prompt.mask.sum(1).index_select(0, expand),
        }

        def step(last_tokens: torch.Tensor, state: dict):
            mask = torch.cat([state["mask"], torch.ones(len(last_tokens), 1, dtype=torch.long)], dim=1)
            logits, kv, attentions = gpt2_cached_step(
                self.lm,
                last_tokens[:, None],
                state["kv"],
                mask,
                state["position"][:, None],
                prefix=state["prompt_kv"].value,
            )
            # [layers, N, heads, 1, S] -> attention to the prompt, [N, layers * heads * P]
            attention = torch.stack(attentions)[..., 0, :prompt_length].permute(1, 0, 2, 3)
            new_state = {**state, "kv": kv, "mask": mask, "position": state["position"] + 1}
            return logits, new_state, attention.reshape(len(last_tokens), -1)

        return SearchStart(step, state, self.sep_id, self.eos_id)

    def detokenize(self, token_ids: list[int]) -> tuple[str, list[str]]:
        tokens = [self.tokenizer.decode([token]).strip() for token in token_ids]
        return self.tokenizer.decode(token_ids).strip(), tokens

    def explain(self, result, row: int, hypothesis, prompt: PromptEncoding, features: list) -> None:
        """Where each token looked in the prompt (audio prefix, neighbour caption), per layer; over audio
        time, the prefix's frame weights (the prefix itself has no time axis)."""
        prompt_length = prompt.mask.shape[1]
        shape = (self.config.n_layer, self.config.n_head, prompt_length)
        n_tokens = len(hypothesis.token_ids)
        attention = (
            hypothesis.attention.reshape(n_tokens, *shape)
            if hypothesis.attention is not None
            else np.zeros((0, *shape), dtype=np.float32)
        )
        n_real = int(prompt.mask[row].sum())
        prompt_attention = attention[..., prompt_length - n_real :]  # drop the left padding
        n_prefix = self.config.n_prefix if self.config.use_audio else 0
        share = {
            "audio prefix": prompt_attention[..., :n_prefix],
            "neighbour caption": prompt_attention[..., n_prefix:],
        }
        result.attention_views = _attention_views(share)
        if prompt.frame_weights is not None:
            row_weights = prompt.frame_weights[row, : features[row].frames.shape[0]].numpy()
            result.attention = np.tile(row_weights / max(row_weights.sum(), 1e-12), (n_tokens, 1)).astype(
                np.float32
            )
            result.attention_times = np.asarray(features[row].frame_times, dtype=np.float32)
        result.audio_embedding = prompt.embeddings[row].numpy()
        result.neighbour = prompt.neighbours[row]
        result.decoding["candidate"] = self.config.candidate


def _attention_views(parts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per part (audio prefix, neighbour caption): mean over layers and heads, then each layer; rows sum to 1."""
    views = {}
    for name, weights in parts.items():  # weights [n_tokens, layers, heads, positions]
        if weights.shape[-1] == 0:
            continue
        views[f"{name} (all layers)"] = rows_to_one(weights.mean(axis=(1, 2)))
        views.update(layer_views(weights, f"{name}, "))
    return views


def build_index(clap, items: list):
    """The CaptionIndex over the training items' CLAP audio embeddings (inner product, as RGMC retrieves)."""
    from musiccap.retrieval import CaptionIndex

    return CaptionIndex.from_items(clap, items, split="train")


def _drop_tied_output_weight(module, state_dict, prefix, local_metadata):
    if module.lm.config.tie_word_embeddings:
        state_dict.pop(f"{prefix}lm.lm_head.weight", None)


def _forgive_tied_output_weight(module, incompatible_keys):
    if module.lm.config.tie_word_embeddings:
        missing = incompatible_keys.missing_keys
        while "lm.lm_head.weight" in missing:
            missing.remove("lm.lm_head.weight")
