"""Pure TD-target and loss functions. No state; every equation is written above its code.

Notation (dqn_zoo): a transition is (s_tm1, a_tm1, r_t, discount_t, s_t) where
discount_t = gamma^n * (1 - terminated_t): zero only when the episode really terminated, never on a time
limit truncation, so a truncated episode still bootstraps from its true final observation s_t.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def q_learning_target(reward_t: torch.Tensor, discount_t: torch.Tensor, q_target_t: torch.Tensor,
                      q_select_t: torch.Tensor | None = None) -> torch.Tensor:
    """TD target  y = r_t + discount_t * Q_target(s_t, argmax_a Q_select(s_t, a)).

    DQN (Mnih et al. 2015):     Q_select = Q_target, i.e.  y = r + discount * max_a Q_target(s_t, a)
    Double DQN (van Hasselt 2016): Q_select = Q_online: the online net picks the action, the target net rates it.
    q_*_t have shape (batch, n_actions); reward_t and discount_t have shape (batch,).
    """
    if q_select_t is None:
        next_value = q_target_t.max(dim=1).values
    else:
        best_action = q_select_t.argmax(dim=1, keepdim=True)
        next_value = q_target_t.gather(1, best_action).squeeze(1)
    return reward_t + discount_t * next_value


def td_loss(q_tm1: torch.Tensor, target: torch.Tensor, kind: str = "huber") -> torch.Tensor:
    """Element-wise loss of the TD error  delta = y - Q(s_tm1, a_tm1)  (Huber with threshold 1, or squared)."""
    if kind == "huber":
        return F.smooth_l1_loss(q_tm1, target, reduction="none")
    if kind == "mse":
        return F.mse_loss(q_tm1, target, reduction="none")
    raise ValueError(f"unknown loss {kind!r}")


def td_loss_grad(q_tm1: torch.Tensor, target: torch.Tensor, scale: torch.Tensor | float,
                 kind: str = "huber") -> torch.Tensor:
    """d/dQ(s_tm1, a_tm1) of  sum_i scale_i * td_loss_i, element-wise (B,), with delta = Q - y:

        Huber (threshold 1):  clamp(delta, -1, 1) * scale        squared:  2 delta * scale

    ``scale`` is what the loss's reduction puts on each sample: 1/B for the mean, w_i / B with importance
    weights. The same arithmetic as autograd's backward of :func:`td_loss` (tested equal)."""
    delta = q_tm1 - target
    if kind == "huber":
        return delta.clamp_(-1.0, 1.0).mul_(scale)
    if kind == "mse":
        return delta.mul_(2.0).mul_(scale)
    raise ValueError(f"unknown loss {kind!r}")


def categorical_projection(reward_t: torch.Tensor, discount_t: torch.Tensor, probs_t: torch.Tensor,
                           support: torch.Tensor) -> torch.Tensor:
    """C51 projection (Bellemare et al. 2017) of the target distribution onto the fixed support z_0 < ... < z_{N-1}.

    Atom j of the bootstrap distribution moves to  Tz_j = clamp(r + discount * z_j, v_min, v_max),  i.e. to the
    fractional position  b_j = (Tz_j - v_min) / dz,  dz = (v_max - v_min) / (N - 1), and its mass p_j is split
    between the neighbouring atoms l = floor(b_j) and l + 1 in proportion to closeness:

        m_l += p_j * (l + 1 - b_j),    m_{l+1} += p_j * (b_j - l)

    l is clamped to N - 2, so b_j = N - 1 (Tz_j = v_max) puts everything on the last atom, and an integer b_j
    puts everything on atom b_j: the "l == u" case needs no special branch and no mass is lost.
    discount_t = 0 (terminal) collapses every atom onto r, i.e. onto the one or two atoms around clamp(r).
    Shapes: reward_t, discount_t (B,); probs_t (B, N), already taken at the bootstrap action; support (N,),
    evenly spaced. Returns (B, N), each row summing to the row sum of probs_t (1 for distributions).
    """
    n_atoms = support.shape[0]
    v_min, v_max = support[0], support[-1]
    delta_z = (v_max - v_min) / (n_atoms - 1)
    tz = (reward_t[:, None] + discount_t[:, None] * support[None, :]).clamp(v_min, v_max)
    b = (tz - v_min) / delta_z
    lower = b.floor().clamp(0, n_atoms - 2)
    upper_weight = (b - lower).clamp(0.0, 1.0)  # guards rounding of b just outside [0, N-1]
    lower = lower.long()
    projected = torch.zeros_like(probs_t)
    projected.scatter_add_(1, lower, probs_t * (1.0 - upper_weight))
    projected.scatter_add_(1, lower + 1, probs_t * upper_weight)
    return projected


def categorical_loss(logits_tm1_a: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy  -sum_i m_i log softmax(logits)_i  of the online distribution at a_tm1, (B,).

    logits_tm1_a (B, N) are the online net's logits at the taken action; target_probs (B, N) the projected target
    (no gradient flows into it).
    """
    return -(target_probs.detach() * F.log_softmax(logits_tm1_a, dim=-1)).sum(dim=-1)
