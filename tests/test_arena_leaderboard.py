"""Leaderboard: Bradley–Terry recovers a known ranking, seeded bootstrap, RGMC Table 2 view, agreement
between voters, and of the automatic scores with the voters."""

import numpy as np
import pytest
from scipy.optimize import minimize

from musiccap.arena.leaderboard import (
    build_leaderboard,
    fit_bradley_terry,
    metric_agreement,
    pairwise_preferences,
    voter_agreement,
    win_matrix,
)
from musiccap.arena.store import VoteRecord

TRUE_STRENGTH = {"rgmc": 1.2, "blap": 0.6, "csa": 0.0, "muscaps": -0.5, "random": -1.3}


def make_vote(
    number,
    model_a,
    model_b,
    accuracy,
    fluency=None,
    clip="clip",
    voter=None,
    board=True,
    clap=None,
    grounding=None,
):
    """`clap` and `grounding`: (caption A's score, caption B's score), or None for a vote that stores none."""
    clap_a, clap_b = clap or (None, None)
    grounding_a, grounding_b = grounding or (None, None)
    return VoteRecord(
        vote_id=f"v{number}",
        pair_id=f"p{number}",
        created_at=float(number),
        clip_id=clip,
        clip_sha256=clip,
        model_a=model_a,
        model_b=model_b,
        caption_a="a",
        caption_b="b",
        decoding_a={},
        decoding_b={},
        checkpoint_a="",
        checkpoint_b="",
        swapped=model_a > model_b,
        accuracy=accuracy,
        fluency=fluency or accuracy,
        listening_s=None,
        time_to_vote_s=10.0,
        voter_hash=voter or f"voter{number}",
        app_version="test",
        counts_for_board=board,
        not_counted_reason=None if board else "upload",
        clap_a=clap_a,
        clap_b=clap_b,
        grounding_a=grounding_a,
        grounding_b=grounding_b,
    )


def synthetic_votes(n_votes, rng, tie_rate=0.0, both_bad_rate=0.0):
    models = list(TRUE_STRENGTH)
    votes = []
    for number in range(n_votes):
        a, b = rng.choice(len(models), size=2, replace=False)
        model_a, model_b = models[a], models[b]
        u = rng.random()
        if u < both_bad_rate:
            answer = "both_bad"
        elif u < both_bad_rate + tie_rate:
            answer = "tie"
        else:
            p_a = 1 / (1 + np.exp(TRUE_STRENGTH[model_b] - TRUE_STRENGTH[model_a]))
            answer = "A" if rng.random() < p_a else "B"
        votes.append(make_vote(number, model_a, model_b, answer))
    return votes


def test_mm_fit_matches_direct_maximum_likelihood():
    rng = np.random.default_rng(1)
    wins = rng.integers(1, 30, size=(4, 4)).astype(float)
    np.fill_diagonal(wins, 0)
    fitted = fit_bradley_terry(wins, prior=0.0)

    def negative_log_likelihood(theta):
        diff = theta[:, None] - theta[None, :]
        return -(wins * (diff - np.logaddexp(0, diff))).sum()

    direct = minimize(negative_log_likelihood, np.zeros(4), method="BFGS").x
    np.testing.assert_allclose(fitted, direct - direct.mean(), atol=1e-4)


def test_recovers_known_ranking_and_strengths():
    votes = synthetic_votes(4000, np.random.default_rng(0))
    board = build_leaderboard(votes, criterion="accuracy", n_bootstrap=300, seed=0, min_votes=20)
    assert [r.model for r in board.ratings] == list(TRUE_STRENGTH)
    assert [r.rank for r in board.ratings] == [1, 2, 3, 4, 5]
    truth = np.array(list(TRUE_STRENGTH.values()))
    truth -= truth.mean()
    fitted = np.array([r.strength for r in board.ratings])
    np.testing.assert_allclose(fitted, truth, atol=0.15)
    covered = [r.ci_low <= t <= r.ci_high for r, t in zip(board.ratings, truth)]
    assert sum(covered) >= 4
    assert all(r.ci_low < r.strength < r.ci_high for r in board.ratings)


def test_ties_split_both_bad_excluded_and_counted():
    rng = np.random.default_rng(2)
    votes = synthetic_votes(4000, rng, tie_rate=0.2, both_bad_rate=0.1)
    board = build_leaderboard(votes, n_bootstrap=200, seed=0)
    assert [r.model for r in board.ratings] == list(TRUE_STRENGTH)
    n_both_bad = sum(v.accuracy == "both_bad" for v in votes)
    assert board.n_both_bad == n_both_bad and board.n_votes == len(votes) - n_both_bad
    assert sum(r.both_bad for r in board.ratings) == 2 * n_both_bad
    assert sum(r.ties for r in board.ratings) == 2 * sum(v.accuracy == "tie" for v in votes)
    # all ties between two models: equal strength
    tied = build_leaderboard([make_vote(i, "x", "y", "tie") for i in range(30)], n_bootstrap=50)
    assert tied.ratings[0].strength == pytest.approx(0.0, abs=1e-9)


def test_min_votes_ranked_by_lower_bound_and_board_only():
    votes = synthetic_votes(600, np.random.default_rng(3))
    # a newcomer that won its only 5 games: high strength, too few votes to rank
    votes += [make_vote(10_000 + i, "newcomer", "rgmc", "A") for i in range(5)]
    votes += [make_vote(20_000 + i, "upload-only", "rgmc", "A", board=False) for i in range(50)]
    board = build_leaderboard(votes, n_bootstrap=200, seed=0, min_votes=20)
    newcomer = next(r for r in board.ratings if r.model == "newcomer")
    assert newcomer.rank is None and board.ratings[-1] is newcomer
    assert "upload-only" not in [r.model for r in board.ratings]
    ranked = [r for r in board.ratings if r.rank is not None]
    assert [r.ci_low for r in ranked] == sorted((r.ci_low for r in ranked), reverse=True)


def test_bootstrap_is_seeded():
    votes = synthetic_votes(500, np.random.default_rng(4))
    first = build_leaderboard(votes, n_bootstrap=100, seed=7)
    assert build_leaderboard(votes, n_bootstrap=100, seed=7) == first
    other = build_leaderboard(votes, n_bootstrap=100, seed=8)
    assert [r.ci_low for r in other.ratings] != [r.ci_low for r in first.ratings]


def test_rgmc_table2_view_undoes_side_swap():
    votes = [
        make_vote(0, "rgmc", "muscaps", "A", "tie"),
        make_vote(1, "muscaps", "rgmc", "B", "A"),  # rgmc on the right, preferred
        make_vote(2, "muscaps", "rgmc", "A", "both_bad"),
        make_vote(3, "rgmc", "muscaps", "tie", "tie"),
    ]
    (accuracy,) = pairwise_preferences(votes, "accuracy")
    assert (accuracy.model_x, accuracy.model_y, accuracy.n_votes) == ("muscaps", "rgmc", 4)
    assert (accuracy.x_preferred, accuracy.y_preferred, accuracy.equal_quality) == (0.25, 0.5, 0.25)
    (fluency,) = pairwise_preferences(votes, "fluency")
    assert (fluency.x_preferred, fluency.equal_quality, fluency.both_bad) == (0.25, 0.5, 0.25)


def test_voter_agreement_on_same_item():
    votes = [
        # item 1: three voters, all prefer rgmc (one saw it on the other side)
        make_vote(0, "rgmc", "csa", "A", clip="c1", voter="u1"),
        make_vote(1, "csa", "rgmc", "B", clip="c1", voter="u2"),
        make_vote(2, "rgmc", "csa", "A", clip="c1", voter="u3"),
        # item 2: two voters disagree
        make_vote(3, "rgmc", "csa", "A", clip="c2", voter="u1"),
        make_vote(4, "rgmc", "csa", "tie", clip="c2", voter="u2"),
        # item 3: one voter only, not an agreement item
        make_vote(5, "rgmc", "csa", "B", clip="c3", voter="u1"),
    ]
    agreement = voter_agreement(votes, "accuracy")
    assert agreement.n_items == 2
    assert agreement.unanimous == 0.5
    assert agreement.pairwise == pytest.approx(3 / 4)  # 3 agreeing of 3 pairs, 0 of 1
    # observed rates: rgmc 4/5, tie 1/5 -> chance of unanimity (0.8^3+0.2^3 + 0.8^2+0.2^2) / 2
    assert agreement.chance_unanimous == pytest.approx((0.8**3 + 0.2**3 + 0.8**2 + 0.2**2) / 2)


def test_win_matrix_counts_row_over_column_whatever_the_side():
    votes = [
        make_vote(0, "rgmc", "csa", "A"),
        make_vote(1, "csa", "rgmc", "B"),  # rgmc on the right, preferred
        make_vote(2, "csa", "rgmc", "A"),
        make_vote(3, "rgmc", "csa", "tie"),
        make_vote(4, "rgmc", "csa", "both_bad"),
        make_vote(5, "rgmc", "muscaps", "A", fluency="B"),
        make_vote(6, "muscaps", "csa", "A", board=False),  # an upload's vote: not on the board
    ]
    matrix = win_matrix(votes, ["rgmc", "csa", "muscaps", "blap"])
    assert matrix.models == ("rgmc", "csa", "muscaps", "blap")
    rgmc, csa, muscaps, blap = range(4)
    assert matrix.wins[rgmc][csa] == 2 and matrix.wins[csa][rgmc] == 1
    assert matrix.ties[rgmc][csa] == matrix.ties[csa][rgmc] == 1
    assert matrix.decided(rgmc, csa) == matrix.decided(csa, rgmc) == 3
    assert matrix.win_share(rgmc, csa) == pytest.approx(2 / 3)
    assert matrix.win_share(csa, rgmc) == pytest.approx(1 / 3)
    assert matrix.win_share(rgmc, muscaps) == 1.0 and matrix.win_share(muscaps, rgmc) == 0.0
    # never met (or only in an upload's vote): no share rather than 0 %
    assert matrix.win_share(csa, muscaps) is None and matrix.win_share(blap, rgmc) is None
    assert matrix.n_votes == 5  # three decisive and one tie between rgmc and csa, one with muscaps

    fluency = win_matrix(votes, criterion="fluency")
    assert fluency.models == ("csa", "muscaps", "rgmc")  # models from the votes, sorted
    assert fluency.win_share(1, 2) == 1.0  # muscaps preferred over rgmc for fluency

    with_uploads = win_matrix(votes, criterion="accuracy", board_only=False)
    assert (
        with_uploads.win_share(with_uploads.models.index("muscaps"), with_uploads.models.index("csa")) == 1.0
    )


def test_win_matrix_agrees_with_the_table2_view_and_is_empty_without_votes():
    votes = synthetic_votes(300, np.random.default_rng(5), tie_rate=0.2, both_bad_rate=0.1)
    matrix = win_matrix(votes)
    for row in pairwise_preferences(votes, "accuracy"):
        x, y = matrix.models.index(row.model_x), matrix.models.index(row.model_y)
        decided = matrix.decided(x, y)
        assert matrix.wins[x][y] == pytest.approx(row.x_preferred * row.n_votes)
        assert matrix.ties[x][y] == pytest.approx(row.equal_quality * row.n_votes)
        assert matrix.win_share(x, y) == pytest.approx(row.x_preferred / (row.x_preferred + row.y_preferred))
        assert decided + matrix.ties[x][y] == pytest.approx((1 - row.both_bad) * row.n_votes)

    empty = win_matrix([], ["rgmc", "csa"])
    assert empty.n_votes == 0 and empty.wins == ((0, 0), (0, 0))
    assert empty.win_share(0, 1) is None
    with pytest.raises(ValueError, match="criterion"):
        win_matrix([], criterion="speed")


def scored_vote(number, answer, clap, grounding, board=True, fluency=None):
    return make_vote(number, "csa", "blap", answer, fluency, board=board, clap=clap, grounding=grounding)


def test_metric_agreement_on_hand_made_votes():
    votes = [
        scored_vote(1, "A", clap=(0.3, 0.1), grounding=(0.5, 1.0)),  # CLAP agrees, grounding does not
        scored_vote(2, "B", clap=(0.2, 0.4), grounding=(1.0, 0.0)),  # CLAP agrees, grounding does not
        scored_vote(3, "A", clap=(0.1, 0.2), grounding=(1.0, 0.5)),  # grounding agrees, CLAP does not
        scored_vote(4, "B", clap=(0.25, 0.25), grounding=(0.5, None)),  # CLAP tie; B states nothing checkable
        scored_vote(5, "A", clap=(0.2, 0.2 + 1e-9), grounding=(0.5, 0.5)),  # float noise is a tie too
        make_vote(6, "csa", "blap", "A"),  # cast before votes stored scores
        scored_vote(7, "tie", clap=(0.9, 0.1), grounding=(1.0, 0.0)),  # no winner: left out
        scored_vote(8, "both_bad", clap=(0.9, 0.1), grounding=(1.0, 0.0)),
        scored_vote(
            9, "A", clap=(0.9, 0.1), grounding=(1.0, 0.0), board=False
        ),  # an upload: not on the board
    ]
    table = metric_agreement(votes, n_bootstrap=500, seed=3)
    assert (table.criterion, table.n_decided, table.n_without_scores) == ("accuracy", 6, 1)
    clap, grounded = table.rows
    assert (clap.metric, clap.n_compared, clap.n_ties, clap.n_unscored) == ("CLAP similarity", 3, 2, 1)
    assert (grounded.metric, grounded.n_compared, grounded.n_ties, grounded.n_unscored) == (
        "grounding",
        3,
        1,
        2,
    )
    assert clap.agreement == pytest.approx(2 / 3) and grounded.agreement == pytest.approx(1 / 3)
    for row in table.rows:
        assert 0.0 <= row.ci_low <= row.agreement <= row.ci_high <= 1.0 and row.ci_low < row.ci_high
    assert metric_agreement(votes, n_bootstrap=500, seed=3) == table  # seeded: the same intervals again
    assert metric_agreement(votes, board_only=False).n_decided == 7
    # the fluency question has its own winners: here every caption with the higher CLAP score read better
    fluency = metric_agreement([scored_vote(1, "B", (0.3, 0.1), (1.0, 0.0), fluency="A")], "fluency")
    assert (fluency.rows[0].agreement, fluency.rows[0].ci_low, fluency.rows[0].ci_high) == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError):
        metric_agreement(votes, "loudness")


def test_metric_agreement_bootstrap_interval_covers_a_known_rate():
    answers = np.random.default_rng(0).permutation(["A"] * 280 + ["B"] * 120)  # 70% prefer higher CLAP
    votes = [scored_vote(n, answer, clap=(0.3, 0.1), grounding=None) for n, answer in enumerate(answers)]
    clap, grounded = metric_agreement(votes, n_bootstrap=2000, seed=0).rows
    assert clap.agreement == pytest.approx(0.7) and clap.ci_low < 0.7 < clap.ci_high
    assert 0.06 < clap.ci_high - clap.ci_low < 0.12  # about 2 x 1.96 x sqrt(.7 x .3 / 400) = 0.09
    assert grounded.n_compared == 0 and np.isnan(grounded.agreement) and grounded.n_unscored == 400
