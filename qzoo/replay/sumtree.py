"""Array-backed binary sum tree: O(log N) priority updates and prefix-sum search, vectorised over a batch.

Layout: one float64 array ``tree`` of length 2P, P = the smallest power of two >= capacity. Node 1 is the root,
node k has children 2k and 2k+1, and leaf i (row i of the replay storage) lives at node P + i. Node 0 is unused.
Leaves i >= capacity (the padding) stay 0 forever, so they are never found.

Design decisions:
- ``update`` rewrites the changed leaves, then recomputes each ancestor level from its two children
  (parent = left + right) instead of adding deltas: no drift accumulates over millions of updates, and a
  parent whose leaves are all zero is exactly zero. Writing the same parent twice in one level is harmless
  (every write carries the same value), so levels need no deduplication.
- Duplicate indices in one ``update``: the last write wins. NumPy does not promise an order for repeated
  fancy-index assignment, so duplicates are dropped explicitly before writing.
- ``find`` descends from the root for all values at once (one numpy step per level). It goes right when
  value >= left sum, *unless the right subtree is empty*: with rounding, value - left could otherwise land in a
  zero subtree. Every node visited then has positive mass, so a zero-priority leaf is never returned.
- Values are clamped into [0, total) (to the float just below ``total``), so value == total (or a rounding
  overshoot) returns the last positive leaf instead of running off the end.
- No max-priority tracking here: that is the sampler's business.
"""

from __future__ import annotations

import numpy as np


class SumTree:
    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"capacity must be a positive int, got {capacity}")
        self.capacity = int(capacity)
        self.depth = (self.capacity - 1).bit_length()  # levels below the root
        self.n_leaves = 1 << self.depth  # P
        self.tree = np.zeros(2 * self.n_leaves, np.float64)

    @property
    def total(self) -> float:
        """Sum of all priorities (the root)."""
        return float(self.tree[1])

    def prefix_sum(self, n: int) -> float:
        """Sum of the first ``n`` leaves, p_0 + ... + p_{n-1}: add each left sibling on the path up from leaf n."""
        if n >= self.n_leaves:
            return self.total
        node, result = self.n_leaves + max(int(n), 0), 0.0
        while node > 1:
            if node % 2 == 1:  # a right child: everything in its left sibling comes before leaf n
                result += self.tree[node - 1]
            node //= 2
        return float(result)

    def __getitem__(self, indices) -> np.ndarray:
        return self.tree[self.n_leaves + self._check(indices)]

    def update(self, indices: np.ndarray, priorities: np.ndarray) -> None:
        """Set leaf ``indices[k]`` to ``priorities[k]`` (>= 0, finite); on a repeated index the last write wins."""
        indices = self._check(indices).ravel()
        priorities = np.broadcast_to(np.asarray(priorities, np.float64), indices.shape)
        if not np.all(np.isfinite(priorities)) or np.any(priorities < 0):
            raise ValueError("priorities must be finite and >= 0")
        if len(indices) > 1:  # keep the last occurrence of each index (a stable sort keeps equal ones in order)
            order = np.argsort(indices, kind="stable")
            sorted_indices = indices[order]
            keep = order[np.append(sorted_indices[1:] != sorted_indices[:-1], True)]
            indices, priorities = indices[keep], priorities[keep]
        nodes = indices + self.n_leaves
        self.tree[nodes] = priorities
        for _ in range(self.depth):
            nodes = nodes // 2
            self.tree[nodes] = self.tree.take(2 * nodes) + self.tree.take(2 * nodes + 1)

    def find(self, values: np.ndarray) -> np.ndarray:
        """For each value v in [0, total): the leaf i with cumsum[i-1] <= v < cumsum[i], cumsum[i] = sum p_0..p_i.

        Values outside [0, total) are clamped into it. Never returns a zero-priority leaf.
        """
        total = self.tree[1]
        if not total > 0:
            raise ValueError("cannot search a sum tree whose total priority is 0")
        values = np.clip(np.asarray(values, np.float64), 0.0, np.nextafter(total, 0.0))
        nodes = np.ones(values.shape, np.int64)
        for _ in range(self.depth):  # np.take: faster than fancy indexing on small index arrays
            left = 2 * nodes
            left_sum = self.tree.take(left)
            go_right = values >= left_sum
            go_right &= self.tree.take(left + 1) > 0
            values = values - left_sum * go_right
            nodes = left + go_right
        return nodes - self.n_leaves

    def _check(self, indices) -> np.ndarray:
        indices = np.asarray(indices, np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= self.capacity):
            raise IndexError(f"indices must lie in [0, {self.capacity})")
        return indices
