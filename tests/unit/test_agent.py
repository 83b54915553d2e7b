import copy

import numpy as np
import pytest
import torch

from qzoo.agent import build_agent
from qzoo.config import Config
from qzoo.envs import check_env
from qzoo.replay import Batch


def corridor_agent(**kw):
    config = Config(env_id="qzoo/Corridor-v0", net_arch=[8], **kw)
    info = check_env(config)
    return build_agent(config, info.observation_space, info.n_actions, torch.device("cpu"))


def test_epsilon_one_is_uniform_and_epsilon_zero_is_greedy():
    agent = corridor_agent()
    obs = np.eye(8, dtype=np.float32)
    rng = np.random.default_rng(0)
    greedy = agent.greedy(obs)
    np.testing.assert_array_equal(agent.act(obs, 0.0, rng), greedy)
    draws = np.concatenate([agent.act(obs, 1.0, rng) for _ in range(500)])
    assert abs(draws.mean() - 0.5) < 0.03


def test_hard_and_soft_target_updates():
    agent = corridor_agent()
    with torch.no_grad():
        for p in agent.q_net.parameters():
            p.add_(1.0)
    before = [p.clone() for p in agent.target_net.parameters()]
    agent.sync_target(tau=0.25)
    for b, t, o in zip(before, agent.target_net.parameters(), agent.q_net.parameters(), strict=True):
        torch.testing.assert_close(t, 0.75 * b + 0.25 * o)
    agent.sync_target(tau=1.0)
    for t, o in zip(agent.target_net.parameters(), agent.q_net.parameters(), strict=True):
        torch.testing.assert_close(t, o)


@pytest.mark.parametrize("tau", [1.0, 0.25])
def test_a_sync_leaves_the_target_frozen_leaves_without_autograd_history(tau):
    """The copy comes from weights that require gradients: recorded by autograd, it would turn the target's
    weights into tensors that require gradients with a grad_fn, each sync chaining onto the previous one's."""
    agent = corridor_agent(learning_rate=1e-2)
    obs = np.eye(8, dtype=np.float32)[[0, 3]]
    batch = Batch(obs, np.array([1, 0]), np.array([1.0, -1.0], np.float32), np.array([0.0, 0.9], np.float32), obs,
                  None, np.array([0, 1]))
    for _ in range(3):
        agent.update(batch)
        agent.sync_target(tau)
        for p in agent.target_net.parameters():
            assert p.is_leaf and not p.requires_grad and p.grad_fn is None
    assert all(p.requires_grad for p in agent.q_net.parameters())  # the online net still learns


def test_a_hard_sync_copies_what_the_updates_since_the_last_one_changed():
    """Hard syncs with no update in between are skipped (the target holds those weights already); each update,
    and loading a state, makes the next one copy."""
    agent = corridor_agent(learning_rate=1e-2)
    obs = np.eye(8, dtype=np.float32)[[0, 3]]
    batch = Batch(obs, np.array([1, 0]), np.array([1.0, -1.0], np.float32), np.array([0.0, 0.9], np.float32), obs,
                  None, np.array([0, 1]))

    def target_is_online():
        return all(torch.equal(t, o) for t, o in zip(agent.target_net.parameters(), agent.q_net.parameters(),
                                                     strict=True))

    for _ in range(2):
        agent.update(batch)
        assert not target_is_online()
        agent.sync_target(1.0)
        assert target_is_online()
        agent.sync_target(1.0)  # nothing new: skipped, still equal
        assert target_is_online()
    state = copy.deepcopy(agent.state_dict())
    agent.update(batch)
    agent.load_state_dict(state)  # the online net as saved; the target net too, but the next sync still copies
    with torch.no_grad():
        for p in agent.target_net.parameters():
            p.zero_()
    agent.sync_target(1.0)
    assert target_is_online()


def test_update_moves_q_towards_the_target_and_reports_td_error():
    agent = corridor_agent(learning_rate=1e-2)
    obs = np.eye(8, dtype=np.float32)[[0]]
    batch = Batch(obs, np.array([1]), np.array([1.0], np.float32), np.array([0.0], np.float32), obs,
                  np.ones(1, np.float32), np.array([0]))
    q0 = agent.q_net(torch.as_tensor(obs))[0, 1].item()
    td0 = agent.update(batch).item()
    assert abs(td0 - abs(1.0 - q0)) < 1e-6
    for _ in range(300):
        agent.update(batch)
    assert abs(agent.q_net(torch.as_tensor(obs))[0, 1].item() - 1.0) < 0.05
    m = agent.pop_metrics()
    assert m["interval_updates"] == 301 and np.isfinite(m["loss"])
    assert agent.pop_metrics()["interval_updates"] == 0


def _replay_with(config, info, n=200, seed=0):
    from qzoo.replay import make_replay

    replay = make_replay(config, info.observation_space)
    rng = np.random.default_rng(seed)
    for _ in range(n):
        obs = np.eye(8, dtype=np.float32)[rng.integers(0, 8, 1)]
        nxt = np.eye(8, dtype=np.float32)[rng.integers(0, 8, 1)]
        replay.add(obs, rng.integers(0, 2, 1), rng.normal(size=1).astype(np.float32), nxt, rng.random(1) < 0.1,
                   np.zeros(1, bool))
    return replay


def test_numpy_acting_matches_the_network_and_follows_updates():
    from qzoo.networks import numpy_forward

    obs = np.random.default_rng(0).normal(size=(16, 8)).astype(np.float32)
    for kw in ({}, {"dueling": True}):
        agent = corridor_agent(**kw)
        forward = numpy_forward(agent.q_net)
        assert forward is not None
        np.testing.assert_allclose(forward(obs), agent.q_net(torch.as_tensor(obs)).detach().numpy(), atol=1e-5)
        with torch.no_grad():  # an in-place change (like an optimizer step) is seen without rebuilding anything
            for p in agent.q_net.parameters():
                p.mul_(-2.0).add_(0.1)
        np.testing.assert_allclose(forward(obs), agent.q_net(torch.as_tensor(obs)).detach().numpy(), atol=1e-5)
        np.testing.assert_array_equal(agent.greedy(obs), agent.q_net(torch.as_tensor(obs)).argmax(1).numpy())
    for kw in ({"noisy": True}, {"distributional": "c51"}):  # these act through torch
        assert numpy_forward(corridor_agent(**kw).q_net) is None


def test_a_phase_with_batched_targets_equals_update_by_update():
    """learn() computes all of a phase's target-net values in one forward pass; the result must be the same
    training as sampling and updating one batch at a time (same batches, same targets, same weights)."""
    for kw in ({}, {"double": True}):
        config = Config(env_id="qzoo/Corridor-v0", net_arch=[8], batch_size=16, **kw)
        info = check_env(config)
        torch.manual_seed(0)
        fast = build_agent(config, info.observation_space, info.n_actions, torch.device("cpu"))
        torch.manual_seed(0)
        slow = build_agent(config, info.observation_space, info.n_actions, torch.device("cpu"))
        fast_replay, slow_replay = _replay_with(config, info), _replay_with(config, info)
        fast.learn(fast_replay, 12, 16, step=0)
        for _ in range(12):
            slow.update(slow_replay.sample(16))
        assert fast.updates == slow.updates == 12
        for a, b in zip(fast.q_net.parameters(), slow.q_net.parameters(), strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
        assert not torch.equal(next(fast.q_net.parameters()), next(fast.target_net.parameters()))  # it learned


def test_double_dqn_synced_every_step_reuses_the_target_pass_as_the_online_one():
    """DrQ(eps) syncs the target after every update, so at the next update the target net *is* the online net:
    learn() then takes Double DQN's online Q(s_t, .) from the target's forward pass (one pass fewer), and the
    training is bit for bit what computing it with the online net gives. (The batch-by-batch autograd path, which
    DrQ(eps)'s CNN takes: a dueling MLP would take the phase loop, which calls no module's forward.)"""
    config = Config(env_id="qzoo/Corridor-v0", net_arch=[8], batch_size=16, double=True, dueling=True)
    info = check_env(config)
    agents, passes = [], []
    for reuse in (True, False):
        torch.manual_seed(0)
        agent = build_agent(config, info.observation_space, info.n_actions, torch.device("cpu"))
        agent._phase, agent._backprop = None, None  # the CNN's path
        calls = []
        agent.q_net.register_forward_hook(lambda *_, calls=calls: calls.append(1))
        replay = _replay_with(config, info)
        for step in range(6):
            agent.learn(replay, 1, 16, step=step)
            agent.sync_target(1.0)
            if not reuse:
                agent._copied_at_update = -1  # as if not synced: the online net computes Q(s_t, .) itself
        agents.append(agent)
        passes.append(len(calls))
    for a, b in zip(agents[0].q_net.parameters(), agents[1].q_net.parameters(), strict=True):
        assert torch.equal(a, b)
    assert passes == [6 + 1, 6 * 2]  # Q(s_tm1) every update; Q(s_t) only at the first, before any sync
    soft = agents[0]
    soft.learn(_replay_with(config, info, seed=1), 1, 16, step=6)
    soft.sync_target(0.5)  # a soft update: the target is not the online net, no reuse
    counted = []
    soft.q_net.register_forward_hook(lambda *_: counted.append(1))
    soft.learn(_replay_with(config, info, seed=2), 1, 16, step=7)
    assert len(counted) == 2  # Q(s_tm1) and Q(s_t) both by the online net


def test_max_grad_norm_inf_skips_the_norm_and_updates_as_an_unreached_bound_does(monkeypatch):
    """inf: no clipping, so no gradient norm is computed at all (DER: 3.3M noisy-net gradients per update); the
    weights after the updates are those of a finite bound that is never reached (its factor is exactly 1)."""
    from qzoo import agent as agent_module

    batch = Batch(np.eye(8, dtype=np.float32)[[0, 3]], np.array([1, 0]), np.array([1.0, -1.0], np.float32),
                  np.array([0.99, 0.0], np.float32), np.eye(8, dtype=np.float32)[[1, 4]], np.ones(2, np.float32),
                  np.array([0, 1]))
    agents = {}
    for bound in (1e10, float("inf")):  # noisy: the autograd path, whose update calls clip_grad_norm
        torch.manual_seed(0)
        agents[bound] = corridor_agent(max_grad_norm=bound, noisy=True, learning_rate=1e-2)
    before = copy.deepcopy(agents[1e10].q_net.state_dict())
    calls = []
    real_clip = agent_module.clip_grad_norm
    monkeypatch.setattr(agent_module, "clip_grad_norm", lambda *a: (calls.append(a[1]), real_clip(*a)))
    for agent in agents.values():
        for _ in range(5):
            torch.manual_seed(1)  # the same noise in both agents' updates
            agent.update(batch)
    assert calls == [1e10] * 5  # the finite bound computed its norm five times; inf never
    for a, b in zip(agents[1e10].q_net.parameters(), agents[float("inf")].q_net.parameters(), strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(agents[1e10].q_net.advantage.weight_mu, before["advantage.weight_mu"])  # they learned


def _noise(net) -> list[torch.Tensor]:
    return [b.clone() for b in net.buffers()]


def test_acting_noise_update_acts_with_the_last_updates_noise():
    agent = corridor_agent(noisy=True)
    obs = np.eye(8, dtype=np.float32)[[2, 5]]
    before = _noise(agent.q_net)
    for _ in range(3):
        agent.act(obs, 0.0, np.random.default_rng(0))
    assert all(torch.equal(a, b) for a, b in zip(before, _noise(agent.q_net), strict=True))  # no draw when acting
    batch = Batch(obs, np.array([1, 0]), np.array([1.0, -1.0], np.float32), np.array([0.0, 0.9], np.float32), obs,
                  None, np.array([0, 1]))
    agent.update(batch)
    assert not any(torch.equal(a, b) for a, b in zip(before, _noise(agent.q_net), strict=True))  # the update draws


def test_acting_noise_fresh_draws_before_every_action_from_its_own_seeded_generator():
    """Dopamine's full Rainbow agent samples new noise for each action. With 'fresh' every greedy choice in
    training mode first redraws every noisy layer's noise from the agent's generator (seeded by the run's seed,
    not torch's global stream), so two actions on the same observation see different Q-values; evaluation (the
    mean weights) draws nothing."""
    from qzoo.agent import acting_noise_generator
    from qzoo.networks import NoisyLinear, scale_noise

    torch.manual_seed(0)
    agent = corridor_agent(noisy=True, acting_noise="fresh", seed=7)
    obs = np.eye(8, dtype=np.float32)[[2, 5]]
    expected = acting_noise_generator(7, torch.device("cpu"))
    layers = [m for m in agent.q_net.modules() if isinstance(m, NoisyLinear)]
    seen_q = []
    for _ in range(2):
        global_state = torch.get_rng_state()
        action = agent.act(obs, 0.0, np.random.default_rng(0))
        assert torch.equal(torch.get_rng_state(), global_state)  # torch's global stream untouched
        for layer in layers:  # the layers' order in modules(), each eps_in then eps_out, from the generator
            torch.testing.assert_close(layer.eps_in, scale_noise(torch.randn(layer.in_features, generator=expected)),
                                       rtol=0, atol=0)
            torch.testing.assert_close(layer.eps_out, scale_noise(torch.randn(layer.out_features, generator=expected)),
                                       rtol=0, atol=0)
        with torch.no_grad():
            q = agent.q_net(torch.as_tensor(obs))
        np.testing.assert_array_equal(action, q.argmax(1).numpy())  # the action is greedy under the new noise
        seen_q.append(q)
    assert not torch.equal(seen_q[0], seen_q[1])
    state = expected.get_state()
    with agent.evaluating():
        agent.act(obs, 0.0, np.random.default_rng(0))
    assert torch.equal(agent.acting_noise.get_state(), state)  # evaluation drew nothing
    assert corridor_agent(noisy=False, acting_noise="fresh").acting_noise is None  # no noisy layers: nothing to draw
    assert not torch.equal(acting_noise_generator(7, torch.device("cpu")).get_state(),
                           acting_noise_generator(8, torch.device("cpu")).get_state())


def test_acting_noise_generator_state_survives_a_checkpoint():
    agent = corridor_agent(noisy=True, acting_noise="fresh", seed=3)
    obs = np.eye(8, dtype=np.float32)[[1]]
    agent.act(obs, 0.0, np.random.default_rng(0))
    saved = copy.deepcopy(agent.state_dict())
    agent.act(obs, 0.0, np.random.default_rng(0))
    after_one_more = [b.clone() for b in agent.q_net.buffers()]
    other = corridor_agent(noisy=True, acting_noise="fresh", seed=3)
    other.load_state_dict(saved)
    other.act(obs, 0.0, np.random.default_rng(0))  # the same next draw as the original's
    assert all(torch.equal(a, b) for a, b in zip(after_one_more, other.q_net.buffers(), strict=True))
