"""The MinAtar CNN's fast path (qzoo.fastpath_cnn.MinAtarPhase with CenteredRMSpropStep) computes what the autograd
path computes: QAgent.learn through the phase loop and QAgent.update batch by batch (autograd, torch's RMSprop) give
bit-identical weights, optimizer state and acting."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

import qzoo.fastpath_cnn
import qzoo.native
from qzoo.agent import build_agent
from qzoo.config import Config
from qzoo.envs import check_env
from qzoo.fastpath_cnn import CenteredRMSpropStep, MinAtarPhase
from qzoo.replay import make_replay

ENV = "MinAtar/Breakout-v1"  # grids (4, 10, 10), 3 actions
RMSPROP = {"optimizer": "rmsprop", "optimizer_eps": 0.01}


def agent_for(**kw):
    config = Config(env_id=ENV, network="minatar", **{**RMSPROP, **kw})
    info = check_env(config)
    torch.manual_seed(0)
    return build_agent(config, info.observation_space, info.n_actions, torch.device("cpu"))


def filled_replays(config, n_copies=2, steps=300):
    """Identical replay buffers of random 0/1 grids (same transitions, same sampling seed), with rewards that make
    some TD errors exceed the Huber threshold."""
    space = check_env(config).observation_space
    replays = [make_replay(config, space) for _ in range(n_copies)]
    rng = np.random.default_rng(1)
    for _ in range(steps):
        obs, nxt = (rng.random((2, 1, *space.shape)) < 0.2).astype(np.uint8)
        action, reward = rng.integers(0, 3, 1), rng.normal(scale=2.0, size=1).astype(np.float32)
        terminated = rng.random(1) < 0.1
        for replay in replays:
            replay.add(obs, action, reward, nxt, terminated, np.zeros(1, bool))
    return replays


def assert_same_state(fast, slow):
    for a, b in zip(fast.q_net.parameters(), slow.q_net.parameters(), strict=True):
        assert torch.equal(a, b)
    fs, ss = fast.optimizer.state_dict()["state"], slow.optimizer.state_dict()["state"]
    assert fs.keys() == ss.keys()
    for i in fs:
        for key in ("step", "square_avg", "grad_avg"):
            assert torch.equal(fs[i][key], ss[i][key]), (i, key)


@pytest.mark.parametrize("kw", [{}, {"double": True}, {"loss": "mse"}, {"n_step": 3, "double": True},
                                {"max_grad_norm": 0.05}, {"max_grad_norm": 0.5}])
@pytest.mark.parametrize("n_updates", [1, 4])
@pytest.mark.parametrize("kernels", ["compiled", "torch"])
def test_a_minatar_phase_equals_its_updates_one_by_one(kw, n_updates, kernels, monkeypatch):
    """Five phases through MinAtarPhase and through QAgent.update (autograd, optimizer.step()), the target synced
    after the second and the fourth: bit-identical weights, RMSprop moments and step counts, the same update count
    and generator state, the logged loss and mean Q equal up to the order of summation; the per-batch path goes on
    from where the phase loop left off. A learning rate of 1e-3 moves the online net enough for Double DQN's argmax
    to differ from the target net's; max_grad_norm 0.05 clips every update, 0.5 some, the default 10 none (test
    below). The phase's RMSprop step and convolution gradient run compiled (qzoo/csrc/minatar.cpp, built by the
    setup; on this machine they must pass their check against torch) or as torch's calls (QZOO_NATIVE=0)."""
    if kernels == "torch":
        monkeypatch.setenv(qzoo.native.ENV, "0")
    fast, slow = agent_for(learning_rate=1e-3, **kw), agent_for(learning_rate=1e-3, **kw)
    slow._phase = None
    assert isinstance(fast._phase, MinAtarPhase) and fast._phase.double == kw.get("double", False)
    replays = filled_replays(Config(env_id=ENV, **kw))
    for i in range(5):
        fast.learn(replays[0], n_updates, 32, 300)
        slow.learn(replays[1], n_updates, 32, 300)
        if i == 1:  # which kernels ran (the first step creates the optimizer state through optimizer.step())
            native = qzoo.native.load()
            assert (native is not None) == (kernels == "compiled")
            compiled_step = fast._rmsprop._step is not None and fast._rmsprop._step == native.centered_rmsprop
            assert compiled_step == (kernels == "compiled")
            conv_grad = fast._phase.conv_grad_for(torch.zeros(32, 4, 10, 10))
            assert (native is not None and conv_grad == native.conv3x3_weight_grad) == (kernels == "compiled")
            for batch in (32, 1):  # (a phase's batches; acting) oneDNN sums them in different orders
                compiled_conv = fast._phase.conv_for(torch.zeros(batch, 4, 10, 10)) is not torch.conv2d
                assert compiled_conv == (kernels == "compiled")
        if i in (1, 3):  # target syncs between phases (the phase keeps a copy of the target's fc weight per sync)
            fast.sync_target()
            slow.sync_target()
    assert_same_state(fast, slow)
    f, s = fast.pop_metrics(), slow.pop_metrics()
    assert f["interval_updates"] == s["interval_updates"] == 5 * n_updates == fast.updates
    assert f["loss"] == pytest.approx(s["loss"], rel=1e-5) and f["q_mean"] == pytest.approx(s["q_mean"], rel=1e-5)
    assert replays[0].rng.bit_generator.state == replays[1].rng.bit_generator.state
    batch = replays[0].sample(32, 300)
    torch.testing.assert_close(fast.update(batch), slow.update(batch), rtol=0, atol=0)
    assert_same_state(fast, slow)
    obs = replays[0].sample(64, 300).obs_tm1  # acting: the phase's forward picks the module's actions
    assert np.array_equal(fast.greedy(obs), slow.greedy(obs))
    with torch.no_grad():
        assert torch.equal(fast._phase.q_values(torch.as_tensor(obs)), slow.q_net(torch.as_tensor(obs)))


@pytest.mark.parametrize("max_grad_norm, clipped", [(0.05, "all"), (0.5, "some"), (10.0, "none")])
def test_the_clipping_cases_the_minatar_phase_is_compared_in(max_grad_norm, clipped, clip_norms):
    """How many of the 20 updates of the comparison above (4 per phase) have a gradient norm above
    max_grad_norm (on the reference path, before clipping)."""
    agent = agent_for(learning_rate=1e-3, max_grad_norm=max_grad_norm)
    agent._phase = None
    norms = clip_norms
    replay = filled_replays(Config(env_id=ENV), n_copies=1)[0]
    for _ in range(5):
        agent.learn(replay, 4, 32, 300)
    above = sum(n > max_grad_norm for n in norms)
    assert len(norms) == 20
    assert {"all": above == 20, "some": 0 < above < 20, "none": above == 0}[clipped], above


def test_the_phase_survives_a_resumed_optimizer():
    """After load_state_dict (new moment tensors) the phase loop gathers them again and goes on as the
    per-batch path does."""
    fast, slow = agent_for(learning_rate=1e-3), agent_for(learning_rate=1e-3)
    slow._phase = None
    replays = filled_replays(Config(env_id=ENV))
    for agent, replay in ((fast, replays[0]), (slow, replays[1])):
        agent.learn(replay, 4, 32, 300)
        agent.learn(replay, 4, 32, 300)
    fast.load_state_dict(copy.deepcopy(slow.state_dict()))
    for agent, replay in ((fast, replays[0]), (slow, replays[1])):
        agent.learn(replay, 4, 32, 300)
    assert_same_state(fast, slow)


def test_centered_rmsprop_step_equals_optimizer_step():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 3))  # a 3-element bias: a vector's tail
    twin = copy.deepcopy(net)
    opt = torch.optim.RMSprop(net.parameters(), lr=1e-2, alpha=0.95, eps=0.01, centered=True, foreach=True)
    twin_opt = torch.optim.RMSprop(twin.parameters(), lr=1e-2, alpha=0.95, eps=0.01, centered=True, foreach=True)
    params = list(twin.parameters())
    fast = CenteredRMSpropStep.of(twin_opt, params)
    assert fast is not None
    sizes = [p.numel() for p in params]
    flat = torch.zeros(sum(sizes))
    grads = [g.view_as(p) for g, p in zip(flat.split(sizes), params, strict=True)]
    x = torch.randn(16, 3)
    for i in range(6):
        net.zero_grad(set_to_none=True)
        net(x).pow(2).mean().backward()
        opt.step()
        twin.zero_grad(set_to_none=True)
        twin(x).pow(2).mean().backward()
        for g, p in zip(grads, params, strict=True):
            g.copy_(p.grad)
        with torch.no_grad():  # (as optimizer.step() runs; the phase loop runs in inference mode)
            fast.step(grads, flat)
        if i == 3:
            twin_opt.load_state_dict(copy.deepcopy(opt.state_dict()))
            fast.forget_state()
    for a, b in zip(net.parameters(), twin.parameters(), strict=True):
        assert torch.equal(a, b)
    assert twin_opt.state_dict()["state"][0]["step"] == 6
    for kw in ({"centered": False}, {"centered": True, "momentum": 0.9}, {"centered": True, "weight_decay": 0.1}):
        assert CenteredRMSpropStep.of(torch.optim.RMSprop(net.parameters(), **kw), list(net.parameters())) is None


@pytest.mark.parametrize("kernels", ["compiled", "torch"])
def test_centered_rmsprop_step_equals_optimizer_step_where_moments_are_exactly_zero(kernels, monkeypatch):
    """A MinAtar fc layer's weights for input features that are never active never get a gradient: their moments
    stay exactly 0, mixed among the others, where CenteredRMSpropStep lifts the zeros around the square root. The
    denominators, and so the weights, must still be torch's bit for bit, on a vector as large as the real one,
    through torch's calls and through the compiled step (which lifts them always)."""
    if kernels == "torch":
        monkeypatch.setenv(qzoo.native.ENV, "0")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(1024, 128), nn.ReLU(), nn.Linear(128, 6))
    twin = copy.deepcopy(net)
    kw = {"lr": 2.5e-4, "alpha": 0.95, "eps": 0.01, "centered": True, "foreach": True}
    opt, twin_opt = torch.optim.RMSprop(net.parameters(), **kw), torch.optim.RMSprop(twin.parameters(), **kw)
    params = list(twin.parameters())
    fast = CenteredRMSpropStep.of(twin_opt, params)
    sizes = [p.numel() for p in params]
    flat = torch.zeros(sum(sizes))
    grads = [g.view_as(p) for g, p in zip(flat.split(sizes), params, strict=True)]
    active = torch.rand(1024) < 0.55  # the other 45% of the input features are 0 in every batch
    for _ in range(5):
        x = torch.rand(32, 1024) * active
        for model in (net, twin):
            model.zero_grad(set_to_none=True)
            model(x).pow(2).mean().backward()
        opt.step()
        for g, p in zip(grads, params, strict=True):
            g.copy_(p.grad)
        with torch.no_grad():
            fast.step(grads, flat)
    square_avg = opt.state_dict()["state"][0]["square_avg"]
    assert 0.3 < float((square_avg == 0).float().mean()) < 0.6  # the case is exercised: zeros among the others
    if kernels == "compiled":
        assert fast._step is not None
    else:  # ... through the path that lifts them (taken while > 1% of the moments are 0)
        assert fast._step is None and fast._lift_zeros
    for a, b in zip(net.parameters(), twin.parameters(), strict=True):
        assert torch.equal(a, b)
    for i, state in opt.state_dict()["state"].items():
        for key in ("square_avg", "grad_avg"):
            assert torch.equal(state[key], twin_opt.state_dict()["state"][i][key])


def test_only_the_plain_minatar_cnn_with_centered_rmsprop_takes_the_phase():
    assert isinstance(agent_for()._phase, MinAtarPhase)
    for kw in ({"dueling": True}, {"noisy": True}, {"distributional": "c51"}, {"optimizer": "adam"}):
        assert not isinstance(agent_for(**kw)._phase, MinAtarPhase), kw


class Perturbed:
    """qzoo's compiled module with its MinAtar kernels one ulp off in one element: what a machine whose torch
    computes differently would look like to the check."""

    def __init__(self, native):
        self.native = native

    def centered_rmsprop(self, params, *args):
        self.native.centered_rmsprop(params, *args)
        params[-1].view(-1)[-1] = torch.nextafter(params[-1].view(-1)[-1], torch.tensor(1e9))

    def conv3x3_forward(self, x, w, b, channel_last):
        out = self.native.conv3x3_forward(x, w, b, channel_last)
        out.view(-1)[0] = torch.nextafter(out.view(-1)[0], torch.tensor(1e9))
        return out

    def conv3x3_weight_grad(self, grad, x):
        w, b = self.native.conv3x3_weight_grad(grad, x)
        b[0] = torch.nextafter(b[0], torch.tensor(1e9))
        return w, b


def test_a_compiled_kernel_that_does_not_give_torchs_numbers_is_not_used(monkeypatch):
    """The check runs each kernel against torch's calls on random inputs once per shape; one differing element is
    enough to keep torch's calls, and the weights stay torch's."""
    native = qzoo.native.load()
    assert native is not None, "scripts/setup.sh runs `python -m qzoo.native`"
    monkeypatch.setattr(qzoo.fastpath_cnn, "_agrees", {})
    monkeypatch.setattr(qzoo.native, "load", lambda: Perturbed(native))
    fast, slow = agent_for(learning_rate=1e-3), agent_for(learning_rate=1e-3)
    slow._phase = None
    replays = filled_replays(Config(env_id=ENV))
    for _ in range(3):
        fast.learn(replays[0], 1, 32, 300)
        slow.learn(replays[1], 1, 32, 300)
    assert_same_state(fast, slow)
    assert fast._rmsprop._step is None and set(qzoo.fastpath_cnn._agrees.values()) == {False}
    # the RMSprop step, the convolution's gradient and its forward pass in either order, for batches of 32
    assert len(qzoo.fastpath_cnn._agrees) == 4
    assert fast._phase.conv_for(torch.zeros(32, 4, 10, 10)) is torch.conv2d
