"""The Nature CNN's weight gradients made on a second thread (qzoo/split_grads.py): autograd's numbers."""

import threading

import gymnasium as gym
import numpy as np
import pytest
import torch

from qzoo import split_grads
from qzoo.config import Config
from qzoo.networks import build_q_network
from qzoo.second_thread import SecondThread
from qzoo.split_grads import WeightGrads


@pytest.fixture
def one_torch_thread():
    """One torch thread, as a Nature-CNN run on a CPU has (qzoo.actor.learner_threads): with two, oneDNN splits a
    weight gradient's sum between them, and for half the channels it splits it otherwise (the check says so)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("bf16", [True, False], ids=["bf16", "fp32"])
@pytest.mark.parametrize("dueling,padding", [(False, "valid"), (True, "valid"), (True, "same")],
                         ids=["plain", "dueling", "dueling-same"])
def test_weight_gradients_on_the_second_thread_are_autograds_bit_for_bit(bf16, dueling, padding, one_torch_thread):
    config = Config(env_id="ALE/Pong-v5", bf16=str(bf16).lower(), dueling=dueling, conv_padding=padding)
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

    split_grads.HALVES_AGREE.clear()
    net.torso.weight_grads = WeightGrads(submit)
    try:
        first, q_first = grads()  # the first pass checks whether half the first layer's channels sum as the whole
        jobs_first = len(names)
        second, q_second = grads()  # ... and the second splits them between the threads (where they do)
    finally:
        pass_thread.close()
    assert torch.equal(q_first, q_autograd) and torch.equal(q_second, q_autograd)
    for split in (first, second):
        assert all(torch.equal(a, b) for a, b in zip(split, autograd, strict=True))
        assert all(g.dtype == torch.float32 and g.is_contiguous() for g in split)
    # the fully connected layer's and the two upper convolutions' on the second thread; the first layer's, made
    # last, on the calling thread (first pass), then half of it on each (on this machine the halves agree)
    assert jobs_first == 3 and set(names) == {"qzoo-second_0"}
    assert list(split_grads.HALVES_AGREE.values()) == [True]
    assert len(names) == 3 + 4
    assert net.torso.weight_grads._jobs == []  # collected


def test_where_half_the_channels_would_not_sum_as_the_whole_the_first_layer_is_made_whole(monkeypatch,
                                                                                          one_torch_thread):
    """A kernel for half the output channels one ulp off (as another CPU's could be): the check refuses the halves
    and the gradients stay autograd's."""
    config = Config(env_id="ALE/Pong-v5", bf16="true")
    torch.manual_seed(0)
    net = build_q_network(config, gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), 6)
    obs = torch.as_tensor(np.random.default_rng(1).integers(0, 256, (8, 4, 84, 84), dtype=np.uint8))

    def grads():
        for p in net.parameters():
            p.grad = None
        net(obs).sum().backward()
        if net.torso.weight_grads is not None:
            net.torso.weight_grads.collect()
        return [p.grad.clone() for p in net.parameters()]

    autograd = grads()
    real = split_grads.Conv.weight_grads

    def one_ulp_off(self, grad, x, channels=None, prepared=False):
        grad_w, grad_b = real(self, grad, x, channels, prepared)
        return (grad_w if channels is None else torch.nextafter(grad_w, torch.full_like(grad_w, 1e9))), grad_b

    monkeypatch.setattr(split_grads.Conv, "weight_grads", one_ulp_off)
    split_grads.HALVES_AGREE.clear()
    pass_thread = SecondThread()
    net.torso.weight_grads = WeightGrads(pass_thread.run)
    try:
        for _ in range(2):
            assert all(torch.equal(a, b) for a, b in zip(grads(), autograd, strict=True))
    finally:
        pass_thread.close()
    assert list(split_grads.HALVES_AGREE.values()) == [False]


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
