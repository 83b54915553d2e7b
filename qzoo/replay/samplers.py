"""Samplers choose which stored rows form a batch.

Design decisions (:class:`PrioritizedSampler`, proportional PER, Schaul et al. 2016):
- The sum tree stores p^alpha, not p, so P(i) = tree[i] / sum_k tree[k] is read directly and the search is a
  plain prefix-sum search. ``max_priority`` tracks the raw p = |delta| + eps; new rows get max_priority^alpha.
- Only rows [0, size) are sampled. Rows never passed to ``on_add`` have priority 0, which the sum tree never
  returns; in addition the stratified draws cover only [0, prefix_sum(size)), the mass of the filled rows, so a
  stale priority beyond ``size`` (e.g. from a restored tree) is not hit either, and P(i) is relative to the
  filled rows. The circular storage fills rows 0, 1, 2, ... before it wraps, so [0, size) is the filled part.
- Importance weights are normalised by their maximum *over the sampled batch* (as dqn_zoo and Dopamine do),
  not over the whole buffer (OpenAI baselines keeps a min-tree for that). Weights are therefore <= 1 with at
  least one weight equal to 1, and no second tree is needed.
- ``sample`` returns (indices, weights); :class:`UniformSampler` returns indices only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np

from qzoo.replay.sumtree import SumTree


@runtime_checkable
class Sampler(Protocol):
    """Which stored rows form a batch (:class:`UniformSampler`, :class:`PrioritizedSampler`; as Dopamine's
    ``SamplingDistribution``): told of the rows a storage adds and removes, asked for rows and weights."""

    uses_priorities: bool  # whether a batch's TD errors must come back (update_priorities) before the next draw

    def on_add(self, rows: np.ndarray) -> None: ...

    def on_remove(self, rows: np.ndarray) -> None: ...

    def sample(self, storage, batch_size: int, rng: np.random.Generator,
               step: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
        """(rows, importance weights or None) of one batch."""

    def update_priorities(self, indices: np.ndarray, td_errors: np.ndarray) -> None: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class UniformSampler:
    """Rows drawn uniformly with replacement from the filled part of the storage, [0, size). No importance
    weights (None: every sample counts the same) and no priorities to keep."""

    uses_priorities = False

    def on_add(self, rows: np.ndarray) -> None:
        pass

    def on_remove(self, rows: np.ndarray) -> None:
        pass

    def sample(self, storage, batch_size: int, rng: np.random.Generator, step: int = 0) -> tuple[np.ndarray, None]:
        """The storage knows which of its rows are sampleable: it draws them."""
        return storage.sample_uniform(batch_size, rng), None

    def update_priorities(self, indices: np.ndarray, td_errors: np.ndarray) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class PrioritizedSampler:
    """Proportional prioritised sampling: P(i) = p_i^alpha / sum_k p_k^alpha, with p_i = |delta_i| + eps.

    Importance weights  w_i = (size * P(i))^(-beta) / max_{j in batch} w_j,  beta = beta_schedule(step).
    """

    uses_priorities = True

    def __init__(self, capacity: int, alpha: float, beta_schedule: Callable[[int], float], eps: float = 1e-6):
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        if eps <= 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.capacity = capacity
        self.alpha = alpha
        self.beta_schedule = beta_schedule
        self.eps = eps
        self.tree = SumTree(capacity)
        self.max_priority = 1.0  # largest p = |delta| + eps seen so far (raw, before ** alpha)

    def on_add(self, rows: np.ndarray) -> None:
        """Rows just written to storage: give them the largest priority seen so far, so each is replayed soon."""
        rows = np.asarray(rows, np.int64)
        self.tree.update(rows, np.full(rows.shape, self.max_priority**self.alpha))

    def on_remove(self, rows: np.ndarray) -> None:
        """Rows that stopped holding a valid transition: priority 0, never drawn again until re-added."""
        if len(rows):
            self.tree.update(np.asarray(rows, np.int64), np.zeros(len(rows)))

    def sample(self, storage, batch_size: int, rng: np.random.Generator, step: int) -> tuple[np.ndarray, np.ndarray]:
        """Draw from the first ``storage.n_rows`` rows of the tree (rows without a valid transition hold 0)."""
        return self.sample_rows(storage.n_rows, batch_size, rng, step)

    def sample_rows(self, size: int, batch_size: int, rng: np.random.Generator,
                    step: int) -> tuple[np.ndarray, np.ndarray]:
        """Stratified draw: split [0, mass) into ``batch_size`` equal segments and draw once, uniformly, in each.

        Returns (indices int64, importance weights float32), both of shape (batch_size,).
        """
        if size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        mass = self.tree.prefix_sum(size)  # mass of rows [0, size): equals the total once the buffer is full
        if not mass > 0:
            raise ValueError("all filled rows have priority 0 (were they passed to on_add?)")
        segment = mass / batch_size
        values = (np.arange(batch_size) + rng.random(batch_size)) * segment
        indices = self.tree.find(np.minimum(values, np.nextafter(mass, 0.0)))
        probs = self.tree[indices] / mass  # P(i)
        beta = self.beta_schedule(step)
        weights = (size * probs) ** (-beta)
        return indices, (weights / weights.max()).astype(np.float32)

    def update_priorities(self, indices: np.ndarray, td_errors: np.ndarray) -> None:
        """p_i = |delta_i| + eps;  the tree stores p_i^alpha.  A repeated index keeps its last TD error."""
        priorities = np.abs(np.asarray(td_errors, np.float64)) + self.eps
        if not np.all(np.isfinite(priorities)):
            raise ValueError("TD errors must be finite")
        self.max_priority = max(self.max_priority, float(priorities.max(initial=0.0)))
        self.tree.update(indices, priorities**self.alpha)

    def state_dict(self) -> dict:
        return {"tree": self.tree.tree.copy(), "max_priority": self.max_priority}

    def load_state_dict(self, state: dict) -> None:
        tree = np.asarray(state["tree"], np.float64)
        if tree.shape != self.tree.tree.shape:
            raise ValueError(f"sum tree of shape {tree.shape} does not fit capacity {self.capacity}")
        self.tree.tree[:] = tree
        self.max_priority = float(state["max_priority"])
