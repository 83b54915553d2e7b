"""qzoo tune's objectives over a trial's seeds (qzoo/objectives.py), against values worked out by hand."""

import math

import pytest

from qzoo.tuning.objectives import OBJECTIVES, aggregate


def test_objectives_by_hand():
    scores = [500.0, 400.0, 300.0]
    # mean 400; deviations 100, 0, -100: population variance (10000 + 0 + 10000) / 3, std = 81.6497
    assert aggregate("mean", scores) == 400.0
    assert aggregate("min", scores) == 300.0
    assert aggregate("mean-std", scores) == pytest.approx(400.0 - math.sqrt(20000 / 3))
    assert aggregate("mean-std", scores) == pytest.approx(318.3503, abs=1e-4)
    # a setting that collapses on one seed of four: the mean hides it, min and mean-std do not
    collapsed = [500.0, 500.0, 500.0, 20.0]  # mean 380; deviations 120, 120, 120, -360: variance 43200, std 207.85
    assert aggregate("mean", collapsed) == 380.0
    assert aggregate("min", collapsed) == 20.0
    assert aggregate("mean-std", collapsed) == pytest.approx(380.0 - math.sqrt(43200), abs=1e-9)
    steady = [420.0, 430.0, 410.0, 420.0]  # mean 420, std sqrt(50) = 7.07: ranked above `collapsed` by min, mean-std
    assert aggregate("mean", steady) > aggregate("mean", collapsed)  # (400 vs 380 would flip this; here 420 > 380)
    assert aggregate("mean-std", steady) == pytest.approx(420.0 - math.sqrt(50.0))
    assert aggregate("mean-std", steady) > aggregate("mean-std", collapsed)


def test_one_seed_is_its_own_score_under_every_objective():
    for name in OBJECTIVES:
        assert aggregate(name, [-123.5]) == -123.5


def test_unknown_objective_and_no_scores_are_refused():
    with pytest.raises(ValueError, match="unknown objective 'median'; allowed: mean, min, mean-std"):
        aggregate("median", [1.0])
    with pytest.raises(ValueError, match="no scores"):
        aggregate("min", [])
