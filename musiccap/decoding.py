"""One decoding configuration for every captioner, and the search that step-wise decoders share.

Captioners built on Hugging Face models hand :meth:`DecodingConfig.generate_kwargs` to
``generate()``. Decoders written here (LSTMs, small Transformers) expose a *step function*
and get batched beam search, greedy decoding and seeded sampling from :func:`search`, with
cached state, EOS stopping (never on "."), n-gram blocking, grouped numbers and the attention of
every generated token kept for the heatmaps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch

# DecodingConfig's field annotations (strings: postponed evaluation) -> the types a value may have
_FIELD_TYPES = {"int": int, "float": (int, float), "bool": bool, "int | None": (int, type(None))}


@dataclass
class DecodingConfig:
    num_beams: int = 1  # 1: greedy (or sampling)
    max_new_tokens: int = 60  # the length limit, in the captioner's own tokens
    min_new_tokens: int = 0  # EOS is banned before this many
    no_repeat_ngram_size: int = 0  # 0: off; n: no n-gram twice in one caption
    repetition_penalty: float = 1.0  # > 1 discourages every token already generated
    length_penalty: float = 1.0  # beam scores are divided by length ** this
    do_sample: bool = False
    top_k: int = 0  # sampling: 0 keeps every token
    top_p: float = 1.0  # sampling: nucleus mass kept
    temperature: float = 1.0  # sampling: logits are divided by it
    seed: int | None = None  # sampling: None seeds with 0
    # Greedy and beam search: where the number tokens together outweigh every other token, a number is
    # written (the likeliest one). Without it a caption's "about 120 BPM" comes out "about BPM": a decoder
    # that is sure a tempo follows spreads it over 150 values, each less likely than the word after it.
    group_numbers: bool = False
    # Text clean-up (musiccap/text.py), after decoding: off is the text as decoded, which the paper
    # tables score; the studio and the CLI turn both on.
    clean_text: bool = False  # detokenized, sentence case, no sentence cut by the length limit
    dedupe_sentences: bool = False  # a sentence repeated word for word is kept once (with clean_text)

    def __post_init__(self):
        for field in fields(self):  # e.g. do_sample="true seed=0" from a command line quoted as one argument
            value = getattr(self, field.name)
            if not isinstance(value, _FIELD_TYPES[field.type]) or (
                isinstance(value, bool) and field.type != "bool"
            ):
                raise TypeError(f"DecodingConfig.{field.name} must be {field.type}, got {value!r}")
        if self.num_beams < 1:
            raise ValueError("num_beams must be at least 1")
        if self.max_new_tokens < 1 or self.min_new_tokens < 0 or self.min_new_tokens > self.max_new_tokens:
            raise ValueError("need 0 <= min_new_tokens <= max_new_tokens and max_new_tokens >= 1")
        if self.temperature <= 0 or not 0 < self.top_p <= 1 or self.top_k < 0:
            raise ValueError("temperature must be > 0, top_p in (0, 1], top_k >= 0")
        if self.repetition_penalty <= 0:
            raise ValueError("repetition_penalty must be > 0")
        if self.dedupe_sentences and not self.clean_text:
            raise ValueError("dedupe_sentences is part of the text clean-up: set clean_text too")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> DecodingConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (values or {}).items() if k in names})

    def replace(self, **changes) -> DecodingConfig:
        return DecodingConfig.from_dict({**self.to_dict(), **changes})

    def generate_kwargs(self) -> dict[str, Any]:
        """The same settings for ``transformers``' ``generate()`` (seed it with :func:`seeded`)."""
        kwargs = {
            "num_beams": self.num_beams,
            "max_new_tokens": self.max_new_tokens,
            "min_new_tokens": self.min_new_tokens,
            "no_repeat_ngram_size": self.no_repeat_ngram_size,
            "repetition_penalty": self.repetition_penalty,
            "length_penalty": self.length_penalty,
            "do_sample": self.do_sample,
        }
        if self.do_sample:
            kwargs.update(top_k=self.top_k, top_p=self.top_p, temperature=self.temperature)
        if self.num_beams > 1:
            kwargs["early_stopping"] = True
        return kwargs


def seeded(config: DecodingConfig) -> torch.Generator | None:
    """A generator seeded from the config (sampling with the same seed gives the same caption)."""
    if not config.do_sample:
        return None
    generator = torch.Generator()
    generator.manual_seed(0 if config.seed is None else int(config.seed))
    return generator


@dataclass
class Hypothesis:
    """One decoded sequence: token ids without BOS/EOS, its score, and attention [n_tokens, n_sources]."""

    token_ids: list[int]
    score: float
    attention: np.ndarray | None = None


# step(last_tokens [N], state) -> (logits [N, V], new_state, attention [N, S] or None)
StepFunction = Callable[[torch.Tensor, Any], tuple[torch.Tensor, Any, torch.Tensor | None]]


@dataclass(frozen=True)
class SameForEveryBeam:
    """A part of a decoder state that every beam of an input holds alike (e.g. a prompt's key/value cache,
    copied once per beam): :func:`search` reorders rows only among an input's own beams, so
    :func:`select_rows` leaves it as it is rather than copy it at every step."""

    value: Any


def select_rows(state: Any, index: torch.Tensor) -> Any:
    """Reorder a decoder state (tensors, or tuples/lists/dicts of them; batch first) by row index; a
    :class:`SameForEveryBeam` part stays as it is (``index`` only reorders an input's own beams)."""
    if state is None or isinstance(state, SameForEveryBeam):
        return state
    if isinstance(state, torch.Tensor):
        return state.index_select(0, index)
    if isinstance(state, tuple | list):
        return type(state)(select_rows(part, index) for part in state)
    if isinstance(state, dict):
        return {key: select_rows(value, index) for key, value in state.items()}
    raise TypeError(f"cannot reorder decoder state of type {type(state).__name__}")


def _banned_ngram_tokens(history: list[int], n: int) -> set[int]:
    if n <= 0 or len(history) < n - 1:
        return set()
    prefix = tuple(history[len(history) - n + 1 :]) if n > 1 else ()
    banned = set()
    for start in range(len(history) - n + 1):
        if tuple(history[start : start + n - 1]) == prefix:
            banned.add(history[start + n - 1])
    return banned


def _adjust_logits(logits: torch.Tensor, histories: list[list[int]], step: int, eos_id: int, config):
    logits = logits.float().clone()
    if config.repetition_penalty != 1.0:
        for row, history in enumerate(histories):
            if history:
                seen = torch.tensor(sorted(set(history)))
                values = logits[row, seen]
                logits[row, seen] = torch.where(
                    values > 0, values / config.repetition_penalty, values * config.repetition_penalty
                )
    if config.no_repeat_ngram_size > 0:
        for row, history in enumerate(histories):
            banned = _banned_ngram_tokens(history, config.no_repeat_ngram_size)
            if banned:
                logits[row, sorted(banned)] = float("-inf")
    if step < config.min_new_tokens:
        logits[:, eos_id] = float("-inf")
    return logits


def _group_numbers(log_probs: torch.Tensor, numbers: torch.Tensor) -> torch.Tensor:
    """Log-probabilities [N, V] with the numbers (bool mask [V]) treated as one word: in a row where their
    total probability beats every other token's, only numbers stay, the likeliest scored with that total
    (the value is a choice inside the word, so a beam pays for the number once, not for its spread)."""
    number_mass = torch.logsumexp(log_probs.masked_fill(~numbers, float("-inf")), dim=-1)
    best_number = log_probs.masked_fill(~numbers, float("-inf")).max(dim=-1).values
    best_other = log_probs.masked_fill(numbers, float("-inf")).max(dim=-1).values
    grouped = (number_mass > best_other)[:, None]
    as_word = torch.where(numbers, log_probs - best_number[:, None] + number_mass[:, None], float("-inf"))
    return torch.where(grouped, as_word, log_probs)


def _filter_for_sampling(logits: torch.Tensor, config: DecodingConfig) -> torch.Tensor:
    logits = logits / config.temperature
    if config.top_k > 0:
        kth = torch.topk(logits, min(config.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if config.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(-1)
        remove = (
            cumulative - torch.softmax(sorted_logits, dim=-1) >= config.top_p
        )  # keep the token that crosses p
        sorted_logits = sorted_logits.masked_fill(remove, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return logits


@torch.no_grad()
def search(
    step: StepFunction,
    state: Any,
    *,
    batch_size: int,
    bos_id: int,
    eos_id: int,
    config: DecodingConfig,
    number_tokens: Callable[[int], torch.Tensor] | None = None,
) -> list[Hypothesis]:
    """Decode ``batch_size`` inputs; ``state`` must already hold ``batch_size * rows`` rows.

    ``rows`` is ``config.num_beams`` for beam search and 1 for greedy or sampling: call
    :func:`rows_per_input` to know how far to expand the encoder output. Beam search keeps every
    beam of every input in one batch, so each step is one forward pass. ``number_tokens(vocab_size)``:
    the bool mask of the tokens that are numbers, for ``config.group_numbers`` (sampling ignores it:
    it already draws a number as often as the numbers' total probability says).
    """
    if config.group_numbers and not config.do_sample and number_tokens is None:
        raise ValueError("group_numbers needs the decoder's number tokens")
    numbers = None
    beams = rows_per_input(config)
    n_rows = batch_size * beams
    last = torch.full((n_rows,), bos_id, dtype=torch.long)
    histories: list[list[int]] = [[] for _ in range(n_rows)]
    attentions: list[list[np.ndarray]] = [[] for _ in range(n_rows)]
    beam_scores = torch.zeros(batch_size, beams)
    beam_scores[:, 1:] = float("-inf")  # all beams start identical: only the first may expand at step 0
    beam_scores = beam_scores.view(-1)
    finished: list[list[Hypothesis]] = [[] for _ in range(batch_size)]
    done = [False] * batch_size
    generator = seeded(config)

    for position in range(config.max_new_tokens):
        logits, state, attention = step(last, state)
        logits = _adjust_logits(logits, histories, position, eos_id, config)
        log_probs = torch.log_softmax(logits, dim=-1)
        if config.group_numbers and not config.do_sample:
            numbers = number_tokens(logits.shape[-1]) if numbers is None else numbers
            log_probs = _group_numbers(log_probs, numbers)
        attention_rows = None if attention is None else attention.float().numpy()

        if config.do_sample or beams == 1:
            if config.do_sample:
                probabilities = torch.softmax(_filter_for_sampling(logits, config), dim=-1)
                chosen = torch.multinomial(probabilities, 1, generator=generator).squeeze(1)
            else:
                chosen = log_probs.argmax(-1)
            log_probs = log_probs.gather(1, chosen[:, None]).squeeze(1)
            for row in range(n_rows):
                if done[row]:
                    continue
                beam_scores[row] += log_probs[row]
                token = int(chosen[row])
                if token == eos_id or position == config.max_new_tokens - 1:
                    if token != eos_id:
                        histories[row].append(token)
                        if attention_rows is not None:
                            attentions[row].append(attention_rows[row])
                    finished[row].append(_hypothesis(histories[row], beam_scores[row], attentions[row]))
                    done[row] = True
                else:
                    histories[row].append(token)
                    if attention_rows is not None:
                        attentions[row].append(attention_rows[row])
            if all(done):
                break
            last = chosen
            continue

        vocab = logits.shape[-1]
        candidates = (beam_scores[:, None] + log_probs).view(batch_size, beams * vocab)
        top_scores, top_ids = torch.topk(candidates, 2 * beams, dim=-1)
        next_rows, next_tokens, next_scores = [], [], []
        for item in range(batch_size):
            if done[item]:  # keep shapes: carry dead beams along
                base = item * beams
                next_rows += list(range(base, base + beams))
                next_tokens += [eos_id] * beams
                next_scores += [float("-inf")] * beams
                continue
            kept = 0
            for score, flat in zip(top_scores[item].tolist(), top_ids[item].tolist(), strict=True):
                row = item * beams + flat // vocab
                token = flat % vocab
                if score == float("-inf"):
                    break
                if token == eos_id:
                    finished[item].append(
                        _hypothesis(histories[row], score, attentions[row], config.length_penalty)
                    )
                    continue
                next_rows.append(row)
                next_tokens.append(token)
                next_scores.append(score)
                kept += 1
                if kept == beams:
                    break
            while kept < beams:  # fewer live candidates than beams (tiny vocabularies)
                next_rows.append(item * beams)
                next_tokens.append(eos_id)
                next_scores.append(float("-inf"))
                kept += 1
            finished[item].sort(key=lambda h: h.score, reverse=True)
            del finished[item][beams:]
            best_alive = max(next_scores[-beams:])
            if len(finished[item]) == beams and (
                best_alive == float("-inf")
                or best_alive / ((position + 1) ** config.length_penalty) <= finished[item][-1].score
            ):
                done[item] = True
        index = torch.tensor(next_rows)
        state = select_rows(state, index)
        new_histories, new_attentions = [], []
        for row, token in zip(next_rows, next_tokens, strict=True):
            new_histories.append(histories[row] + [token])
            extra = [attention_rows[row]] if attention_rows is not None else []
            new_attentions.append(attentions[row] + extra)
        histories, attentions = new_histories, new_attentions
        beam_scores = torch.tensor(next_scores)
        last = torch.tensor(next_tokens)
        if all(done):
            break

    if not (config.do_sample or beams == 1):
        for item in range(batch_size):
            if done[item]:
                continue
            for row in range(item * beams, (item + 1) * beams):  # out of length: live beams compete too
                if beam_scores[row] > float("-inf"):
                    finished[item].append(
                        _hypothesis(histories[row], beam_scores[row], attentions[row], config.length_penalty)
                    )
    best = []
    for item in range(batch_size):
        if beams == 1 or config.do_sample:
            best.append(finished[item][0])
        else:
            best.append(max(finished[item], key=lambda h: h.score))
    return best


def rows_per_input(config: DecodingConfig) -> int:
    return 1 if config.do_sample else config.num_beams


def _hypothesis(history, score, attention, length_penalty: float | None = None) -> Hypothesis:
    score = float(score)
    if length_penalty is not None:
        score /= max(len(history) + 1, 1) ** length_penalty  # +1: the EOS is part of the scored sequence
    matrix = np.stack(attention) if attention else None
    return Hypothesis(token_ids=list(history), score=score, attention=matrix)
