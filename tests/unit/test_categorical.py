"""C51 projection and cross-entropy loss, hand-computed on the support z = [-2, -1, 0, 1, 2] (dz = 1)."""

import math

import pytest
import torch

from qzoo.losses import categorical_loss, categorical_projection

Z = torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0])


def project(reward, discount, probs, support=Z):
    return categorical_projection(torch.tensor([reward]), torch.tensor([discount]), torch.tensor([probs]), support)[0]


def test_atoms_between_support_points_and_beyond_v_max():
    # r = 0.5, discount 1: Tz = [-1.5, -0.5, 0.5, 1.5, 2.5 -> 2]; each of the first four splits 0.2 into 0.1 + 0.1
    # atom 0: 0.1 ; atom 1: 0.1+0.1 ; atom 2: 0.1+0.1 ; atom 3: 0.1+0.1 ; atom 4: 0.1 + 0.2 (clamped atom)
    got = project(0.5, 1.0, [0.2] * 5)
    torch.testing.assert_close(got, torch.tensor([0.1, 0.2, 0.2, 0.2, 0.3]))


def test_atoms_below_v_min_and_exactly_on_atoms():
    # r = -1, discount 1: Tz = [-3 -> -2, -2, -1, 0, 1]: every b is an integer, no splitting
    got = project(-1.0, 1.0, [0.1, 0.2, 0.3, 0.4, 0.0])
    torch.testing.assert_close(got, torch.tensor([0.3, 0.3, 0.4, 0.0, 0.0]))


def test_shrinking_discount():
    # r = 0, discount 0.5: Tz = [-1, -0.5, 0, 0.5, 1] -> b = [1, 1.5, 2, 2.5, 3]
    # atom 1: 0.2 + 0.1 ; atom 2: 0.1 + 0.2 + 0.1 ; atom 3: 0.1 + 0.2
    torch.testing.assert_close(project(0.0, 0.5, [0.2] * 5), torch.tensor([0.0, 0.3, 0.4, 0.3, 0.0]))


@pytest.mark.parametrize("reward, expected", [
    (0.25, [0.0, 0.0, 0.75, 0.25, 0.0]),  # b = 2.25: 0.75 on z=0, 0.25 on z=1
    (1.0, [0.0, 0.0, 0.0, 1.0, 0.0]),  # exactly on an atom
    (2.0, [0.0, 0.0, 0.0, 0.0, 1.0]),  # exactly on v_max
    (-2.0, [1.0, 0.0, 0.0, 0.0, 0.0]),  # exactly on v_min
    (5.0, [0.0, 0.0, 0.0, 0.0, 1.0]),  # beyond v_max: clamped
    (-7.0, [1.0, 0.0, 0.0, 0.0, 0.0]),  # below v_min: clamped
])
def test_terminal_transition_puts_all_mass_next_to_the_reward(reward, expected):
    got = project(reward, 0.0, [0.1, 0.2, 0.3, 0.4, 0.0])  # the bootstrap distribution does not matter
    torch.testing.assert_close(got, torch.tensor(expected))


def test_non_unit_spacing():
    support = torch.linspace(-10.0, 10.0, 5)  # [-10, -5, 0, 5, 10], dz = 5
    # all mass on z = 5; r = 1, discount 0.9: Tz = 1 + 4.5 = 5.5 -> b = 15.5 / 5 = 3.1 -> 0.9 on atom 3, 0.1 on atom 4
    got = project(1.0, 0.9, [0.0, 0.0, 0.0, 1.0, 0.0], support)
    torch.testing.assert_close(got, torch.tensor([0.0, 0.0, 0.0, 0.9, 0.1]))


def test_batch_mass_and_mean_are_conserved_and_match_the_triangle_kernel_formula():
    torch.manual_seed(0)
    batch, n_atoms = 64, 51
    support = torch.linspace(-10.0, 10.0, n_atoms, dtype=torch.float64)
    probs = torch.softmax(torch.randn(batch, n_atoms, dtype=torch.float64), dim=1)
    reward = torch.empty(batch, dtype=torch.float64).uniform_(-15.0, 15.0)
    discount = torch.tensor([0.0, 0.99, 0.99**3, 1.0], dtype=torch.float64).repeat(batch // 4)
    got = categorical_projection(reward, discount, probs, support)

    assert got.shape == (batch, n_atoms) and got.dtype == torch.float64
    assert (got >= 0).all()
    torch.testing.assert_close(got.sum(dim=1), torch.ones(batch, dtype=torch.float64))
    # linear splitting keeps the mean: sum_i m_i z_i = sum_j p_j clamp(r + discount z_j)
    tz = (reward[:, None] + discount[:, None] * support).clamp(-10.0, 10.0)
    torch.testing.assert_close(got @ support, (probs * tz).sum(dim=1))
    # independent O(N^2) form (dqn_zoo / rlax): m_i = sum_j p_j max(0, 1 - |Tz_j - z_i| / dz)
    dz = 20.0 / (n_atoms - 1)
    kernel = (1.0 - (tz[:, None, :] - support[None, :, None]).abs() / dz).clamp(min=0.0)  # (B, i, j)
    torch.testing.assert_close(got, (kernel * probs[:, None, :]).sum(dim=2))


def test_categorical_loss_is_cross_entropy():
    # softmax([0, ln 3]) = [0.25, 0.75]; target [0.5, 0.5]: -(0.5 ln 0.25 + 0.5 ln 0.75) = 0.5 (1.386294 + 0.287682)
    # row 2: uniform logits over 4 atoms, one-hot target: -ln 0.25 = ln 4 = 1.386294
    logits = torch.tensor([[0.0, math.log(3.0), -1e9, -1e9], [0.0, 0.0, 0.0, 0.0]], requires_grad=True)
    target = torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]], requires_grad=True)
    loss = categorical_loss(logits, target)
    torch.testing.assert_close(loss, torch.tensor([0.836988, 1.386294]))
    loss.sum().backward()
    # d loss / d logits = softmax - target: [0.25 - 0.5, 0.75 - 0.5, 0, 0] ; [0.25, 0.25 - 1, 0.25, 0.25]
    torch.testing.assert_close(logits.grad, torch.tensor([[-0.25, 0.25, 0.0, 0.0], [0.25, -0.75, 0.25, 0.25]]))
    assert target.grad is None  # the target is a constant
