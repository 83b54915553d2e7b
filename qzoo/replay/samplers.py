"""Samplers choose which stored rows form a batch."""

from __future__ import annotations

import numpy as np


class UniformSampler:
    """Rows drawn uniformly with replacement from the filled part of the storage, [0, size)."""

    def sample(self, size: int, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        if size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        return rng.integers(0, size, batch_size)
