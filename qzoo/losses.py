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
