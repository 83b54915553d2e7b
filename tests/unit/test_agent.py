import numpy as np
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
