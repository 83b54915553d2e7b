"""The Nature CNN's weight gradients made on a second thread (qzoo/split_grads.py): autograd's numbers."""

import threading

import gymnasium as gym
import numpy as np
import pytest
import torch

from qzoo.config import Config
from qzoo.networks import build_q_network
from qzoo.second_thread import SecondThread
from qzoo.split_grads import WeightGrads


@pytest.mark.parametrize("bf16", [True, False], ids=["bf16", "fp32"])
@pytest.mark.parametrize("dueling", [False, True], ids=["plain", "dueling"])
def test_weight_gradients_on_the_second_thread_are_autograds_bit_for_bit(bf16, dueling):
    config = Config(env_id="ALE/Pong-v5", bf16=str(bf16).lower(), dueling=dueling)
    space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    torch.manual_seed(0)
    net = build_q_network(config, space, 6)
    rng = np.random.default_rng(0)
    obs = torch.as_tensor(rng.integers(0, 256, (8, 4, 84, 84), dtype=np.uint8))
    target = torch.as_tensor(rng.normal(size=8), dtype=torch.float32)
    action = torch.as_tensor(rng.integers(0, 6, 8))

    def grads() -> tuple[list[torch.Tensor], torch.Tensor]:
        for p in net.parameters():
            p.grad = None
        q = net(obs).gather(1, action[:, None]).squeeze(1)
        torch.nn.functional.smooth_l1_loss(q, target).backward()
        if net.torso.weight_grads is not None:
            net.torso.weight_grads.collect()
        return [p.grad.clone() for p in net.parameters()], q.detach()

    autograd, q_autograd = grads()
    pass_thread, names = SecondThread(), []

    def submit(job):
        def named():
            names.append(threading.current_thread().name)
            return job()
        return pass_thread.run(named)

    net.torso.weight_grads = WeightGrads(submit)
    try:
        split, q_split = grads()
    finally:
        pass_thread.close()
    assert torch.equal(q_split, q_autograd)
    assert all(torch.equal(a, b) for a, b in zip(split, autograd, strict=True))
    assert all(g.dtype == torch.float32 and g.is_contiguous() for g in split)
    # the fully connected layer's and the two upper convolutions' on the second thread (the first's is made last,
    # on the calling thread, which has nothing else left to do)
    assert names == ["qzoo-second_0"] * 3
    assert net.torso.weight_grads._jobs == []  # collected


def test_without_gradients_or_with_one_observation_the_forward_pass_is_the_plain_one():
    config = Config(env_id="ALE/Pong-v5", bf16="true")
    net = build_q_network(config, gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), 6)
    submitted = []
    net.torso.weight_grads = WeightGrads(lambda job: submitted.append(job))
    obs = torch.zeros(4, 4, 84, 84, dtype=torch.uint8)
    with torch.no_grad():
        net(obs)
    net(obs[:1]).sum().backward()  # (acting's single observation: float32, autograd's own backward)
    assert submitted == [] and net.torso.weight_grads._jobs == []
