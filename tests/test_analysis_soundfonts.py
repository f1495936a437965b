"""The leave-one-soundfont-out protocol (train/diagnostics/analysis_soundfonts.py): which clips fit and
which score."""

import numpy as np

from musiccap.analysis import DspFeatures
from train.analysis_probes import Evidence
from train.analysis_vectors import fold_of
from train.diagnostics.analysis_soundfonts import FIT_HALF, SCORE_HALF, soundfont_folds


def _evidence(renderers: list[list[str]]) -> Evidence:
    n = len(renderers)
    attributes = [{"renderers": r, "main_renderer": r[0]} for r in renderers]
    dsp = [DspFeatures.from_vector(np.ones(sum(DspFeatures.SIZES.values()))) for _ in range(n)]
    return Evidence([f"c{i}" for i in range(n)], attributes, np.zeros((n, 50)), np.zeros((n, 4)),
                    np.zeros((n, 3, 200)), dsp)  # fmt: skip


def test_a_held_out_soundfont_is_never_fitted_on_and_scored_pieces_are_never_fitted_on():
    rng = np.random.default_rng(0)
    fonts = ["a.sf2", "b.sf2", "c.sf2"]
    renderers = [list(rng.choice(fonts, rng.integers(1, 3))) for _ in range(400)]
    pieces = [f"piece-{i // 4}" for i in range(400)]  # four excerpts of each piece
    folds = list(soundfont_folds(_evidence(renderers), pieces))
    assert [font for font, _, _ in folds] == fonts
    for font, fit, score in folds:
        assert len(fit) and len(score)
        assert all(font not in renderers[i] and fold_of(pieces[i], 2) == FIT_HALF for i in fit)
        assert all(set(renderers[i]) == {font} and fold_of(pieces[i], 2) == SCORE_HALF for i in score)
        assert not {pieces[i] for i in fit} & {pieces[i] for i in score}
