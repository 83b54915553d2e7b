"""TD targets, hand-computed."""

import torch
from torch import nn

from qzoo.losses import q_learning_target, td_loss


def fixed_net(weight, bias):
    net = nn.Linear(2, 2)
    with torch.no_grad():
        net.weight.copy_(torch.tensor(weight))
        net.bias.copy_(torch.tensor(bias))
    return net


def test_dqn_and_double_dqn_targets_on_fixed_networks():
    # s_t = [1, 0] and [0, 1]; online picks a different action than the target net would.
    online = fixed_net([[1.0, 0.0], [2.0, 0.0]], [0.0, 0.0])  # Q_online([1,0]) = [1, 2]; Q_online([0,1]) = [0, 0]
    target = fixed_net([[5.0, 0.0], [3.0, 1.0]], [0.0, 0.0])  # Q_target([1,0]) = [5, 3]; Q_target([0,1]) = [0, 1]
    obs_t = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    reward = torch.tensor([1.0, -1.0])
    discount = torch.tensor([0.9, 0.9])
    q_target_t, q_online_t = target(obs_t), online(obs_t)

    dqn = q_learning_target(reward, discount, q_target_t)
    # DQN: 1 + 0.9 * max(5, 3) = 5.5 ; -1 + 0.9 * max(0, 1) = -0.1
    torch.testing.assert_close(dqn, torch.tensor([5.5, -0.1]))

    double = q_learning_target(reward, discount, q_target_t, q_online_t)
    # Double: online argmax on [1,0] is action 1 -> target value 3: 1 + 0.9*3 = 3.7
    #         online argmax on [0,1] ties at 0 -> action 0 -> target value 0: -1 + 0 = -1.0
    torch.testing.assert_close(double, torch.tensor([3.7, -1.0]))


def test_termination_cuts_the_bootstrap_but_truncation_does_not():
    q_target_t = torch.tensor([[2.0, 4.0], [2.0, 4.0]])
    reward = torch.tensor([1.0, 1.0])
    gamma = 0.99
    terminated = torch.tensor([1.0, 0.0])  # row 0 terminated; row 1 was truncated (not terminated)
    discount = gamma * (1.0 - terminated)
    y = q_learning_target(reward, discount, q_target_t)
    torch.testing.assert_close(y, torch.tensor([1.0, 1.0 + 0.99 * 4.0]))


def test_huber_and_mse_losses():
    q = torch.tensor([0.0, 0.0, 0.0])
    y = torch.tensor([0.5, 2.0, -3.0])
    # Huber (delta 1): 0.5*0.25 = 0.125 ; 2 - 0.5 = 1.5 ; 3 - 0.5 = 2.5
    torch.testing.assert_close(td_loss(q, y, "huber"), torch.tensor([0.125, 1.5, 2.5]))
    torch.testing.assert_close(td_loss(q, y, "mse"), torch.tensor([0.25, 4.0, 9.0]))
