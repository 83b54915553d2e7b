"""Training-loop behaviour through the Python API."""

import csv

import torch

from qzoo.resolve import resolve
from qzoo.trainer import train

FAST = ["progress_bar=false", "tensorboard=false"]


def test_same_seed_gives_the_same_learning_numbers(tmp_path):
    sets = FAST + ["learning_starts=200", "log_interval=250", "eval_freq=500", "eval_episodes=2",
                   "train_freq=4", "gradient_steps=2", "target_update_interval=100", "n_envs=2"]
    for name in ("a", "b"):
        train(resolve("CartPole-v1", flags={"n_timesteps": 1500, "seed": 4}, sets=sets), tmp_path / name, out=None)
    timing = {"steps_per_s", "time_s"}
    rows = [[{k: v for k, v in r.items() if k not in timing} for r in csv.DictReader(open(tmp_path / n /
                                                                                         "progress.csv"))]
            for n in ("a", "b")]
    assert rows[0] == rows[1] and len(rows[0]) == 6
    assert rows[0][-1]["loss"] != ""
    evals = [[r["return_mean"] for r in csv.DictReader(open(tmp_path / n / "evaluations.csv"))] for n in ("a", "b")]
    assert evals[0] == evals[1]


def test_different_seeds_differ(tmp_path):
    sets = FAST + ["learning_starts=200", "log_interval=500", "eval_freq=0", "eval_episodes=1"]
    for seed in (1, 2):
        train(resolve("CartPole-v1", flags={"n_timesteps": 1000, "seed": seed}, sets=sets), tmp_path / str(seed),
              out=None)
    a, b = (list(csv.DictReader(open(tmp_path / str(s) / "progress.csv"))) for s in (1, 2))
    assert [r["return_mean"] for r in a] != [r["return_mean"] for r in b]


def test_truncation_bootstraps_from_the_final_observation():
    # ConstantReward: reward 1 forever, truncated every 5 steps. With gamma 0.5 the true value is 2.
    # If truncation were treated as termination, Q would settle near 1/(1 - 0.8*0.5) = 1.67 instead.
    config = resolve("qzootest/ConstantReward-v0", flags={"n_timesteps": 3000}, sets=FAST + [
        "gamma=0.5", "learning_rate=3e-3", "net_arch=[]", "learning_starts=100", "train_freq=1",
        "target_update_interval=50", "buffer_size=3000", "eval_freq=0", "eval_episodes=1", "loss=mse"])
    agent = train(config, None, out=None).agent
    q = agent.q_net(torch.ones(1, 1))[0]
    torch.testing.assert_close(q, torch.tensor([2.0, 2.0]), atol=0.03, rtol=0)


def test_interrupt_keeps_logs_and_writes_a_checkpoint(tmp_path, monkeypatch):
    from qzoo import trainer

    calls = {"n": 0}
    real = trainer.evaluate

    def interrupting_evaluate(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(trainer, "evaluate", interrupting_evaluate)
    config = resolve("qzoo/Corridor-v0", sets=FAST + ["eval_freq=500", "log_interval=250"])
    result = train(config, tmp_path / "run", out=None)
    assert result.interrupted and result.steps == 1000
    assert (tmp_path / "run" / "checkpoints" / "step_1000.pt").is_file()
    assert len(list(csv.DictReader(open(tmp_path / "run" / "progress.csv")))) == 4
    assert not (tmp_path / "run" / "model.pt").exists()


def test_a_run_stopped_by_its_evaluation_hook_closes_its_evaluation_env(tmp_path, monkeypatch):
    """Tuning prunes a trial by raising from on_eval; many pruned trials in one worker must not leak their envs
    or log files."""
    import pytest

    from qzoo import trainer

    closed = []

    def spy_make_eval_envs(*args, **kwargs):
        envs = real_make_eval_envs(*args, **kwargs)
        for env in envs:
            env.close = (lambda close: lambda: (closed.append(True), close()))(env.close)
        return envs

    class Pruned(Exception):
        pass

    def prune(step, result):
        raise Pruned

    real_make_eval_envs = trainer.make_eval_envs
    monkeypatch.setattr(trainer, "make_eval_envs", spy_make_eval_envs)
    config = resolve("qzoo/Corridor-v0", flags={"n_timesteps": 400}, sets=FAST + [
        "learning_starts=50", "eval_freq=100", "eval_episodes=2", "eval_envs=2", "net_arch=[8]"])
    with pytest.raises(Pruned):
        train(config, tmp_path / "run", on_eval=prune, out=None)
    assert closed == [True, True]  # both envs of the side-by-side evaluation
    rows = list(csv.DictReader(open(tmp_path / "run" / "evaluations.csv")))
    assert [int(r["step"]) for r in rows] == [100]  # the evaluation that was pruned is in the log


def test_learning_from_step_0_waits_for_the_first_n_step_transition(tmp_path):
    """learning_starts 0 with 5-step returns: the replay holds no transition until the 5th step (the n-step window
    fills first), so the learning phase at step 4 has nothing to sample; it is skipped, not an error ("cannot sample
    from an empty replay buffer" stopped `qzoo tune LunarLander-v3` with n_step 5 on the preset's learning_starts 0)."""
    sets = FAST + ["learning_starts=0", "n_step=5", "train_freq=4", "gradient_steps=1", "batch_size=8",
                   "log_interval=100", "eval_freq=0", "eval_episodes=1"]
    result = train(resolve("CartPole-v1", flags={"n_timesteps": 200, "seed": 0}, sets=sets), tmp_path, out=None)
    assert result.steps == 200
    rows = list(csv.DictReader(open(tmp_path / "progress.csv")))
    assert rows[-1]["loss"] != ""  # it learned once transitions were there


def test_exploration_delay_holds_epsilon_then_decays_in_the_logged_run(tmp_path):
    """exploration_delay 500, fraction 0.5 of 2,000 steps: epsilon 1 through step 500, then down to 0.04 at step
    1,500 (by hand: step 750 -> 1 - 0.96 * 250 / 1000 = 0.76; step 1000 -> 0.52)."""
    sets = FAST + ["exploration_delay=500", "exploration_fraction=0.5", "exploration_final_eps=0.04",
                   "log_interval=250", "eval_freq=0", "eval_episodes=1", "learning_starts=100"]
    train(resolve("CartPole-v1", flags={"n_timesteps": 2000, "seed": 0}, sets=sets), tmp_path, out=None)
    eps = {int(r["step"]): float(r["epsilon"]) for r in csv.DictReader(open(tmp_path / "progress.csv"))}
    # (the logged epsilon is the one the step's action used: step t acts with epsilon(t - 1))
    assert eps[250] == 1.0 and eps[500] == 1.0
    assert abs(eps[750] - 0.76) < 0.002 and abs(eps[1000] - 0.52) < 0.002 and eps[1750] == 0.04


def test_a_run_puts_back_the_process_wide_state_it_set(monkeypatch):
    """train() sets torch's threads (here torch_threads=1), flushes denormal floats and seeds the global numpy and
    torch generators for its run; when it returns, and when it raises, each is as it was: the next run in the
    process (a bench worker's next job, a tuning trial) starts as a first one would."""
    import numpy as np
    import pytest

    from qzoo import trainer
    from qzoo.trainer import flushing_denormals

    config = resolve("CartPole-v1", flags={"n_timesteps": 300, "seed": 7}, sets=FAST + [
        "learning_starts=100", "torch_threads=1", "eval_freq=0", "eval_episodes=1"])
    before = torch.get_num_threads()
    try:
        for outcome in ("returns", "raises"):
            torch.set_num_threads(2)
            torch.set_flush_denormal(False)
            np.random.seed(123)
            torch.manual_seed(456)
            if outcome == "raises":  # after the threads and denormal flushing are set, before the loop
                def broken(config):
                    assert torch.get_num_threads() == 1 and flushing_denormals()  # the run's own state, set
                    raise RuntimeError("no env")
                monkeypatch.setattr(trainer, "make_vec_env", broken)
                with pytest.raises(RuntimeError, match="no env"):
                    train(config, None, out=None)
            else:
                train(config, None, out=None)
            assert torch.get_num_threads() == 2, outcome
            assert not flushing_denormals(), outcome
            assert np.random.random() == np.random.RandomState(123).random_sample(), outcome
            assert torch.rand(1).item() == torch.rand(1, generator=torch.Generator().manual_seed(456)).item(), outcome
    finally:
        torch.set_num_threads(before)
