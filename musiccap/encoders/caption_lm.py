"""BLAP's frozen language model, a component of the registry (``blap_lm``): its caption tokenizer,
its T5 architecture, how it is found, loaded and fingerprinted.

``python -m train.blap_lm`` pre-trains the small T5 of the embedded profile on caption text; the
full profile names Flan-T5 by Hub id. BLAP (``musiccap/models/blap.py``) keeps it frozen and
refuses, at load, an LM whose fingerprint is not the one it was trained with.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import T5Config, T5ForConditionalGeneration

from musiccap.checkpoint import CONFIG_NAME, WEIGHTS_NAME
from musiccap.hub import pretrained_folder

PAD, EOS, UNK, MASK, CLS, DEC = "<pad>", "</s>", "<unk>", "<mask>", "<cls>", "<dec>"
SPECIAL_TOKENS = (PAD, EOS, UNK, MASK, CLS, DEC)  # ids 0..5; T5 convention: pad 0 (decoder start), eos 1
# Flan-T5's tokenizer has no <cls>/<dec>: its first two sentinels, which no caption contains, stand in.
SENTINELS = {CLS: "<extra_id_0>", DEC: "<extra_id_1>"}
TOKENIZER_NAME = "tokenizer.json"
LM_HUB_FILES = ["*.json", "*.safetensors"]  # config, weights (safetensors only), tokenizer.json


def train_caption_tokenizer(texts: list[str], vocab_size: int) -> Tokenizer:
    """A unigram (SentencePiece-style) tokenizer of caption text with the special tokens first."""
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), unk_token=UNK, show_progress=False
    )
    tokenizer.train_from_iterator(texts, trainer)
    for index, token in enumerate(SPECIAL_TOKENS):
        if tokenizer.token_to_id(token) != index:
            raise RuntimeError(f"special token {token} did not get id {index}")
    return tokenizer


def build_t5(
    vocab_size: int, d_model: int, d_ff: int, n_layers: int, n_heads: int, dropout: float
) -> T5ForConditionalGeneration:
    """A small T5 over the caption tokenizer: Flan-T5's gated-GELU feed-forward; the output layer is tied to
    the embeddings (T5 v1.0), whose rescaled outputs start the loss near log(vocab) rather than ~100."""
    config = T5Config(
        vocab_size=vocab_size,
        d_model=d_model,
        d_kv=d_model // n_heads,
        d_ff=d_ff,
        num_layers=n_layers,
        num_decoder_layers=n_layers,
        num_heads=n_heads,
        dropout_rate=dropout,
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=True,
        pad_token_id=SPECIAL_TOKENS.index(PAD),
        eos_token_id=SPECIAL_TOKENS.index(EOS),
        decoder_start_token_id=SPECIAL_TOKENS.index(PAD),
    )
    config._attn_implementation = "eager"  # decoding reads the cross-attention weights
    return T5ForConditionalGeneration(config)


def lm_fingerprint(path: str | Path) -> str:
    """Short hash of an LM folder: its config, weights (``model.safetensors``, or the shards of a large
    Flan-T5 in name order) and tokenizer."""
    path = Path(path)
    weights = sorted(path.glob("*.safetensors")) or [path / WEIGHTS_NAME]
    digest = hashlib.sha256()
    for file in (path / CONFIG_NAME, *weights, path / TOKENIZER_NAME):
        if not file.is_file():
            raise FileNotFoundError(
                f"{path} is not a BLAP LM folder (no {file.name}; run python -m train.blap_lm or name a T5)"
            )
        digest.update(file.read_bytes())
    return digest.hexdigest()[:12]


def lm_folder(name: str | Path, base: Path | None = None) -> Path:
    """The LM's local folder: ``train.blap_lm``'s output, a Flan-T5 folder, or a Hub id (downloaded once)."""
    return pretrained_folder(name, base, LM_HUB_FILES)


def special_ids(tokenizer: Tokenizer) -> tuple[int, int, int, int]:
    """pad, eos, cls and dec ids in the LM's tokenizer. <cls> starts the Q-Former text of ATC/ATM and
    <dec> its stage-1 captions; a Flan-T5 tokenizer lacks both and lends two sentinels (``SENTINELS``):
    the Q-Former embeds text with its own table, so what the LM makes of those ids does not matter."""

    def find(token: str) -> int:
        for candidate in (token, SENTINELS.get(token)):
            index = tokenizer.token_to_id(candidate) if candidate else None
            if index is not None:
                return index
        raise ValueError(f"the LM tokenizer has no {token}")

    pad, eos, cls, dec = (find(token) for token in (PAD, EOS, CLS, DEC))
    return pad, eos, cls, dec


def load_lm(path: str | Path) -> tuple[T5ForConditionalGeneration, Tokenizer]:
    """The frozen LM and its tokenizer from a local LM folder (safetensors only)."""
    path = Path(path)
    lm = T5ForConditionalGeneration.from_pretrained(
        str(path), attn_implementation="eager", use_safetensors=True
    )
    return lm.eval().requires_grad_(False), Tokenizer.from_file(str(path / TOKENIZER_NAME))
