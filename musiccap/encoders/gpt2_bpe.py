"""GPT-2's byte-level BPE as a Hugging Face tokenizer, built from ``whisper/assets/gpt2.tiktoken``;
and the byte-level BPEs of RGMC's caption LM (trained on captions, or a GPT-2 checkpoint's own).

No package here ships GPT-2's ``vocab.json``/``merges.txt``, but the ``openai-whisper`` distribution
(MIT; install with ``pip install --no-deps openai-whisper==20250625``) ships the same ranks in
tiktoken format: one ``base64(token bytes) rank`` per line, rank = GPT-2 id. The merges are recovered
by re-running BPE on each token's bytes with the lower-ranked tokens only: the last merge it makes
is the one that created the token. The converted ``tokenizer.json`` is cached under
``$MUSICCAP_CACHE/gpt2`` (default ``~/.cache/musiccap/gpt2``).
"""

from __future__ import annotations

import base64
import importlib.util
import os
from pathlib import Path

END_OF_TEXT = "<|endoftext|>"
END_OF_TEXT_ID = 50256


def whisper_gpt2_ranks_path() -> Path:
    spec = importlib.util.find_spec("whisper")  # locate without importing whisper
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "openai-whisper is not installed: pip install --no-deps openai-whisper==20250625"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "assets" / "gpt2.tiktoken"


def read_tiktoken_ranks(path: str | Path) -> dict[bytes, int]:
    ranks = {}
    for line in Path(path).read_text().splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def _creating_merge(token: bytes, rank: int, ranks: dict[bytes, int]) -> tuple[bytes, bytes]:
    parts = [token[i : i + 1] for i in range(len(token))]
    while len(parts) > 2:
        best = None
        for i in range(len(parts) - 1):
            merged_rank = ranks.get(parts[i] + parts[i + 1])
            if merged_rank is not None and merged_rank < rank and (best is None or merged_rank < best[0]):
                best = (merged_rank, i)
        if best is None:
            raise ValueError(f"token {token!r} cannot be built from lower-ranked tokens")
        i = best[1]
        parts[i : i + 2] = [parts[i] + parts[i + 1]]
    return parts[0], parts[1]


def build_tokenizer_json(ranks: dict[bytes, int]) -> str:
    """A ``tokenizers`` JSON with GPT-2's vocabulary, merges, pre-tokenizer and decoder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    byte_to_char = bytes_to_unicode()

    def to_str(b: bytes) -> str:
        return "".join(byte_to_char[x] for x in b)

    vocab = {to_str(token): rank for token, rank in ranks.items()}
    merges = [
        tuple(to_str(p) for p in _creating_merge(token, rank, ranks))
        for token, rank in sorted(ranks.items(), key=lambda kv: kv[1])
        if len(token) > 1
    ]
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([END_OF_TEXT])
    return tokenizer.to_str()


def load_gpt2_tokenizer(ranks_path: str | Path | None = None):
    """``GPT2TokenizerFast`` with GPT-2's ids ("Hello world" -> [15496, 995]; <|endoftext|> = 50256).

    Without ``ranks_path`` the ranks come from the installed openai-whisper and the conversion is cached.
    """
    from tokenizers import Tokenizer
    from transformers import GPT2TokenizerFast

    if ranks_path is not None:
        tokenizer = Tokenizer.from_str(build_tokenizer_json(read_tiktoken_ranks(ranks_path)))
    else:
        root = os.environ.get("MUSICCAP_CACHE") or Path.home() / ".cache" / "musiccap"
        cached = Path(root) / "gpt2" / "tokenizer.json"
        if not cached.exists():
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(build_tokenizer_json(read_tiktoken_ranks(whisper_gpt2_ranks_path())))
            tmp.replace(cached)  # atomic: concurrent first uses never read a half-written file
        tokenizer = Tokenizer.from_file(str(cached))
    return GPT2TokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=END_OF_TEXT,
        eos_token=END_OF_TEXT,
        unk_token=END_OF_TEXT,
        model_max_length=1024,
    )


def train_caption_tokenizer(texts: list[str], vocab_size: int, separator: str):
    """A GPT-2-style byte-level BPE trained on caption text, with <|endoftext|> and ``separator``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[END_OF_TEXT, separator],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer


def pretrained_tokenizer(name_or_path: str, separator: str):
    """A GPT-2 checkpoint's own byte-level BPE (a folder with tokenizer.json, or a Hub id) plus ``separator``."""
    from tokenizers import Tokenizer

    from musiccap.hub import local_folder

    folder = local_folder(name_or_path)
    local = folder / "tokenizer.json" if folder is not None else None
    tokenizer = (
        Tokenizer.from_file(str(local))
        if local is not None and local.is_file()
        else Tokenizer.from_pretrained(name_or_path)
    )
    if tokenizer.token_to_id(END_OF_TEXT) is None:
        raise ValueError(f"{name_or_path}: tokenizer has no {END_OF_TEXT} token (not a GPT-2 tokenizer)")
    tokenizer.add_special_tokens([separator])
    return tokenizer
