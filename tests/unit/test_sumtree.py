"""SumTree: totals, updates, prefix-sum search against hand-computed cumulative sums."""

import numpy as np
import pytest

from qzoo.replay.sumtree import SumTree


def tree_with(priorities, capacity=None):
    tree = SumTree(capacity or len(priorities))
    tree.update(np.arange(len(priorities)), np.asarray(priorities, np.float64))
    return tree


def test_capacity_not_a_power_of_two_is_padded():
    tree = SumTree(5)
    assert tree.n_leaves == 8 and tree.tree.shape == (16,)
    assert SumTree(8).n_leaves == 8 and SumTree(9).n_leaves == 16 and SumTree(1).n_leaves == 1


def test_total_and_updates():
    tree = tree_with([1.0, 2.0, 3.0, 4.0, 0.0])
    assert tree.total == 10.0  # 1+2+3+4+0
    np.testing.assert_array_equal(tree[np.array([0, 3, 4])], [1.0, 4.0, 0.0])
    tree.update(np.array([1]), np.array([5.0]))
    assert tree.total == 13.0  # 1+5+3+4+0
    tree.update(np.array([4, 0]), np.array([0.5, 0.0]))
    assert tree.total == 12.5  # 0+5+3+4+0.5
    # internal nodes hold the sums of their children: leaves 0..3 = [0,5,3,4] -> node 2 = 12; leaf 4 -> node 3 = 0.5
    assert tree.tree[2] == 12.0 and tree.tree[3] == 0.5


def test_duplicate_indices_last_write_wins():
    tree = tree_with([1.0, 1.0, 1.0])
    tree.update(np.array([2, 0, 2, 2]), np.array([7.0, 3.0, 8.0, 9.0]))
    np.testing.assert_array_equal(tree[np.arange(3)], [3.0, 1.0, 9.0])
    assert tree.total == 13.0  # 3+1+9


def test_find_hand_computed():
    tree = tree_with([1.0, 2.0, 3.0, 4.0, 0.0])  # cumsum = [1, 3, 6, 10, 10]
    values = np.array([0.0, 0.999, 1.0, 2.5, 3.0, 5.99, 6.0, 9.99])
    np.testing.assert_array_equal(tree.find(values), [0, 0, 1, 1, 2, 2, 3, 3])
    # value == total, beyond it, or negative: clamped into [0, total); leaf 4 (priority 0) is never returned
    np.testing.assert_array_equal(tree.find(np.array([10.0, 100.0, -1.0])), [3, 3, 0])


def test_find_skips_zero_priorities_in_the_middle():
    tree = tree_with([0.0, 2.0, 0.0, 3.0])  # cumsum = [0, 2, 2, 5]
    np.testing.assert_array_equal(tree.find(np.array([0.0, 1.999, 2.0, 4.9])), [1, 1, 3, 3])


def test_prefix_sum():
    tree = tree_with([1.0, 2.0, 3.0, 4.0, 0.5])
    # sums of the first n leaves: 0, 1, 1+2, 1+2+3, 1+2+3+4, 10.5
    assert [tree.prefix_sum(n) for n in range(6)] == [0.0, 1.0, 3.0, 6.0, 10.0, 10.5]
    assert tree.prefix_sum(8) == 10.5


def test_capacity_one():
    tree = tree_with([2.5])
    assert tree.total == 2.5
    np.testing.assert_array_equal(tree.find(np.array([0.0, 2.4, 2.5])), [0, 0, 0])


def test_find_matches_numpy_searchsorted_on_random_integer_priorities():
    rng = np.random.default_rng(0)
    priorities = rng.integers(0, 5, 1000).astype(np.float64)  # integers: cumsums are exact in float64
    tree = tree_with(priorities)
    cumsum = np.cumsum(priorities)
    values = rng.uniform(0, cumsum[-1], 10_000)
    values[:200] = rng.integers(0, int(cumsum[-1]), 200)  # values exactly on boundaries
    # reference: the leaf i with cumsum[i-1] <= v < cumsum[i]
    np.testing.assert_array_equal(tree.find(values), np.searchsorted(cumsum, values, side="right"))


def test_sampling_proportions_chi_square():
    priorities = np.array([1.0, 2.0, 3.0, 4.0, 0.0, 5.0, 5.0])  # capacity 7, total 20
    tree = tree_with(priorities)
    rng = np.random.default_rng(123)
    n = 100_000
    counts = np.bincount(tree.find(rng.uniform(0, tree.total, n)), minlength=7)
    assert counts[4] == 0  # zero priority: never found
    expected = n * priorities / 20.0  # [5000, 10000, 15000, 20000, 0, 25000, 25000]
    nonzero = expected > 0
    chi2 = (((counts - expected)[nonzero]) ** 2 / expected[nonzero]).sum()
    assert chi2 < 20.52  # chi-square, 5 degrees of freedom, p = 0.001


def test_zero_priorities_never_found_even_with_extreme_magnitudes():
    # tiny and huge priorities next to zeros: rounding in the descent must not land on a zero leaf
    priorities = np.zeros(37)
    priorities[[1, 5, 6, 20, 36]] = [1e-300, 1e300, 3e-17, 1.0, 1e-12]
    tree = tree_with(priorities)
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.uniform(0, tree.total, 100_000), [0.0, tree.total, np.nextafter(tree.total, 0)]])
    found = tree.find(values)
    assert np.all(priorities[found] > 0)


def test_invalid_inputs():
    tree = SumTree(4)
    with pytest.raises(ValueError):
        tree.find(np.array([0.0]))  # total 0
    with pytest.raises(ValueError):
        tree.update(np.array([0]), np.array([-1.0]))
    with pytest.raises(ValueError):
        tree.update(np.array([0]), np.array([np.nan]))
    with pytest.raises(IndexError):
        tree.update(np.array([4]), np.array([1.0]))  # padding leaf, beyond capacity
    with pytest.raises(ValueError):
        SumTree(0)


def test_rounding_at_the_top_does_not_run_into_trailing_zero_leaves():
    # Found by search: without the "right subtree is empty" guard, values just below the total descend
    # (by rounding of value - left_sum) into the empty leaves 6, 7.
    priorities = np.array([0.0, 0.0, 0.48884954683346427, 0.0, 0.7756911881018284, 0.308857362719261, 0.0, 0.0])
    tree = tree_with(priorities)
    cumsum = np.cumsum(priorities)
    values = np.concatenate([cumsum, np.nextafter(cumsum, 0.0), [np.nextafter(tree.total, 0.0)]])
    found = tree.find(values)
    assert np.all(priorities[found] > 0)
    assert found[-1] == 5  # the last positive leaf
