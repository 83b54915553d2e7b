import pytest

from qzoo.config import Config, ConfigError, coerce
from qzoo.resolve import parse_set, preset_file_values, preset_values, resolve


def test_rl_zoo_cartpole_preset_values():
    c = resolve("CartPole-v1", preset_file="rl-zoo")
    assert (c.n_timesteps, c.learning_rate, c.batch_size, c.buffer_size) == (50_000, 2.3e-3, 64, 100_000)
    assert (c.target_update_interval, c.train_freq, c.gradient_steps) == (10, 256, 128)
    assert (c.exploration_fraction, c.exploration_final_eps, c.net_arch) == (0.16, 0.04, [256, 256])


def test_qzoos_own_cartpole_preset_is_still_a_dqn():
    c = resolve("CartPole-v1")
    assert (c.learning_rate, c.learning_rate_schedule, c.double, c.n_step) == (4e-3, "linear", True, 3)
    assert (c.net_arch, c.batch_size, c.train_freq, c.gradient_steps, c.target_update_interval, c.tau) == \
        ([128, 128], 128, 256, 64, 256, 0.5)
    # one Q-network, epsilon-greedy exploration, uniform replay, expected Q-values (a dueling head): DQN with
    # Double/n-step targets; no noisy nets, prioritized replay or distributional head
    assert (c.noisy, c.dueling, c.prioritized, c.distributional, c.exploration_final_eps) == \
        (False, True, False, "none", 0.04)


def test_qzoos_own_mountaincar_preset_is_still_a_dqn_and_rl_zoos_is_one_flag_away():
    c, zoo = resolve("MountainCar-v0"), resolve("MountainCar-v0", preset_file="rl-zoo")
    assert (c.learning_rate, c.learning_rate_schedule, c.double, c.n_step, c.buffer_size) == \
        (4e-3, "linear", True, 3, 50_000)
    assert (c.exploration_fraction, c.exploration_final_eps, c.n_timesteps) == (0.3, 0.02, 120_000)
    assert (c.noisy, c.dueling, c.prioritized, c.distributional) == (False, False, False, "none")
    # RL Zoo's entry, unchanged; everything else the two share
    assert (zoo.learning_rate, zoo.learning_rate_schedule, zoo.double, zoo.n_step, zoo.buffer_size) == \
        (4e-3, "constant", False, 1, 10_000)
    assert (zoo.exploration_fraction, zoo.exploration_final_eps) == (0.2, 0.07)
    changed = {k for k, v in c.to_dict().items() if zoo.to_dict()[k] != v}
    assert changed == {"learning_rate_schedule", "double", "n_step", "buffer_size", "exploration_fraction",
                       "exploration_final_eps"}


def test_qzoos_own_lunarlander_preset_is_still_a_dqn():
    c, zoo = resolve("LunarLander-v3"), resolve("LunarLander-v3", preset_file="rl-zoo")
    assert (c.learning_rate, c.learning_rate_schedule, c.double, c.n_step, c.exploration_fraction) == \
        (1.05e-3, "linear", True, 5, 0.2)
    assert (c.noisy, c.dueling, c.prioritized, c.distributional) == (False, False, False, "none")
    changed = {k for k, v in c.to_dict().items() if zoo.to_dict()[k] != v}
    assert changed == {"learning_rate", "learning_rate_schedule", "double", "n_step", "exploration_fraction"}


def test_lunarlander_gradient_steps_minus_one_means_train_freq():
    c = resolve("LunarLander-v3")
    assert c.gradient_steps == -1 and c.updates_per_phase == 4
    assert c.replace(n_envs=2).updates_per_phase == 8


def test_unknown_env_id_gets_the_default_preset():
    assert preset_values("dqn", "SomethingElse-v0")["net_arch"] == [64, 64]


def test_resolution_order_defaults_preset_file_flags_set(tmp_path):
    f = tmp_path / "p.yml"
    f.write_text("CartPole-v1:\n  learning_rate: 0.01\n  batch_size: 16\n  seed: 5\n")
    c = resolve("CartPole-v1", preset_file=str(f), flags={"seed": 3, "n_timesteps": None},
                sets=["batch_size=8", "double=true"])
    assert c.learning_rate == 0.01  # file beats preset
    assert c.seed == 3  # flag beats file
    assert c.batch_size == 8  # --set beats everything
    assert c.double is True
    assert c.n_timesteps == 50_000  # a flag left unset changes nothing


def test_flat_preset_file(tmp_path):
    f = tmp_path / "flat.yml"
    f.write_text("learning_rate: 0.02\npolicy_kwargs: \"dict(net_arch=[32, 32])\"\n")
    assert preset_file_values(f, "CartPole-v1") == {"learning_rate": 0.02, "net_arch": [32, 32]}


def test_coercion_from_strings():
    assert coerce("learning_rate", "1e-3") == 1e-3
    assert coerce("n_timesteps", "5e4") == 50_000
    assert coerce("n_timesteps", 5e4) == 50_000
    assert coerce("buffer_size", "100_000") == 100_000
    assert coerce("double", "true") is True and coerce("double", "0") is False
    assert coerce("net_arch", "[128, 64]") == [128, 64]
    assert coerce("env_kwargs", "{length: 4}") == {"length": 4}


@pytest.mark.parametrize("key,value,needle", [
    ("learning_rate", "-1", "'learning_rate' must be a finite number > 0"),
    ("gamma", "1.5", "'gamma' must be a number in [0, 1]"),
    ("batch_size", "2.5", "'batch_size' must be an integer"),
    ("double", "maybe", "'double' must be true or false"),
    ("loss", "l1", "'loss' must be one of 'huber', 'mse'"),
    ("net_arch", "[0, 5]", "'net_arch' must be a list of positive layer sizes"),
    ("gradient_steps", "0", "'gradient_steps' must be an integer >= 1, or -1"),
    ("tau", "0", "'tau' must be a number in (0, 1]"),
    ("conv_padding", "full", "'conv_padding' must be one of 'valid', 'same'"),
    ("weight_init", "orthogonal", "'weight_init' must be one of 'torch', 'xavier_uniform'"),
    ("max_grad_norm", "0", "'max_grad_norm' must be a number > 0 (inf: none)"),
    ("max_grad_norm", "-inf", "'max_grad_norm' must be a number > 0 (inf: none)"),
    ("device", "tpu", "'device' must be 'auto', 'cpu', 'cuda' or 'cuda:N'"),
])
def test_bad_values_name_the_key_and_what_is_allowed(key, value, needle):
    with pytest.raises(ConfigError) as err:
        resolve("CartPole-v1", sets=[f"{key}={value}"])
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_batch_larger_than_buffer_is_refused():
    with pytest.raises(ConfigError, match="'batch_size' \\(64\\) must not exceed 'buffer_size' \\(32\\)"):
        resolve("CartPole-v1", sets=["batch_size=64", "buffer_size=32"])


def test_unknown_key_suggests_the_close_one():
    with pytest.raises(ConfigError, match="unknown setting 'learnig_rate' \\(did you mean 'learning_rate'\\?\\)"):
        parse_set(["learnig_rate=1"])
    with pytest.raises(ConfigError, match="--set expects key=value"):
        parse_set(["learning_rate"])


def test_preset_file_problems(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        resolve("CartPole-v1", preset_file=str(tmp_path / "missing.yml"))
    bad = tmp_path / "bad.yml"
    bad.write_text("a: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        resolve("CartPole-v1", preset_file=str(bad))
    evil = tmp_path / "evil.yml"
    evil.write_text("policy_kwargs: \"__import__('os').system('true')\"\n")
    with pytest.raises(ConfigError, match="policy_kwargs must be a literal"):
        resolve("CartPole-v1", preset_file=str(evil))
    other = tmp_path / "other.yml"
    other.write_text("Acrobot-v1:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="no entry for 'CartPole-v1'"):
        resolve("CartPole-v1", preset_file=str(other))


def test_config_round_trips_through_dict():
    c = resolve("CartPole-v1", sets=["double=true"])
    assert Config(**c.to_dict()) == c


def test_the_best_evaluation_is_named_only_when_it_beat_the_final_one():
    from types import SimpleNamespace

    from qzoo.cli import best_evaluation_line

    def result(best, final):
        return SimpleNamespace(best_eval_mean=best, final_eval=SimpleNamespace(mean=final), run_dir="runs/x")

    assert best_evaluation_line(result(500.0, 500.0), tabular=False) is None
    assert best_evaluation_line(result(23.2, 23.2), tabular=False) is None
    assert best_evaluation_line(result(500.0, 23.2), tabular=False) == (
        "best evaluation:  return 500.00, earlier in training (best_model.pt; qzoo eval runs/x --model best)")
    assert "(best_qtable.csv;" in best_evaluation_line(result(0.8, 0.7), tabular=True)


def test_rl_zoo_lin_prefix_in_a_preset_is_a_linear_learning_rate_schedule(tmp_path):
    f = tmp_path / "zoo.yml"
    f.write_text("CartPole-v1:\n  learning_rate: lin_2.3e-3\n  batch_size: 64\n")
    config = resolve("CartPole-v1", preset_file=str(f))
    assert (config.learning_rate, config.learning_rate_schedule) == (2.3e-3, "linear")
    with pytest.raises(ConfigError, match="setting 'learning_rate' must be a number, got 'lin_x'"):
        resolve("CartPole-v1", sets=["learning_rate=lin_x"])
    with pytest.raises(ConfigError, match="'learning_rate_schedule' must be one of 'constant', 'linear'"):
        resolve("CartPole-v1", sets=["learning_rate_schedule=cosine"])


def test_the_rl_zoo_preset_replaces_qzoos_own_rather_than_adding_to_it(tmp_path, monkeypatch):
    """`--preset rl-zoo` reads qzoo/presets/rl-zoo/dqn.yml in place of qzoo/presets/dqn.yml: a setting that only
    qzoo's preset makes (here double and a learning-rate schedule) is back at the Config default."""
    from qzoo import resolve as resolve_module

    (tmp_path / "rl-zoo").mkdir()
    (tmp_path / "dqn.yml").write_text("default: {batch_size: 7}\nCartPole-v1: {double: true, "
                                      "learning_rate_schedule: linear, gamma: 0.9}\n")
    (tmp_path / "rl-zoo" / "dqn.yml").write_text("atari: {batch_size: 5}\nCartPole-v1: {gamma: 0.98}\n")
    monkeypatch.setattr(resolve_module, "PRESET_DIR", tmp_path)
    own, zoo = resolve("CartPole-v1"), resolve("CartPole-v1", preset_file="rl-zoo")
    assert (own.double, own.learning_rate_schedule, own.gamma, own.batch_size) == (True, "linear", 0.9, 7)
    assert (zoo.double, zoo.learning_rate_schedule, zoo.gamma, zoo.batch_size) == (False, "constant", 0.98, 32)
    assert resolve("CartPole-v1", preset_file="rl-zoo", sets=["gamma=0.5"]).gamma == 0.5  # --set still wins
    assert preset_values("dqn", "ALE/Pong-v5", "rl-zoo") == {"batch_size": 5}
    with pytest.raises(ConfigError, match="preset 'rl-zoo' has no entry for 'Acrobot-v1' "
                                          "\\(it has: atari, CartPole-v1\\)"):
        resolve("Acrobot-v1", preset_file="rl-zoo")
    # a file of that name in the working directory, or a path, is a preset file as before
    monkeypatch.chdir(tmp_path)
    (tmp_path / "flat.yml").write_text("gamma: 0.3\n")
    assert resolve("CartPole-v1", preset_file="flat.yml").gamma == 0.3


def test_named_preset_course_is_rl_zoo_atari_dqn_at_1m_steps(tmp_path, monkeypatch):
    c = resolve("ALE/SpaceInvaders-v5", "dqn", "course")
    assert (c.n_timesteps, c.buffer_size, c.learning_starts, c.learning_rate, c.batch_size) == (
        1_000_000, 100_000, 100_000, 1e-4, 32)
    assert (c.target_update_interval, c.train_freq, c.exploration_fraction, c.exploration_final_eps) == (
        1000, 4, 0.1, 0.01)
    assert c.network == "nature_cnn" and c.eval_epsilon == 0.05
    with pytest.raises(ConfigError, match=r"preset 'corse' is neither a file nor a named preset \(named: "
                                          r"course, rl-zoo\)"):
        resolve("ALE/SpaceInvaders-v5", "dqn", "corse")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "course").write_text("n_timesteps: 5\n")  # a file of that name wins over the shipped preset
    assert resolve("CartPole-v1", "dqn", "course").n_timesteps == 5


@pytest.mark.parametrize("algo", ["der", "drq_eps"])
def test_atari_100k_presets_follow_the_dopamine_protocol(algo):
    c = resolve("ALE/Breakout-v5", algo)
    assert (c.n_timesteps, c.n_step, c.learning_starts, c.train_freq, c.gradient_steps, c.batch_size) == (
        100_000, 10, 1600, 1, 1, 32)
    assert (c.learning_rate, c.optimizer_eps, c.eval_epsilon, c.eval_episodes, c.eval_freq) == (
        1e-4, 1.5e-4, 0.001, 100, 0)
    assert (c.atari_protocol, c.noop_max, c.fire_reset, c.episodic_life, c.max_episode_frames) == (
        "nature", 0, False, True, 108_000)
    assert c.double and c.dueling
    # Dopamine's FullRainbowNetwork ('SAME' padding, Glorot-uniform kernels, zero biases), no gradient clipping
    assert (c.conv_padding, c.weight_init, c.max_grad_norm) == ("same", "xavier_uniform", float("inf"))
    if algo == "der":
        assert c.noisy and c.prioritized and c.distributional == "c51" and c.target_update_interval == 2000
        assert c.augmentation == "none" and c.warmup_actions == "policy"
        assert c.prioritized_beta == c.prioritized_beta_final == 0.5  # 1 / sqrt(P(i)), never annealed
    else:
        assert not c.noisy and not c.prioritized and c.distributional == "none" and c.target_update_interval == 1
        assert c.augmentation == "shift_intensity" and c.exploration_final_eps == 0.01
        assert c.warmup_actions == "random" and c.exploration_delay == 1600  # epsilon 1 for the warm-up ...
        assert round(c.exploration_fraction * c.n_timesteps) == 5000  # ... then 5,000 decay steps
    assert resolve("CartPole-v1", algo).augmentation == "none"  # pixels only


def test_max_grad_norm_inf_means_no_clipping_and_der_uses_it():
    assert resolve("CartPole-v1", sets=["max_grad_norm=inf"]).max_grad_norm == float("inf")
    assert resolve("ALE/Pong-v5", algo="der").max_grad_norm == float("inf")  # Dopamine does not clip
