"""The shared search on a toy decoder whose behaviour is known exactly."""

import numpy as np
import pytest
import torch

from musiccap.decoding import DecodingConfig, SameForEveryBeam, rows_per_input, search, select_rows

VOCAB, BOS, EOS = 12, 0, 1


class ToyDecoder:
    """A fixed random bigram table + a per-input bias; state = (input bias, step counter)."""

    def __init__(self, seed=0):
        generator = torch.Generator().manual_seed(seed)
        self.table = torch.randn(VOCAB, VOCAB, generator=generator) * 2
        self.table[:, EOS] -= 1.0

    def state(self, biases, rows):
        return (torch.repeat_interleave(biases, rows, dim=0), torch.zeros(len(biases) * rows, 1))

    def step(self, last, state):
        bias, counter = state
        logits = self.table[last] + bias
        attention = torch.softmax(torch.stack([counter[:, 0], -counter[:, 0], bias[:, 0]], dim=1), dim=1)
        return logits, (bias, counter + 1), attention


def greedy_reference(decoder, bias, max_new):
    tokens, last = [], BOS
    for _ in range(max_new):
        logits = decoder.table[last] + bias
        token = int(logits.argmax())
        if token == EOS:
            break
        tokens.append(token)
        last = token
    return tokens


def test_beam_one_equals_greedy_reference():
    decoder = ToyDecoder()
    biases = torch.randn(4, VOCAB, generator=torch.Generator().manual_seed(1))
    config = DecodingConfig(num_beams=1, max_new_tokens=15)
    results = search(
        decoder.step, decoder.state(biases, 1), batch_size=4, bos_id=BOS, eos_id=EOS, config=config
    )
    for bias, result in zip(biases, results, strict=True):
        assert result.token_ids == greedy_reference(decoder, bias, 15)
        assert result.attention.shape == (len(result.token_ids), 3)


def test_beam_search_scores_at_least_as_well_as_greedy():
    decoder = ToyDecoder(3)
    biases = torch.randn(3, VOCAB, generator=torch.Generator().manual_seed(2))
    greedy = search(
        decoder.step,
        decoder.state(biases, 1),
        batch_size=3,
        bos_id=BOS,
        eos_id=EOS,
        config=DecodingConfig(max_new_tokens=8, length_penalty=0.0),
    )
    config = DecodingConfig(num_beams=5, max_new_tokens=8, length_penalty=0.0)
    beam = search(decoder.step, decoder.state(biases, 5), batch_size=3, bos_id=BOS, eos_id=EOS, config=config)
    for g, b in zip(greedy, beam, strict=True):
        assert b.score >= g.score - 1e-5


def test_blocked_trigrams_never_repeat():
    decoder = ToyDecoder(5)
    decoder.table[:, EOS] = -50  # never stop early, so repetition would be forced without blocking
    biases = torch.zeros(2, VOCAB)
    for beams in (1, 3):
        config = DecodingConfig(num_beams=beams, max_new_tokens=30, no_repeat_ngram_size=3)
        for result in search(
            decoder.step, decoder.state(biases, beams), batch_size=2, bos_id=BOS, eos_id=EOS, config=config
        ):
            trigrams = [tuple(result.token_ids[i : i + 3]) for i in range(len(result.token_ids) - 2)]
            assert len(trigrams) == len(set(trigrams))
            assert len(result.token_ids) == 30


def test_min_new_tokens_and_eos_stop():
    decoder = ToyDecoder(7)
    decoder.table[:, EOS] = 50  # EOS is always the best token
    biases = torch.zeros(1, VOCAB)
    stop = search(
        decoder.step,
        decoder.state(biases, 1),
        batch_size=1,
        bos_id=BOS,
        eos_id=EOS,
        config=DecodingConfig(max_new_tokens=10),
    )
    assert stop[0].token_ids == []
    forced = search(
        decoder.step,
        decoder.state(biases, 1),
        batch_size=1,
        bos_id=BOS,
        eos_id=EOS,
        config=DecodingConfig(max_new_tokens=10, min_new_tokens=4),
    )
    assert len(forced[0].token_ids) == 4


def test_same_seed_same_sample_and_seeds_differ():
    decoder = ToyDecoder(9)
    decoder.table[:, EOS] = -50
    biases = torch.zeros(1, VOCAB)

    def sample(seed):
        config = DecodingConfig(do_sample=True, seed=seed, max_new_tokens=20, top_p=0.95, temperature=1.5)
        assert rows_per_input(config) == 1
        return search(
            decoder.step, decoder.state(biases, 1), batch_size=1, bos_id=BOS, eos_id=EOS, config=config
        )[0].token_ids

    assert sample(1) == sample(1)
    assert len({tuple(sample(s)) for s in range(6)}) > 1


def test_config_validation_and_generate_mapping():
    with pytest.raises(ValueError):
        DecodingConfig(num_beams=0)
    with pytest.raises(ValueError):
        DecodingConfig(min_new_tokens=5, max_new_tokens=2)
    for wrong in ({"do_sample": "true seed=0"}, {"num_beams": True}, {"num_beams": 2.0}, {"top_p": "0.9"}):
        with pytest.raises(TypeError, match="must be"):
            DecodingConfig(**wrong)
    assert DecodingConfig(top_p=1, seed=None, temperature=0.5).top_p == 1  # an int is a float
    kwargs = DecodingConfig(num_beams=5, no_repeat_ngram_size=3).generate_kwargs()
    assert kwargs["num_beams"] == 5 and kwargs["no_repeat_ngram_size"] == 3 and "top_p" not in kwargs
    assert DecodingConfig.from_dict({"num_beams": 2, "unknown": 1}).num_beams == 2


def test_select_rows_reorders_nested_state():
    state = {"h": torch.arange(3.0)[:, None], "kv": (torch.arange(3)[:, None], [torch.arange(3)])}
    picked = select_rows(state, torch.tensor([2, 0]))
    assert picked["h"][:, 0].tolist() == [2.0, 0.0]
    assert np.array_equal(picked["kv"][1][0].numpy(), [2, 0])


def test_select_rows_leaves_what_every_beam_holds_alike():
    prompt = SameForEveryBeam((torch.ones(4, 2), torch.zeros(4)))
    picked = select_rows({"prompt": prompt, "h": torch.arange(4)}, torch.tensor([1, 1, 3, 2]))
    assert picked["prompt"] is prompt and picked["h"].tolist() == [1, 1, 3, 2]


class SpreadNumberDecoder:
    """After BOS: a word (token 2) at 0.2 and five numbers (tokens 5-9) at 0.16 each (0.8 together); the
    number 7 a little likelier than the rest; then EOS."""

    NUMBERS = torch.zeros(VOCAB, dtype=torch.bool)
    NUMBERS[5:10] = True

    def step(self, last, state):
        probabilities = torch.full((len(last), VOCAB), 1e-6)
        first = last == BOS
        probabilities[first, 2] = 0.2
        probabilities[first, 5:10] = 0.158
        probabilities[first, 7] = 0.168
        probabilities[~first, EOS] = 1.0
        return probabilities.log(), state, None


def grouped_search(step, state, batch_size, config, numbers):
    return search(
        step,
        state,
        batch_size=batch_size,
        bos_id=BOS,
        eos_id=EOS,
        config=config.replace(group_numbers=True),
        number_tokens=lambda size: numbers[:size],
    )


@pytest.mark.parametrize("num_beams", [1, 3])
def test_grouped_numbers_write_the_likeliest_number_when_numbers_together_win(num_beams):
    decoder, config = SpreadNumberDecoder(), DecodingConfig(num_beams=num_beams, max_new_tokens=4)
    state = torch.zeros(num_beams, 1)
    plain = search(decoder.step, state, batch_size=1, bos_id=BOS, eos_id=EOS, config=config)[0]
    assert plain.token_ids == [2]  # each number alone is less likely than the word
    grouped = grouped_search(decoder.step, state, 1, config, SpreadNumberDecoder.NUMBERS)[0]
    assert grouped.token_ids == [7]
    # the number is paid for once, with the numbers' total probability (then EOS at probability 1)
    total = float(torch.tensor([0.158] * 4 + [0.168]).sum())
    expected = np.log(total / (total + 0.2 + 1e-6 * (VOCAB - 6)))
    assert grouped.score == pytest.approx(expected / (2 if num_beams > 1 else 1), abs=1e-4)


def test_grouped_numbers_change_nothing_where_no_token_is_a_number():
    decoder = ToyDecoder(5)
    biases = torch.randn(3, VOCAB, generator=torch.Generator().manual_seed(4))
    for beams in (1, 3):
        config = DecodingConfig(num_beams=beams, max_new_tokens=10)
        state = decoder.state(biases, beams)
        plain = search(decoder.step, state, batch_size=3, bos_id=BOS, eos_id=EOS, config=config)
        grouped = grouped_search(decoder.step, state, 3, config, torch.zeros(VOCAB, dtype=torch.bool))
        assert [h.token_ids for h in grouped] == [h.token_ids for h in plain]


def test_grouped_numbers_need_the_number_tokens():
    with pytest.raises(ValueError, match="number tokens"):
        search(
            SpreadNumberDecoder().step,
            torch.zeros(1, 1),
            batch_size=1,
            bos_id=BOS,
            eos_id=EOS,
            config=DecodingConfig(group_numbers=True),
        )
