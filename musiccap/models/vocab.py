"""MiniLM's WordPiece pruned to the pieces a set of captions uses: a caption-sized output vocabulary.

A decoder over all 30,522 WordPieces spends most of its time in the output layer; captions use a
few hundred to a few thousand pieces. :class:`PrunedWordPiece` keeps four special tokens (decoder
ids 0-3: [PAD], [UNK], [CLS] as BOS, [SEP] as EOS) and then every piece of the training captions,
sorted by MiniLM id. The map decoder id -> MiniLM id is all a checkpoint needs to keep (a buffer
or a JSON list); the tokenizer itself comes from the installed package.
"""

from __future__ import annotations

from collections.abc import Sequence

PAD, UNK, BOS, EOS = 0, 1, 2, 3
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")


class PrunedWordPiece:
    """Encode captions to decoder ids and back through MiniLM's tokenizer and an id map."""

    def __init__(self, tokenizer, minilm_ids: Sequence[int]):
        self.tokenizer = tokenizer
        self.minilm_ids = [int(i) for i in minilm_ids]
        if self.minilm_ids[:4] != tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS)):
            raise ValueError("the first four ids must be MiniLM's [PAD] [UNK] [CLS] [SEP]")
        self._to_decoder = {minilm: own for own, minilm in enumerate(self.minilm_ids)}

    @classmethod
    def from_captions(cls, tokenizer, captions: Sequence[str]) -> PrunedWordPiece:
        special = tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS))
        used: set[int] = set()
        for ids in tokenizer(list(captions), add_special_tokens=False)["input_ids"]:
            used.update(ids)
        return cls(tokenizer, list(special) + sorted(used - set(special)))

    def __len__(self) -> int:
        return len(self.minilm_ids)

    def encode(self, texts: Sequence[str], max_tokens: int | None = None) -> list[list[int]]:
        """Decoder ids per text, without BOS/EOS; pieces the captions never used become UNK."""
        encoded = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [[self._to_decoder.get(i, UNK) for i in ids][:max_tokens] for ids in encoded]

    def decode(self, ids: Sequence[int]) -> tuple[str, list[str]]:
        """The text of decoder ids and one WordPiece per id (the heatmap's rows)."""
        minilm = [self.minilm_ids[i] for i in ids]
        text = self.tokenizer.decode(minilm, skip_special_tokens=True).strip()
        return text, self.tokenizer.convert_ids_to_tokens(minilm)
