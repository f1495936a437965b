"""The arena leaderboard: Bradley–Terry strengths with bootstrap intervals, the head-to-head win matrix,
the RGMC Table 2 view, agreement between voters, agreement of the automatic scores with the voters, and
exports of every vote.

Bradley–Terry: P(i beats j) = p_i / (p_i + p_j), fitted by Hunter's (2004) MM iteration. A tie counts
half a win each way; "both bad" says nothing about which caption is better, so it is left out of the fit
and reported as a count. Every pair of captioners also gets `prior` virtual games split evenly, which keeps
strengths finite for a captioner that never lost (or, in a bootstrap resample, never played).
Intervals: resample votes with replacement (seeded), refit, take the 2.5 / 97.5 percentiles. Captioners
are ranked by the interval's lower bound, so a captioner needs both a high score and enough votes to lead.
"""

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .store import VoteRecord, pair_scores

CRITERIA = ("accuracy", "fluency")


@dataclass(frozen=True)
class ModelRating:
    model: str
    strength: float  # log-strength, mean 0 over the captioners; +1 means e times the odds
    ci_low: float
    ci_high: float
    n_votes: int  # decisive votes and ties involving the model (both-bad excluded)
    wins: int
    losses: int
    ties: int
    both_bad: int
    rank: int | None  # None until the model has min_votes votes


@dataclass(frozen=True)
class Leaderboard:
    criterion: str
    ratings: list[ModelRating]  # ranked models first (by ci_low), then unranked ones
    n_votes: int  # votes used in the fit
    n_both_bad: int
    min_votes: int
    n_bootstrap: int
    seed: int


@dataclass(frozen=True)
class WinMatrix:
    """Head-to-head results for one criterion: how often the row captioner was preferred over the column one.

    `wins[i][j]` counts votes preferring `models[i]` over `models[j]`; `ties[i][j]` (symmetric) counts
    "too similar to tell". "Both bad" says nothing about which is better and is not counted here.
    """

    criterion: str
    models: tuple[str, ...]
    wins: tuple[tuple[int, ...], ...]
    ties: tuple[tuple[int, ...], ...]

    @property
    def n_votes(self) -> int:
        """Decisive votes and ties in the matrix."""
        return sum(map(sum, self.wins)) + sum(map(sum, self.ties)) // 2

    def decided(self, row: int, column: int) -> int:
        """Votes between the two captioners with a winner (ties left out)."""
        return self.wins[row][column] + self.wins[column][row]

    def win_share(self, row: int, column: int) -> float | None:
        """Share of the decided votes that the row captioner won; None when the two never had one."""
        decided = self.decided(row, column)
        return self.wins[row][column] / decided if decided else None


@dataclass(frozen=True)
class PairPreference:
    """One row of the RGMC Table 2 view for a pair of captioners (shares of that pair's votes)."""

    criterion: str
    model_x: str
    model_y: str
    n_votes: int
    x_preferred: float
    y_preferred: float
    equal_quality: float
    both_bad: float


@dataclass(frozen=True)
class Agreement:
    """Agreement between voters who judged the same item (same clip, same two captioners)."""

    criterion: str
    n_items: int  # items with votes from at least two voters
    unanimous: float  # share of those items where every voter gave the same answer
    chance_unanimous: (
        float  # the same share expected if voters answered at random with the observed answer rates
    )
    pairwise: float  # share of agreeing voter pairs over all pairs on the same item


def _outcomes(votes: list[VoteRecord], criterion: str, models: list[str]):
    """(index of model_a, index of model_b, score of model_a) for each vote that is not "both bad"."""
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}")
    index = {model: i for i, model in enumerate(models)}
    first, second, score = [], [], []
    both_bad = np.zeros(len(models), dtype=int)
    for vote in votes:
        answer = getattr(vote, criterion)
        a, b = index[vote.model_a], index[vote.model_b]
        if answer == "both_bad":
            both_bad[[a, b]] += 1
            continue
        first.append(a)
        second.append(b)
        score.append({"A": 1.0, "B": 0.0, "tie": 0.5}[answer])
    return np.array(first, dtype=int), np.array(second, dtype=int), np.array(score), both_bad


def _win_matrices(first, second, score, weights: np.ndarray, n_models: int) -> np.ndarray:
    """wins[r, i, j]: games i won against j in resample r (weights[r, v] copies of vote v)."""
    wins = np.zeros((weights.shape[0], n_models * n_models))
    np.add.at(wins, (slice(None), first * n_models + second), weights * score)
    np.add.at(wins, (slice(None), second * n_models + first), weights * (1.0 - score))
    return wins.reshape(-1, n_models, n_models)


def fit_bradley_terry(
    wins: np.ndarray, prior: float = 0.5, max_iter: int = 5000, tol: float = 1e-10
) -> np.ndarray:
    """Log-strengths (mean 0) from win matrices of shape (..., k, k); batched over leading dimensions."""
    n_models = wins.shape[-1]
    off_diagonal = 1.0 - np.eye(n_models)
    wins = wins * off_diagonal + 0.5 * prior * off_diagonal
    games = wins + np.swapaxes(wins, -1, -2)
    total_wins = wins.sum(-1)
    strength = np.ones(wins.shape[:-1])
    for _ in range(max_iter):
        denominator = (games / (strength[..., :, None] + strength[..., None, :])).sum(-1)
        updated = total_wins / denominator
        updated /= np.exp(np.log(updated).mean(-1, keepdims=True))
        converged = np.max(np.abs(updated - strength)) < tol
        strength = updated
        if converged:
            break
    return np.log(strength)


def build_leaderboard(
    votes: list[VoteRecord],
    models: list[str] | None = None,
    *,
    criterion: str = "accuracy",
    min_votes: int = 20,
    n_bootstrap: int = 500,
    seed: int = 0,
    prior: float = 0.5,
    board_only: bool = True,
) -> Leaderboard:
    if board_only:
        votes = [vote for vote in votes if vote.counts_for_board]
    models = list(
        dict.fromkeys([*(models or []), *sorted({m for v in votes for m in (v.model_a, v.model_b)})])
    )
    first, second, score, both_bad = _outcomes(votes, criterion, models)
    n_models, n_fit = len(models), len(score)
    strength = fit_bradley_terry(_win_matrices(first, second, score, np.ones((1, n_fit)), n_models), prior)[0]
    rng = np.random.default_rng(seed)
    resample_weights = (
        rng.multinomial(n_fit, np.full(n_fit, 1.0 / n_fit), size=n_bootstrap) if n_fit else None
    )
    if resample_weights is not None:
        boot = fit_bradley_terry(_win_matrices(first, second, score, resample_weights, n_models), prior)
        ci_low, ci_high = np.percentile(boot, [2.5, 97.5], axis=0)
    else:
        ci_low = ci_high = strength

    decisive = score != 0.5
    ratings = []
    for i, model in enumerate(models):
        as_first, as_second = first == i, second == i
        wins = int(((as_first & (score == 1.0)) | (as_second & (score == 0.0))).sum())
        losses = int(((as_first & (score == 0.0)) | (as_second & (score == 1.0))).sum())
        ties = int(((as_first | as_second) & ~decisive).sum())
        ratings.append(
            ModelRating(
                model,
                float(strength[i]),
                float(ci_low[i]),
                float(ci_high[i]),
                wins + losses + ties,
                wins,
                losses,
                ties,
                int(both_bad[i]),
                None,
            )
        )
    ranked = sorted((r for r in ratings if r.n_votes >= min_votes), key=lambda r: (-r.ci_low, -r.strength))
    unranked = sorted((r for r in ratings if r.n_votes < min_votes), key=lambda r: -r.n_votes)
    ratings = [_with_rank(r, position + 1) for position, r in enumerate(ranked)] + unranked
    return Leaderboard(criterion, ratings, n_fit, int(both_bad.sum()) // 2, min_votes, n_bootstrap, seed)


def _with_rank(rating: ModelRating, rank: int) -> ModelRating:
    return ModelRating(**{**rating.__dict__, "rank": rank})


def win_matrix(
    votes: list[VoteRecord],
    models: list[str] | None = None,
    *,
    criterion: str = "accuracy",
    board_only: bool = True,
) -> WinMatrix:
    """The head-to-head matrix over `models` (in that order) plus any other captioner that has votes."""
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}")
    if board_only:
        votes = [vote for vote in votes if vote.counts_for_board]
    models = list(
        dict.fromkeys([*(models or []), *sorted({m for v in votes for m in (v.model_a, v.model_b)})])
    )
    index = {model: i for i, model in enumerate(models)}
    wins = np.zeros((len(models), len(models)), dtype=int)
    ties = np.zeros_like(wins)
    for vote in votes:
        answer = getattr(vote, criterion)
        a, b = index[vote.model_a], index[vote.model_b]
        if answer == "A":
            wins[a, b] += 1
        elif answer == "B":
            wins[b, a] += 1
        elif answer == "tie":
            ties[a, b] += 1
            ties[b, a] += 1
    return WinMatrix(criterion, tuple(models), _as_tuples(wins), _as_tuples(ties))


def _as_tuples(matrix: np.ndarray) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(int(n) for n in row) for row in matrix)


def _outcome_for_pair(vote: VoteRecord, criterion: str) -> str:
    """The answer in terms of the sorted pair (x, y): "x", "y", "tie" or "both_bad" (undoes the side swap)."""
    answer = getattr(vote, criterion)
    if answer in ("tie", "both_bad"):
        return answer
    winner = vote.model_a if answer == "A" else vote.model_b
    return "x" if winner == min(vote.model_a, vote.model_b) else "y"


def pairwise_preferences(
    votes: list[VoteRecord], criterion: str, board_only: bool = True
) -> list[PairPreference]:
    """RGMC Table 2 for every pair of captioners that has votes: shares preferred, equal quality, both bad."""
    tallies: dict[tuple[str, str], dict[str, int]] = {}
    for vote in votes:
        if board_only and not vote.counts_for_board:
            continue
        pair = tuple(sorted((vote.model_a, vote.model_b)))
        tally = tallies.setdefault(pair, {"x": 0, "y": 0, "tie": 0, "both_bad": 0})
        tally[_outcome_for_pair(vote, criterion)] += 1
    rows = []
    for (x, y), tally in sorted(tallies.items()):
        n = sum(tally.values())
        rows.append(
            PairPreference(
                criterion, x, y, n, tally["x"] / n, tally["y"] / n, tally["tie"] / n, tally["both_bad"] / n
            )
        )
    return rows


def voter_agreement(votes: list[VoteRecord], criterion: str, board_only: bool = True) -> Agreement:
    """How often voters who judged the same clip and captioner pair gave the same answer.

    Each voter's latest vote per item counts once. The chance level uses the observed answer rates
    (with three voters and three equally likely answers it is the 11.1 % the RGMC paper quotes).
    """
    latest: dict[tuple[str, tuple[str, str]], dict[str, str]] = {}
    for vote in sorted(votes, key=lambda v: v.created_at):
        if board_only and not vote.counts_for_board:
            continue
        item = (vote.clip_sha256, tuple(sorted((vote.model_a, vote.model_b))))
        latest.setdefault(item, {})[vote.voter_hash] = _outcome_for_pair(vote, criterion)
    items = [list(answers.values()) for answers in latest.values() if len(answers) >= 2]
    if not items:
        return Agreement(criterion, 0, float("nan"), float("nan"), float("nan"))
    all_answers = [answer for item in items for answer in item]
    rates = {answer: all_answers.count(answer) / len(all_answers) for answer in set(all_answers)}
    unanimous = np.mean([len(set(item)) == 1 for item in items])
    chance = np.mean([sum(rate ** len(item) for rate in rates.values()) for item in items])
    agreeing_pairs = total_pairs = 0
    for item in items:
        total_pairs += len(item) * (len(item) - 1) // 2
        agreeing_pairs += sum(item.count(a) * (item.count(a) - 1) // 2 for a in set(item))
    return Agreement(criterion, len(items), float(unanimous), float(chance), agreeing_pairs / total_pairs)


# The automatic scores each vote stores for its two captions: (label, caption A's field, caption B's field)
SCORED_METRICS = (
    ("CLAP similarity", "clap_a", "clap_b"),
    ("grounding", "grounding_a", "grounding_b"),
)
SCORE_TIE_TOLERANCE = 1e-6  # closer scores are a tie: the same text scored twice differs by float noise


@dataclass(frozen=True)
class MetricAgreement:
    """How often the caption a metric scores higher is the one listeners preferred (FENSE's validation of
    a caption metric against pairwise human judgements), over the votes with a winner."""

    metric: str
    n_compared: int  # votes with a winner where both captions have this score and the scores differ
    agreement: float  # share of those where the higher-scored caption won; nan when none
    ci_low: float  # 95% percentile bootstrap interval over the compared votes; nan when none
    ci_high: float
    n_ties: int  # votes with a winner whose two scores are equal: left out of the agreement
    n_unscored: int  # votes with a winner where a caption has no score: left out


@dataclass(frozen=True)
class MetricListenerTable:
    criterion: str
    rows: list[MetricAgreement]
    n_decided: int  # votes with a winner ("A" or "B")
    n_without_scores: int  # of those, votes storing none of the scores (cast before scores were stored)
    n_bootstrap: int
    seed: int


def metric_agreement(
    votes: list[VoteRecord],
    criterion: str = "accuracy",
    *,
    n_bootstrap: int = 2000,
    seed: int = 0,
    board_only: bool = True,
) -> MetricListenerTable:
    """Per metric, whether the caption it scores higher won each vote with a winner.

    "Tie" and "both bad" answers name no winner and are left out. A vote where either caption lacks the
    score (cast before scores were stored, no CLAP checkpoint, a caption that states nothing the fact
    check can test) counts as unscored; equal scores count as ties; neither enters the agreement. The
    interval resamples the compared votes with replacement (seeded) and takes the 2.5 / 97.5 percentiles.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}")
    decided = [
        vote
        for vote in votes
        if getattr(vote, criterion) in ("A", "B") and (vote.counts_for_board or not board_only)
    ]
    rows = []
    for metric, field_a, field_b in SCORED_METRICS:
        agreed, n_ties, n_unscored = [], 0, 0
        for vote in decided:
            score_a, score_b = getattr(vote, field_a), getattr(vote, field_b)
            if score_a is None or score_b is None:
                n_unscored += 1
            elif abs(score_a - score_b) <= SCORE_TIE_TOLERANCE:
                n_ties += 1
            else:
                agreed.append((score_a > score_b) == (getattr(vote, criterion) == "A"))
        agreed = np.array(agreed, dtype=float)
        if len(agreed):
            rng = np.random.default_rng(seed)  # each row reproducible on its own
            resampled = rng.choice(agreed, size=(n_bootstrap, len(agreed))).mean(axis=1)
            ci_low, ci_high = np.percentile(resampled, [2.5, 97.5])
            point = agreed.mean()
        else:
            point = ci_low = ci_high = float("nan")
        rows.append(
            MetricAgreement(
                metric, len(agreed), float(point), float(ci_low), float(ci_high), n_ties, n_unscored
            )
        )
    n_without_scores = sum(all(score is None for score in pair_scores(vote).values()) for vote in decided)
    return MetricListenerTable(criterion, rows, len(decided), n_without_scores, n_bootstrap, seed)


EXPORT_COLUMNS = list(VoteRecord.__dataclass_fields__)


def export_votes_csv(votes: list[VoteRecord], path: str | Path) -> Path:
    """Every vote, one row each; decoding configs as JSON text."""
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=EXPORT_COLUMNS)
        writer.writeheader()
        for vote in votes:
            row = vote.to_dict()
            row["decoding_a"] = json.dumps(row["decoding_a"], sort_keys=True)
            row["decoding_b"] = json.dumps(row["decoding_b"], sort_keys=True)
            writer.writerow(row)
    return path


def export_votes_jsonl(votes: list[VoteRecord], path: str | Path) -> Path:
    path = Path(path)
    with open(path, "w", encoding="utf-8") as handle:
        for vote in votes:
            handle.write(json.dumps(vote.to_dict(), sort_keys=True) + "\n")
    return path
