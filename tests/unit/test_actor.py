"""Training phases in line and overlapped with acting (qzoo/actor.py, the ``overlap`` setting)."""

import csv
import os
from concurrent.futures import Future

import gymnasium as gym
import numpy as np
import pytest
import torch

from qzoo.actor import TrainingPhases, learner_threads, resolve_overlap
from qzoo.agent import build_agent
from qzoo.config import Config
from qzoo.replay import make_replay
from qzoo.second_thread import SecondThread
from qzoo.trainer import train

SPACE = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
TIMING = ("env", "act", "sample", "update", "wait")


def parts(config: Config):
    torch.manual_seed(0)
    agent = build_agent(config, SPACE, 2, torch.device("cpu"))
    replay = make_replay(config, SPACE)
    rng = np.random.default_rng(0)
    for _ in range(40):
        replay.add(rng.uniform(-1, 1, (1, 4)).astype(np.float32), rng.integers(0, 2, 1), rng.random(1),
                   rng.uniform(-1, 1, (1, 4)).astype(np.float32), np.zeros(1, bool), np.zeros(1, bool))
    return agent, replay


def weights(net) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.parameters()]


def same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_an_overlapped_phase_draws_its_batches_at_its_step_and_acts_with_weights_one_phase_old():
    config = Config(env_id="CartPole-v1", batch_size=8, buffer_size=200, gradient_steps=2, seed=0)
    agent, replay = parts(config)
    inline_agent, inline_replay = parts(config)
    overlapped = TrainingPhases(agent, replay, config, dict.fromkeys(TIMING, 0.0), overlap=True)
    inline = TrainingPhases(inline_agent, inline_replay, config, dict.fromkeys(TIMING, 0.0), overlap=False)
    assert inline.policy is inline_agent and overlapped.policy is not agent

    start = weights(agent.q_net)
    overlapped.learn(step=40)
    assert same(weights(overlapped.policy.net), start)  # acting with the weights from before this phase
    for _ in range(4):  # the loop goes on adding while the phase runs: the phase's batches were drawn already
        replay.add(np.ones((1, 4), np.float32), np.ones(1, int), np.full(1, 9.0), np.ones((1, 4), np.float32),
                   np.ones(1, bool), np.zeros(1, bool))
    overlapped.settle()
    inline.learn(step=40)
    assert agent.updates == inline_agent.updates == 2  # gradient_steps per phase, as in line
    after_first = weights(agent.q_net)
    assert same(after_first, weights(inline_agent.q_net)) and not same(after_first, start)  # the same 2 updates

    overlapped.learn(step=44)
    assert same(weights(overlapped.policy.net), after_first)  # one phase old, never older
    overlapped.settle()
    assert agent.updates == 4 and not same(weights(agent.q_net), after_first)
    obs = np.random.default_rng(1).uniform(-1, 1, (5, 4)).astype(np.float32)
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    overlapped.policy.refresh()
    np.testing.assert_array_equal(overlapped.policy.act(obs, 0.3, rng_a), agent.act(obs, 0.3, rng_b))
    overlapped.close()


def test_an_error_in_the_background_phase_reaches_the_loop(monkeypatch):
    config = Config(env_id="CartPole-v1", batch_size=8, buffer_size=200)
    agent, replay = parts(config)
    phases = TrainingPhases(agent, replay, config, dict.fromkeys(TIMING, 0.0), overlap=True)

    def broken(*args):
        raise FloatingPointError("update failed")

    monkeypatch.setattr(agent, "learn", broken)
    phases.learn(step=40)
    with pytest.raises(FloatingPointError, match="update failed"):
        phases.settle()
    phases.close()


def progress(run_dir) -> list[dict]:
    rows = list(csv.DictReader(open(run_dir / "progress.csv")))
    return [{k: v for k, v in row.items() if k not in ("steps_per_s", "time_s")} for row in rows]


@pytest.mark.parametrize("settings", [{"prioritized": True}, {}])
def test_overlapped_training_keeps_the_replay_ratio_and_repeats_itself(tmp_path, settings):
    config = Config(env_id="CartPole-v1", n_timesteps=1500, learning_starts=200, train_freq=4, buffer_size=2000,
                    batch_size=16, log_interval=500, eval_freq=0, eval_episodes=1, target_update_interval=100,
                    progress_bar=False, tensorboard=False, seed=3, **settings)
    runs = {name: train(config.replace(overlap=value), tmp_path / name, out=None)
            for name, value in (("a", "true"), ("b", "true"), ("inline", "false"))}
    assert runs["a"].agent.updates == runs["inline"].agent.updates == (1500 - 200) // 4
    assert progress(tmp_path / "a") == progress(tmp_path / "b")  # deterministic, thread or not
    assert progress(tmp_path / "a") != progress(tmp_path / "inline")  # (acting one phase behind changes the run)
    assert same(weights(runs["a"].agent.q_net), weights(runs["b"].agent.q_net))
    assert "overlap: 'true'" in (tmp_path / "a" / "config.yaml").read_text()
    assert runs["a"].timing["wait"] >= 0 and runs["a"].timing["update"] > 0


class InLineExecutor:
    """A ThreadPoolExecutor stand-in that runs each job on the caller's thread when it is submitted."""

    def __init__(self, *args, **kwargs):
        pass

    def submit(self, fn, *args):
        future = Future()
        future.set_result(fn(*args))
        return future

    def shutdown(self, wait=True):
        pass


SMALL_RUNS = {
    "cartpole": dict(env_id="CartPole-v1", n_timesteps=1500, learning_starts=200, buffer_size=2000, batch_size=16,
                     target_update_interval=100, seed=3),
    # the Atari case of the Pong learning check: the bf16 Nature CNN updated on the background thread
    "pong-bf16": dict(env_id="ALE/Pong-v5", n_timesteps=700, learning_starts=300, buffer_size=1000, batch_size=8,
                      target_update_interval=100, max_episode_frames=800, bf16="true", exploration_fraction=0.5,
                      seed=0),
}


@pytest.mark.parametrize("name", sorted(SMALL_RUNS))
def test_an_overlapped_run_is_the_in_line_run_with_the_one_phase_lag_and_nothing_else(tmp_path, monkeypatch, name):
    """The background thread changes no number: the same run with its phases executed on the main thread at
    submission (acting still one phase behind) is the same run, bit for bit. So what separates an overlapped run
    from an in-line one is the acting lag alone (BENCHMARKS.md, the Pong learning check)."""
    config = Config(train_freq=4, log_interval=100, eval_freq=0, eval_episodes=1, progress_bar=False,
                    tensorboard=False, overlap="true", **SMALL_RUNS[name])
    threaded = train(config, tmp_path / "threaded", out=None)
    monkeypatch.setattr("qzoo.actor.ThreadPoolExecutor", InLineExecutor)
    lagged = train(config, tmp_path / "lagged", out=None)
    updates = (config.n_timesteps - config.learning_starts) // 4
    assert threaded.agent.updates == lagged.agent.updates == updates
    assert progress(tmp_path / "threaded") == progress(tmp_path / "lagged")
    assert same(weights(threaded.agent.q_net), weights(lagged.agent.q_net))
    inline = train(config.replace(overlap="false"), tmp_path / "inline", out=None)
    # the lag does change the run (once a lagged greedy action differs, the episodes part ways)
    assert progress(tmp_path / "inline") != progress(tmp_path / "lagged")
    assert not same(weights(inline.agent.q_net), weights(lagged.agent.q_net))


@pytest.mark.parametrize("warmup", ["random", "policy"])
def test_warmup_actions_random_or_the_agents_own(tmp_path, monkeypatch, warmup):
    """Before learning_starts the loop acts uniformly at random, or (warmup_actions: policy, as Dopamine's noisy
    agents) with the agent's own epsilon-greedy policy from the first step."""
    from qzoo.agent import QAgent

    calls = []
    real_act = QAgent.act

    def recording(self, obs, epsilon, rng):
        calls.append(epsilon)
        return real_act(self, obs, epsilon, rng)

    monkeypatch.setattr(QAgent, "act", recording)
    config = Config(env_id="CartPole-v1", n_timesteps=300, learning_starts=200, train_freq=4, buffer_size=1000,
                    batch_size=16, log_interval=100, eval_freq=0, eval_episodes=1, progress_bar=False,
                    tensorboard=False, seed=0, warmup_actions=warmup, exploration_fraction=1.0, eval_epsilon=0.0)
    train(config, tmp_path / warmup, out=None)
    training = [eps for eps in calls if eps > 0]  # (the final evaluation acts at epsilon 0)
    assert len(training) == (300 if warmup == "policy" else 100)  # the agent chose every action, or those after 200
    # epsilon's schedule runs from step 0 either way: 1 - 0.95 * step / 300
    assert training[0] == pytest.approx(1.0 if warmup == "policy" else 1 - 0.95 * 200 / 300)


def test_importing_qzoo_sets_a_passive_openmp_wait_policy_unless_one_is_set():
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    show = [sys.executable, "-c", "import os, qzoo, torch; print(os.environ['OMP_WAIT_POLICY'])"]
    assert subprocess.run(show, env=env, capture_output=True, text=True).stdout.strip() == "PASSIVE"
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    assert subprocess.run(show, env=env, capture_output=True, text=True).stdout.strip() == "ACTIVE"


def test_the_acting_copy_takes_the_online_networks_noise_and_a_checkpoints_copy():
    config = Config(env_id="CartPole-v1", batch_size=8, buffer_size=200, noisy=True)
    agent, replay = parts(config)
    phases = TrainingPhases(agent, replay, config, dict.fromkeys(TIMING, 0.0), overlap=True)
    obs = torch.from_numpy(np.random.default_rng(2).uniform(-1, 1, (6, 4)).astype(np.float32))
    agent.q_net.reset_noise()  # new noise (a non-persistent buffer, outside the state dict)
    assert not torch.equal(phases.policy.net(obs), agent.q_net(obs))
    phases.policy.refresh()
    assert torch.equal(phases.policy.net(obs), agent.q_net(obs))  # same weights and the same noise
    saved = phases.acting_state()
    agent.q_net.reset_noise()
    phases.policy.refresh()
    before = phases.policy.net(obs)
    phases.load_acting_state(saved)  # a checkpoint's copy comes back exactly
    assert not torch.equal(phases.policy.net(obs), before)
    assert all(torch.equal(a, b) for a, b in zip(phases.acting_state(), saved, strict=True))
    inline = TrainingPhases(agent, replay, config, dict.fromkeys(TIMING, 0.0), overlap=False)
    assert inline.acting_state() is None
    phases.close()


def test_threads_and_overlap_resolve_from_the_network_bf16_and_the_cores(monkeypatch):
    import os

    image, cpu, cuda = (4, 84, 84), torch.device("cpu"), torch.device("cuda")
    pong = Config(env_id="ALE/Pong-v5")
    assert pong.overlap == "auto" and not resolve_overlap(pong, image)  # auto: off (it needs a spare core)
    assert resolve_overlap(pong.replace(overlap="true"), image)
    assert learner_threads(Config(env_id="CartPole-v1"), (4,), cpu) == 1  # an MLP: one thread
    assert learner_threads(Config(env_id="MinAtar/Breakout-v1"), (4, 10, 10), cpu) == 1
    assert learner_threads(pong.replace(bf16="false", target_thread="false"), image, cpu) is None  # torch's default
    assert learner_threads(pong.replace(bf16="true"), image, cpu) == 1  # bf16 on a CPU: one thread
    assert learner_threads(pong.replace(bf16="true"), image, cuda) is None
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert learner_threads(pong.replace(bf16="true", overlap="true"), image, cpu) == 3  # a core left to the actor
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert learner_threads(pong.replace(overlap="true"), image, cpu) == 1
    assert learner_threads(pong.replace(bf16="true", torch_threads=2), image, cpu) == 2  # the setting wins


@pytest.mark.parametrize("settings,switching", [
    (dict(bf16="true"), True), (dict(bf16="false", double=True, dueling=True), False),
    # DrQ(eps)'s: 'same' padding, a target synced after every update (its pass reads the online net), augmentation
    (dict(bf16="true", double=True, dueling=True, conv_padding="same", augmentation="shift_intensity", n_step=3,
          target_update_interval=1), False)],
    ids=["bf16-dqn", "fp32-double-dueling", "drq_eps-bf16"])
def test_the_second_thread_changes_no_number(tmp_path, monkeypatch, settings, switching):
    """target_thread: the target network's pass at s_t (and the weight gradients: test_split_grads) run on a second
    thread beside the online passes; the run is the in-line one bit for bit (progress, weights), and the pass did
    run on that thread, every update (also DrQ(eps)'s, whose target pass reads the online net itself). With 'auto'
    switching between the two ways every few phases, still the same run. One torch thread in both runs (in line,
    float32 would otherwise take torch's default: another reduction order, other numbers)."""
    import functools
    import threading

    import qzoo.agent
    import qzoo.second_thread

    threads = []
    real = qzoo.second_thread.forward_no_grad

    def recording(net, obs):
        threads.append(threading.current_thread().name)
        return real(net, obs)

    monkeypatch.setattr(qzoo.second_thread, "forward_no_grad", recording)
    config = Config(**{**dict(env_id="ALE/Pong-v5", n_timesteps=600, learning_starts=300, buffer_size=1000,
                              batch_size=16, train_freq=4, target_update_interval=100, max_episode_frames=800,
                              exploration_fraction=0.5, log_interval=100, eval_freq=0, eval_episodes=1,
                              progress_bar=False, tensorboard=False, seed=0, overlap="false", torch_threads=1),
                           **settings})
    threaded = train(config.replace(target_thread="true"), tmp_path / "threaded", out=None)
    assert "target_thread: 'true'" in (tmp_path / "threaded" / "config.yaml").read_text()
    assert len(threads) == threaded.agent.updates == 75
    assert set(threads) == {"qzoo-second_0"}
    assert threaded.agent._weight_grads is not None  # (and the weight gradients were made on it: test_split_grads)
    in_line = train(config.replace(target_thread="false"), tmp_path / "in_line", out=None)
    assert len(threads) == 75  # (none more)
    assert progress(tmp_path / "threaded") == progress(tmp_path / "in_line")
    assert same(weights(threaded.agent.q_net), weights(in_line.agent.q_net))
    assert same(weights(threaded.agent.target_net), weights(in_line.agent.target_net))

    if not switching:
        return
    # 'auto', timed in windows of 3 phases every 8 (made short here): some phases with the thread, some without
    monkeypatch.setattr(qzoo.agent, "SecondThread", functools.partial(SecondThread, period=8, window=3, warmup=2))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    switching = train(config.replace(target_thread="auto"), tmp_path / "auto", out=None)
    assert "target_thread: auto" in (tmp_path / "auto" / "config.yaml").read_text()
    second = switching.agent.second_thread
    assert second.phases == 75 and 0 < second.threaded_phases < 75
    assert progress(tmp_path / "auto") == progress(tmp_path / "in_line")
    assert same(weights(switching.agent.q_net), weights(in_line.agent.q_net))


def test_auto_times_both_ways_in_windows_and_uses_the_faster_until_the_next():
    second = SecondThread(adaptive=True, period=10, window=2, warmup=1)
    fast, slow = 1.0, 2.0
    used = []
    for phase in range(23):
        use = second.use()
        used.append(use)
        # the thread is fast in the first period and slow from the second on (another process took the core)
        second.record(use, (fast if phase < 11 else slow) if use else 1.5)
    # warm-up; 2 with, 2 without, the rest of the period with (faster); 2 with (now slower), 2 without, the rest
    # without; the next period's timing starts
    assert used == ([True] + [True, True, False, False] + [True] * 6 + [True, True, False, False] + [False] * 6
                    + [True, True])
    assert second.phases == 23 and second.threaded_phases == 1 + 2 + 6 + 2 + 2


def test_the_target_thread_resolves_from_the_network_the_device_and_the_cores(monkeypatch):
    from qzoo.actor import resolve_target_thread

    image, cpu, cuda = (4, 84, 84), torch.device("cpu"), torch.device("cuda")
    pong = Config(env_id="ALE/Pong-v5")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert pong.target_thread == "auto" and resolve_target_thread(pong, image, cpu) == "auto"  # timed, per phase
    assert resolve_target_thread(pong, image, cuda) == "false"  # (a GPU runs the passes asynchronously anyway)
    assert resolve_target_thread(Config(env_id="CartPole-v1"), (4,), cpu) == "false"  # MLPs: MLPPhase
    assert resolve_target_thread(pong.replace(target_thread="false"), image, cpu) == "false"
    # float32 with the thread: one torch thread per pass, not torch's default of one per core
    assert learner_threads(pong.replace(bf16="false", target_thread="true"), image, cpu) == 1
    assert learner_threads(pong.replace(bf16="false", target_thread="auto"), image, cpu) == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert resolve_target_thread(pong, image, cpu) == "false"  # one core: nothing to run it beside
    assert resolve_target_thread(pong.replace(target_thread="true"), image, cpu) == "true"


def test_the_acting_copy_draws_fresh_noise_from_the_agents_generator():
    """acting_noise: fresh, overlapped: the acting copy redraws its noise before every action, on the loop's thread,
    from the agent's generator, so its first actions are those the agent in line would choose."""
    config = Config(env_id="CartPole-v1", batch_size=8, buffer_size=200, noisy=True, acting_noise="fresh")
    agent, replay = parts(config)
    in_line, _ = parts(config)
    phases = TrainingPhases(agent, replay, config, dict.fromkeys(TIMING, 0.0), overlap=True)
    obs = np.random.default_rng(2).uniform(-1, 1, (6, 4)).astype(np.float32)
    for _ in range(3):
        before = [b.clone() for b in phases.policy.net.buffers()]
        np.testing.assert_array_equal(phases.policy.greedy(obs), in_line.greedy(obs))
        assert not same(before, list(phases.policy.net.buffers()))
        assert same(list(phases.policy.net.buffers()), list(in_line.q_net.buffers()))
    assert torch.equal(agent.acting_noise.get_state(), in_line.acting_noise.get_state())
    phases.close()
