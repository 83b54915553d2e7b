"""The update's fast paths compute what the plain PyTorch path computes: the hand-written MLP backward pass
(MLPBackprop + td_loss_grad), the global-norm clipping and the direct fused-Adam step. Each is compared with the
autograd / torch.optim version on the same inputs."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

import qzoo.native
from qzoo.agent import FusedAdamStep, build_agent, clip_grad_norm
from qzoo.config import Config
from qzoo.envs import check_env
from qzoo.losses import td_loss, td_loss_grad
from qzoo.networks import MLPBackprop
from qzoo.replay import Batch, batch_slice, make_replay


def agent_for(**kw):
    config = Config(env_id="CartPole-v1", net_arch=[32, 16], **kw)
    info = check_env(config)
    torch.manual_seed(0)
    return build_agent(config, info.observation_space, info.n_actions, torch.device("cpu"))


def random_batch(rng, n, weighted=False):
    obs = rng.normal(size=(n, 4)).astype(np.float32)
    nxt = rng.normal(size=(n, 4)).astype(np.float32)
    # rewards large enough that some TD errors exceed the Huber threshold and some do not
    reward = rng.normal(scale=2.0, size=n).astype(np.float32)
    discount = np.where(rng.random(n) < 0.2, 0.0, 0.99).astype(np.float32)
    weights = rng.uniform(0.1, 1.0, n).astype(np.float32) if weighted else None
    return Batch(obs, rng.integers(0, 2, n), reward, discount, nxt, weights, np.arange(n))


@pytest.mark.parametrize("kind", ["huber", "mse"])
@pytest.mark.parametrize("batch", [1, 37, 64])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dueling", [False, True])
def test_hand_written_backward_equals_autograd(kind, batch, weighted, dueling):
    agent = agent_for(dueling=dueling)
    backprop = MLPBackprop.of(agent.q_net)
    assert backprop is not None and len(backprop.params) == (8 if dueling else 6)
    rng = np.random.default_rng(batch)
    obs = torch.as_tensor(rng.normal(size=(batch, 4)).astype(np.float32))
    action = torch.as_tensor(rng.integers(0, 2, batch)).unsqueeze(1)
    target = torch.as_tensor(rng.normal(scale=3.0, size=batch).astype(np.float32))
    weights = torch.as_tensor(rng.uniform(0.1, 1.0, batch).astype(np.float32)) if weighted else None

    q_tm1 = agent.q_net(obs).gather(1, action).squeeze(1)
    losses = td_loss(q_tm1, target, kind)
    (losses.mean() if weights is None else (weights * losses).mean()).backward()
    expected = [p.grad.clone() for p in backprop.params]
    for p in backprop.params:
        p.grad = None

    q, inputs = backprop.forward(obs)
    torch.testing.assert_close(q, agent.q_net(obs), rtol=0, atol=0)
    q_a = q.gather(1, action).squeeze(1)
    scale = 1.0 / batch if weights is None else weights * (1.0 / batch)
    grad_q = torch.zeros_like(q).scatter_(1, action, td_loss_grad(q_a, target, scale, kind).unsqueeze(1))
    backprop.backward(grad_q, inputs)
    for p, e in zip(backprop.params, expected, strict=True):
        torch.testing.assert_close(p.grad, e, rtol=1e-6, atol=1e-7)
    if dueling:  # the head's backward is autograd's operation for operation: equal to the last bit
        assert all(torch.equal(p.grad, e) for p, e in zip(backprop.params, expected, strict=True))


def test_dueling_backward_equals_autograd_to_the_last_bit_with_three_actions():
    """With three actions the mean's 1/3 is inexact: the division has to be autograd's, not a product by 1/3."""
    config = Config(env_id="Acrobot-v1", net_arch=[64, 64], dueling=True)
    info = check_env(config)
    torch.manual_seed(0)
    q_net = build_agent(config, info.observation_space, info.n_actions, torch.device("cpu")).q_net
    backprop = MLPBackprop.of(q_net)
    rng = np.random.default_rng(3)
    for _ in range(5):
        obs = torch.as_tensor(rng.normal(size=(64, 6)).astype(np.float32))
        action = torch.as_tensor(rng.integers(0, 3, 64)).unsqueeze(1)
        target = torch.as_tensor(rng.normal(scale=3.0, size=64).astype(np.float32))
        for p in backprop.params:
            p.grad = None
        td_loss(q_net(obs).gather(1, action).squeeze(1), target, "huber").mean().backward()
        expected = [p.grad.clone() for p in backprop.params]
        q, inputs = backprop.forward(obs)
        grad_q = td_loss_grad(q.gather(1, action).squeeze(1), target, 1.0 / 64, "huber").unsqueeze(1)
        backprop.backward(torch.zeros_like(q).scatter_(1, action, grad_q), inputs)
        assert all(torch.equal(p.grad, e) for p, e in zip(backprop.params, expected, strict=True))


def test_dueling_head_gradients_by_hand():
    """Q = V + A - mean_a A with A = 3 actions: dQ_k/dA_j = [j = k] - 1/3, dQ_k/dV = 1."""
    grad_q = torch.tensor([[1.0, 0.0, 0.0], [0.0, -3.0, 6.0]])
    grad_a, grad_v = MLPBackprop.head_grads(grad_q)
    torch.testing.assert_close(grad_v, torch.tensor([[1.0], [3.0]]))
    torch.testing.assert_close(grad_a, torch.tensor([[2 / 3, -1 / 3, -1 / 3], [-1.0, -4.0, 5.0]]))
    torch.testing.assert_close(MLPBackprop.combine(torch.tensor([[10.0]]), torch.tensor([[1.0, 2.0, 6.0]])),
                               torch.tensor([[8.0, 9.0, 13.0]]))


def test_td_loss_grad_by_hand():
    q = torch.tensor([0.0, 0.0, 0.0, 2.0])
    y = torch.tensor([0.5, -3.0, 1.0, 0.0])  # delta = q - y = -0.5, 3, -1, 2
    torch.testing.assert_close(td_loss_grad(q, y, 0.25, "huber"), torch.tensor([-0.125, 0.25, -0.25, 0.25]))
    torch.testing.assert_close(td_loss_grad(q, y, 0.25, "mse"), torch.tensor([-0.25, 1.5, -0.5, 1.0]))
    w = torch.tensor([1.0, 0.5, 2.0, 0.0])
    torch.testing.assert_close(td_loss_grad(q, y, w, "huber"), torch.tensor([-0.5, 0.5, -2.0, 0.0]))


def test_only_plain_and_dueling_mlps_take_the_hand_written_path():
    assert agent_for()._backprop is not None and agent_for(dueling=True)._backprop is not None
    for kw in ({"noisy": True}, {"distributional": "c51"}):
        assert agent_for(**kw)._backprop is None


def test_clip_grad_norm_equals_torch():
    rng = torch.Generator().manual_seed(0)
    for scale in (0.01, 100.0):  # below and above the threshold
        grads = [torch.randn(7, 5, generator=rng) * scale, torch.randn(5, generator=rng) * scale]
        original = [g.clone() for g in grads]
        expected = [g.clone() for g in grads]
        params = [nn.Parameter(torch.zeros_like(g)) for g in expected]
        for p, g in zip(params, expected, strict=True):
            p.grad = g
        nn.utils.clip_grad_norm_(params, 1.0, foreach=True)
        clip_grad_norm(grads, 1.0)
        for g, p in zip(grads, params, strict=True):
            assert torch.equal(g, p.grad)
        norm = float(torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads])))
        if scale < 1:  # below the threshold: untouched
            assert all(torch.equal(g, o) for g, o in zip(grads, original, strict=True))
        else:  # above: scaled down to norm 1
            assert norm == pytest.approx(1.0, rel=1e-5)
    grads = [torch.tensor([1.0, float("nan")]), torch.tensor([2.0])]  # a NaN norm still reaches every gradient
    clip_grad_norm(grads, 1.0)
    assert all(torch.isnan(g).all() for g in grads)


def test_direct_fused_adam_step_equals_optimizer_step_and_survives_load_state_dict():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
    twin = copy.deepcopy(net)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2, eps=1e-6, fused=True)
    twin_opt = torch.optim.Adam(twin.parameters(), lr=1e-2, eps=1e-6, fused=True)
    fast = FusedAdamStep.of(twin_opt, list(twin.parameters()))
    assert fast is not None
    x = torch.randn(16, 3)

    def step(model, do_step):
        model.zero_grad(set_to_none=True)
        model(x).pow(2).mean().backward()
        do_step()

    for i in range(5):
        step(net, opt.step)
        step(twin, fast.step)
        if i == 2:  # a resumed optimizer: new state tensors, which the fast step must use
            twin_opt.load_state_dict(copy.deepcopy(opt.state_dict()))
            fast.forget_state()
    for a, b in zip(net.parameters(), twin.parameters(), strict=True):
        assert torch.equal(a, b)
    assert twin_opt.state_dict()["state"][0]["step"] == 5
    assert FusedAdamStep.of(torch.optim.Adam(net.parameters(), amsgrad=True, fused=True),
                            list(net.parameters())) is None
    assert FusedAdamStep.of(torch.optim.Adam(net.parameters()), list(net.parameters())) is None  # not fused


@pytest.mark.parametrize("off_by_one_ulp", [False, True], ids=["halves", "halves-refused"])
def test_a_fused_adam_step_in_halves_on_two_threads_is_the_whole_step(monkeypatch, off_by_one_ulp):
    """With a second thread (``beside``) the large parameters are stepped in two halves of their rows, one per
    thread: the whole step's numbers, bit for bit (and the first such step is checked against the whole step;
    where a half's kernel would differ, here made one ulp off, every step stays whole)."""
    from qzoo.second_thread import SecondThread

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3136, 64), nn.ReLU(), nn.Linear(64, 6))  # 200k weights, then small ones
    twin = copy.deepcopy(net)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2, eps=1e-6, fused=True)
    twin_opt = torch.optim.Adam(twin.parameters(), lr=1e-2, eps=1e-6, fused=True)
    whole, halves = FusedAdamStep.of(opt, list(net.parameters())), FusedAdamStep.of(twin_opt, list(twin.parameters()))
    x = torch.randn(16, 3136)
    second, calls = SecondThread(), []

    def beside(fn, *args):
        calls.append(len(args[0]))
        return second.run(fn, *args)

    if off_by_one_ulp:
        real = halves._kernel

        def kernel(params, *rest):
            real(params, *rest)
            if len(params) == 1:  # the other thread's half: one ulp up
                params[0].copy_(torch.nextafter(params[0], torch.full_like(params[0], 1e9)))
        monkeypatch.setattr(halves, "_kernel", kernel)

    def step(model, adam, **kw):
        model.zero_grad(set_to_none=True)
        model(x).pow(2).mean().backward()
        adam.step(**kw)

    try:
        for _ in range(4):
            step(net, whole)
            step(twin, halves, beside=beside)
    finally:
        second.close()
    for a, b in zip(net.parameters(), twin.parameters(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(opt.state.values(), twin_opt.state.values(), strict=True):
        assert torch.equal(a["exp_avg"], b["exp_avg"]) and torch.equal(a["exp_avg_sq"], b["exp_avg_sq"])
    # the first step makes the state (optimizer.step()); the second checks (the halves on copies); then halves,
    # or after the check failed, whole steps without the other thread
    assert halves._halves_agree is (not off_by_one_ulp)
    assert calls == ([1] if off_by_one_ulp else [1, 1, 1])  # (the other thread's list: half of the first weight)


@pytest.mark.parametrize("kw", [{}, {"double": True}, {"loss": "mse"}, {"prioritized": True},
                                {"dueling": True, "double": True}])
def test_updates_on_the_fast_paths_equal_the_autograd_path(kw):
    """Twenty updates of the agent as built (hand-written backward, direct Adam) and of a twin forced through
    autograd + optimizer.step(): the same losses and the same weights."""
    fast, slow = agent_for(**kw), agent_for(**kw)
    slow._backprop, slow._adam = None, None
    rng = np.random.default_rng(0)
    for _ in range(20):
        batch = random_batch(rng, 32, weighted=kw.get("prioritized", False))
        torch.testing.assert_close(fast.update(batch), slow.update(batch), rtol=1e-5, atol=1e-6)
    for a, b in zip(fast.q_net.parameters(), slow.q_net.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    f, s = fast.pop_metrics(), slow.pop_metrics()
    assert f["interval_updates"] == s["interval_updates"] == 20
    assert f["loss"] == pytest.approx(s["loss"], rel=1e-5) and f["q_mean"] == pytest.approx(s["q_mean"], rel=1e-5)


def filled_replays(config, n_copies=2, steps=300):
    """Identical replay buffers (same transitions, same sampling seed), filled with random CartPole-sized steps
    whose rewards make some TD errors exceed the Huber threshold."""
    space = check_env(config).observation_space
    replays = [make_replay(config, space) for _ in range(n_copies)]
    rng = np.random.default_rng(1)
    for _ in range(steps):
        obs, nxt = rng.normal(size=(2, 1, 4)).astype(np.float32)
        action, reward = rng.integers(0, 2, 1), rng.normal(scale=2.0, size=1).astype(np.float32)
        terminated = rng.random(1) < 0.1
        for replay in replays:
            replay.add(obs, action, reward, nxt, terminated, np.zeros(1, bool))
    return replays


@pytest.mark.parametrize("kw", [{}, {"double": True}, {"loss": "mse"}, {"n_step": 3, "double": True},
                                {"max_grad_norm": 0.05}, {"max_grad_norm": 0.5}, {"dueling": True},
                                {"dueling": True, "double": True, "n_step": 3, "max_grad_norm": 0.5}])
@pytest.mark.parametrize("loop", ["compiled", "python"])
def test_a_phase_in_one_loop_equals_its_updates_one_by_one(kw, loop, monkeypatch):
    """QAgent.learn through MLPPhase (targets of the whole phase at once, gradients into buffers, clipping skipped
    where its factor is exactly 1) and through QAgent.update batch by batch: bit-identical weights after three
    phases of 16 updates, the same update count, the logged loss and mean Q equal up to the order of summation.
    A learning rate of 0.01 moves the online net enough for Double DQN's argmax to differ from the target net's;
    max_grad_norm 0.05 clips every update, 0.5 some (both checked below), the default 10 none. The phase's loop
    runs compiled (qzoo/csrc/mlp_phase.cpp, built by the setup: its absence fails here) or in Python."""
    if loop == "python":
        monkeypatch.setenv(qzoo.native.ENV, "0")
    assert (qzoo.native.load() is not None) == (loop == "compiled"), qzoo.native.describe()
    fast, slow = agent_for(learning_rate=0.01, **kw), agent_for(learning_rate=0.01, **kw)
    slow._phase = None
    assert fast._phase is not None and fast._phase.double == kw.get("double", False)
    replays = filled_replays(Config(env_id="CartPole-v1", **kw))
    for _ in range(3):
        fast.learn(replays[0], 16, 32, 300)
        slow.learn(replays[1], 16, 32, 300)
    for a, b in zip(fast.q_net.parameters(), slow.q_net.parameters(), strict=True):
        assert torch.equal(a, b)
    f, s = fast.pop_metrics(), slow.pop_metrics()
    assert f["interval_updates"] == s["interval_updates"] == 48 and fast.updates == 48
    assert f["loss"] == pytest.approx(s["loss"], rel=1e-5) and f["q_mean"] == pytest.approx(s["q_mean"], rel=1e-5)
    assert replays[0].rng.bit_generator.state == replays[1].rng.bit_generator.state  # the same draws
    batch = replays[0].sample(32, 300)  # and the per-batch path goes on from where the phase loop left off
    torch.testing.assert_close(fast.update(batch), slow.update(batch), rtol=0, atol=0)
    for a, b in zip(fast.q_net.parameters(), slow.q_net.parameters(), strict=True):
        assert torch.equal(a, b)


def test_a_dueling_phase_equals_autograd_and_torch_adam_to_the_last_bit():
    """The dueling head's hand-written backward is autograd's, operation for operation: three phases through
    MLPPhase and through autograd + optimizer.step() batch by batch end with equal weights (Double, 3-step,
    clipping in some updates: the CartPole preset's kind of network)."""
    kw = {"dueling": True, "double": True, "n_step": 3, "max_grad_norm": 0.5, "learning_rate": 0.01}
    fast, slow = agent_for(**kw), agent_for(**kw)
    slow._phase, slow._backprop, slow._adam = None, None, None
    replays = filled_replays(Config(env_id="CartPole-v1", n_step=3))
    for _ in range(3):
        fast.learn(replays[0], 16, 32, 300)
        slow.learn(replays[1], 16, 32, 300)
    for a, b in zip(fast.q_net.parameters(), slow.q_net.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("max_grad_norm, clipped", [(0.05, "all"), (0.5, "some"), (10.0, "none")])
def test_the_clipping_cases_the_phase_loop_is_compared_in(max_grad_norm, clipped, clip_norms):
    """How many of the 48 updates of the comparison above have a gradient norm above max_grad_norm (measured on
    the reference path, before clipping), so that test covers clipping always, sometimes and never."""
    agent = agent_for(learning_rate=0.01, max_grad_norm=max_grad_norm)
    agent._phase = None
    norms = clip_norms
    replay = filled_replays(Config(env_id="CartPole-v1"), n_copies=1)[0]
    for _ in range(3):
        agent.learn(replay, 16, 32, 300)
    above = sum(n > max_grad_norm for n in norms)
    assert len(norms) == 48
    assert {"all": above == 48, "some": 0 < above < 48, "none": above == 0}[clipped], above


def test_double_dqn_targets_change_the_result_in_the_phase_loop():
    """The Double DQN branch of MLPPhase is taken: with the same batches it ends elsewhere than plain DQN."""
    plain, double = agent_for(learning_rate=0.01), agent_for(learning_rate=0.01, double=True)
    replays = filled_replays(Config(env_id="CartPole-v1"))
    for _ in range(3):
        plain.learn(replays[0], 16, 32, 300)
        double.learn(replays[1], 16, 32, 300)
    assert not all(torch.equal(a, b) for a, b in zip(plain.q_net.parameters(), double.q_net.parameters(), strict=True))


def test_only_plain_and_dueling_mlps_with_direct_adam_take_the_phase_loop():
    assert agent_for()._phase is not None and agent_for(dueling=True)._phase is not None
    for kw in ({"noisy": True}, {"distributional": "c51"}, {"optimizer": "rmsprop"}):
        assert agent_for(**kw)._phase is None


@pytest.mark.parametrize("kw", [{}, {"prioritized": True}])
def test_sample_phase_draws_what_as_many_samples_draw(kw):
    """One phase's batches in one Batch: the same rows, observations, importance weights and generator state as
    n calls of sample(); batch_slice gives batch i back."""
    config = Config(env_id="CartPole-v1", **kw)
    a, b = filled_replays(config)
    phase = a.sample_phase(5, 8, 300)
    assert len(phase.action_tm1) == 40
    for i in range(5):
        one, part = b.sample(8, 300), batch_slice(phase, i, 8)
        for x, y in zip(one, part, strict=True):
            assert (x is None and y is None) or np.array_equal(x, y)
    assert a.rng.bit_generator.state == b.rng.bit_generator.state


def test_the_phase_gradients_are_64_byte_aligned_views_of_one_buffer():
    """A product written into a misaligned output may round differently (MKL on a Zen 4 EPYC: the dueling value
    layer's weight gradient, at an odd offset of the flat buffer, broke the bit-identity above), so every gradient
    view starts on a 64-byte boundary, as a freshly allocated tensor does."""
    agent = agent_for(dueling=True)
    phase = agent._phase
    assert [g.shape for g in phase.grads] == [p.shape for p in agent.q_net.parameters()]
    assert all(g.data_ptr() % 64 == 0 for g in phase.grads)
    assert all(g.untyped_storage().data_ptr() == phase.flat_grad.untyped_storage().data_ptr() for g in phase.grads)
    assert phase.flat_grad.numel() >= sum(p.numel() for p in agent.q_net.parameters())


@pytest.mark.parametrize("chunk", [512, 100])
@pytest.mark.parametrize("dueling", [False, True])
def test_the_target_pass_over_distinct_rows_in_chunks_is_one_pass_bit_for_bit(chunk, dueling, monkeypatch):
    """MLPPhase.target_values (each distinct storage row once, in chunks of TARGET_CHUNK rows) gives what one pass of
    the target net over every row gives, bit for bit: with rows drawn many times (3,000 draws from 900 rows: the
    distinct rows are computed and spread back), all distinct, and without indices (chunks only). CartPole's
    network size, so the products are the real ones."""
    monkeypatch.setattr(type(agent_for().__dict__["_phase"]), "TARGET_CHUNK", chunk)
    config = Config(env_id="CartPole-v1", net_arch=[256, 256], dueling=dueling)
    info = check_env(config)
    torch.manual_seed(1)
    agent = build_agent(config, info.observation_space, info.n_actions, torch.device("cpu"))
    phase = agent._phase
    rng = np.random.default_rng(2)
    table = torch.from_numpy(rng.normal(size=(900, 4)).astype(np.float32))
    with torch.inference_mode():
        for rows in (rng.integers(0, 900, 3000), rng.permutation(900)):
            obs_t = table[torch.from_numpy(rows)]
            one_pass = phase.forward(phase.target, obs_t, phase.target_value)[0]
            assert len(np.unique(rows)) < len(rows) or len(rows) == 900
            assert torch.equal(phase.target_values(obs_t, rows), one_pass)
            assert torch.equal(phase.target_values(obs_t), one_pass)
