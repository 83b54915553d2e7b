"""Tuning objectives: how ``qzoo tune`` turns the final evaluations of a trial's seeds into the one number Optuna
maximises (``--objective``).

A trial trains several seeds (``--seeds``); each ends with an evaluation of its *final* model. With one seed every
objective is that seed's score. With several, the objective says what a good setting is:

* ``mean``:      mean_i s_i                      (the expected score; a setting that fails one seed in five can win)
* ``min``:       min_i s_i                       (the worst seed: a setting must work for every seed)
* ``mean-std``:  mean_i s_i - std_i s_i          (rewards a high mean and a small spread; std is the population
                                                   standard deviation sqrt(mean_i (s_i - mean)^2), so one seed
                                                   scores mean - 0)

The last two find settings whose final model is good on every seed rather than on average (RL Zoo's presets, tuned
on one seed, often collapse before the end on others).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence


def mean(scores: Sequence[float]) -> float:
    return math.fsum(scores) / len(scores)


def population_std(scores: Sequence[float]) -> float:
    m = mean(scores)
    return math.sqrt(math.fsum((s - m) ** 2 for s in scores) / len(scores))


OBJECTIVES: dict[str, Callable[[Sequence[float]], float]] = {
    "mean": mean,
    "min": min,
    "mean-std": lambda scores: mean(scores) - population_std(scores),
}
DESCRIPTIONS = {"mean": "the mean final evaluation", "min": "the lowest final evaluation",
                "mean-std": "the mean minus the standard deviation of the final evaluations"}


def aggregate(objective: str, scores: Sequence[float]) -> float:
    """The trial's value: ``objective`` (a key of :data:`OBJECTIVES`) over the seeds' final scores."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; allowed: {', '.join(OBJECTIVES)}")
    if not scores:
        raise ValueError("no scores to aggregate")
    return float(OBJECTIVES[objective](list(scores)))
