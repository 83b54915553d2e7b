"""Schedules: validated callables of the step (exploration epsilon, learning rate, PER's beta)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class LinearSchedule:
    """``start`` until step ``delay``, moving linearly to ``end`` at step ``delay + duration``, then constant.

    value(t) = start + (end - start) * min(1, max(t - delay, 0) / duration);  duration 0: ``end`` from step ``delay``
    (``start`` before it).
    """

    start: float
    end: float
    duration: int
    delay: int = 0

    def __post_init__(self):
        if self.duration < 0 or self.delay < 0:
            raise ValueError(f"duration and delay must be >= 0, got {self.duration} and {self.delay}")

    def __call__(self, step: int) -> float:
        step -= self.delay
        if self.duration == 0:
            return self.end if step >= 0 else self.start
        fraction = min(max(step, 0) / self.duration, 1.0)
        return self.start + fraction * (self.end - self.start)


def epsilon_schedule(initial: float, final: float, fraction: float, total_steps: int,
                     delay: int = 0) -> LinearSchedule:
    """SB3/RL Zoo's exploration schedule: decay over ``fraction`` of the run, starting at step ``delay`` (0 as SB3;
    Dopamine holds the initial epsilon through its warm-up, min_replay_history steps, and decays after it)."""
    return LinearSchedule(initial, final, int(fraction * total_steps), delay)


def learning_rate_schedule(kind: str, learning_rate: float, total_steps: int) -> LinearSchedule:
    """'constant': ``learning_rate`` throughout; 'linear': ``learning_rate`` at step 0 down to 0 at
    ``total_steps`` (SB3's ``linear_schedule``, RL Zoo's ``lin_`` prefix, on environment steps)."""
    if kind == "linear":
        return LinearSchedule(learning_rate, 0.0, total_steps)
    return LinearSchedule(learning_rate, learning_rate, 0)


@dataclass(frozen=True)
class ExponentialSchedule:
    """``start`` at t = 0, approaching ``end`` exponentially (the Hugging Face Deep RL course's epsilon decay,
    with t counting episodes)::

        value(t) = end + (start - end) * exp(-rate * t)
    """

    start: float
    end: float
    rate: float

    def __post_init__(self):
        if self.rate < 0:
            raise ValueError(f"rate must be >= 0, got {self.rate}")

    def __call__(self, t: int) -> float:
        return self.end + (self.start - self.end) * math.exp(-self.rate * max(t, 0))
