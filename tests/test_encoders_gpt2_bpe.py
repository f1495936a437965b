"""GPT-2 byte-level BPE rebuilt from openai-whisper's gpt2.tiktoken."""

import importlib.util

import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("whisper") is None, reason="openai-whisper not installed"
)


@pytest.fixture(scope="module")
def tokenizer_and_ranks(tmp_path_factory):
    from musiccap.encoders import gpt2_bpe

    mp = pytest.MonkeyPatch()
    mp.setenv("MUSICCAP_CACHE", str(tmp_path_factory.mktemp("cache")))
    tokenizer = gpt2_bpe.load_gpt2_tokenizer()
    yield tokenizer, gpt2_bpe.read_tiktoken_ranks(gpt2_bpe.whisper_gpt2_ranks_path())
    mp.undo()


def rank_bpe(piece: bytes, ranks: dict[bytes, int]) -> list[int]:
    """tiktoken's algorithm: repeatedly merge the adjacent pair whose merge has the lowest rank."""
    parts = [piece[i : i + 1] for i in range(len(piece))]
    while True:
        candidates = [(ranks[a + b], i) for i, (a, b) in enumerate(zip(parts, parts[1:])) if a + b in ranks]
        if not candidates:
            return [ranks[p] for p in parts]
        _, i = min(candidates)
        parts[i : i + 2] = [parts[i] + parts[i + 1]]


def test_hello_world_has_gpt2_ids(tokenizer_and_ranks):
    tokenizer, _ = tokenizer_and_ranks
    assert tokenizer("Hello world")["input_ids"] == [15496, 995]
    assert tokenizer.eos_token_id == 50256 and len(tokenizer) == 50257


def test_merges_agree_with_rank_bpe(tokenizer_and_ranks):
    tokenizer, ranks = tokenizer_and_ranks
    text = "A mellow lo-fi hip hop beat  with\n\ndusty drums, 120 BPM; it's soothing. Ünïcödé 日本 antidisestablishment"
    pieces = tokenizer.backend_tokenizer.pre_tokenizer.pre_tokenize_str(text)
    byte_decoder = {
        c: b for b, c in __import__("transformers").convert_slow_tokenizer.bytes_to_unicode().items()
    }
    expected = [i for piece, _ in pieces for i in rank_bpe(bytes(byte_decoder[c] for c in piece), ranks)]
    ids = tokenizer(text)["input_ids"]
    assert ids == expected
    assert tokenizer.decode(ids) == text
