"""Search spaces as data: validation of specs, the sample-then-convert step, and the per-trial config."""

import math

import optuna
import pytest

from qzoo.config import ConfigError
from qzoo.resolve import resolve
from qzoo.tuning import (
    NET_ARCHS,
    SPACES,
    Param,
    TuneOptions,
    check_options,
    eval_freq_for,
    load_space,
    parse_enqueue,
    parse_param,
    to_settings,
    trial_config,
)


def write(tmp_path, text):
    path = tmp_path / "space.yml"
    path.write_text(text)
    return path


def test_derived_parameters_convert_to_settings():
    base = resolve("CartPole-v1")  # train_freq 256 in RL Zoo's CartPole preset
    params = {"one_minus_gamma": 0.02, "subsample_steps": 4, "net_arch": "tiny", "learning_rate": 3e-4}
    assert to_settings(params, base) == {"gamma": 0.98, "net_arch": [64], "learning_rate": 3e-4,
                                         "gradient_steps": 64}  # 256 // 4
    # a sampled train_freq wins over the base's; gradient_steps never drops below 1
    assert to_settings({"train_freq": 4, "subsample_steps": 8}, base) == {"train_freq": 4, "gradient_steps": 1}
    assert to_settings({"train_freq": 16, "subsample_steps": 2}, base)["gradient_steps"] == 8
    assert to_settings({"net_arch": "[128, 32]"}, base) == {"net_arch": [128, 32]}
    assert NET_ARCHS == {"tiny": [64], "small": [64, 64], "medium": [256, 256]}


def test_trial_config_sets_seed_budget_evaluations_and_stays_quiet():
    base = resolve("CartPole-v1", flags={"n_timesteps": 1000, "seed": 5})
    config = trial_config(base, {"gamma": 0.98, "gradient_steps": 64}, seed_index=2, n_evals=3, eval_episodes=4)
    assert (config.seed, config.n_timesteps, config.gamma, config.gradient_steps) == (7, 1000, 0.98, 64)
    assert config.eval_freq == 334 and config.eval_episodes == 4  # evaluations at 334, 668, then the final one
    assert not config.progress_bar and not config.tensorboard
    assert eval_freq_for(1000, 1) == 0 and eval_freq_for(1000, 4) == 250 and eval_freq_for(10, 3) == 4


def test_every_built_in_space_is_valid_and_each_sample_converts_to_a_valid_config():
    for algo in SPACES:
        space = load_space(algo)
        assert space and all(isinstance(p, Param) for p in space.values())
    base = resolve("CartPole-v1", "rainbow", flags={"n_timesteps": 1000})
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    space = load_space("rainbow")
    for _ in range(20):
        trial = study.ask()
        params = {name: p.suggest(trial) for name, p in space.items()}
        settings = to_settings(params, base)
        config = trial_config(base, settings, 0, 5, 5)
        assert math.isclose(config.gamma, 1 - params["one_minus_gamma"])
        assert config.gradient_steps == max(config.train_freq // params["subsample_steps"], 1)
        assert config.net_arch == NET_ARCHS[params["net_arch"]]
        study.tell(trial, 0.0)


def test_space_file_overrides_extends_and_removes(tmp_path):
    path = write(tmp_path, "learning_rate: {type: float, low: 1.0e-4, high: 1.0e-3}\n"
                           "double: [true, false]\n"
                           "n_step: {type: int, low: 1, high: 5}\n"
                           "net_arch: [tiny, [32, 32]]\n"
                           "buffer_size: null\n")
    space = load_space("dqn", path)
    assert space["learning_rate"] == Param("learning_rate", "float", 1e-4, 1e-3)  # overridden: no longer log
    assert space["double"].choices == (True, False) and space["n_step"] == Param("n_step", "int", 1, 5)
    assert space["net_arch"].choices == ("tiny", "[32, 32]")
    assert "buffer_size" not in space and "train_freq" in space
    only = load_space("dqn", path, replace=True)
    assert set(only) == {"learning_rate", "double", "n_step", "net_arch"}


@pytest.mark.parametrize("text,needle", [
    ("learnig_rate: [0.1]\n", "unknown parameter 'learnig_rate' (did you mean 'learning_rate'?)"),
    ("learning_rate: {type: float, low: 0.1, high: 0.01}\n", "low (0.1) must be below high (0.01)"),
    ("learning_rate: {type: float, low: 0, high: 0.01, log: true}\n", "a log scale needs low > 0"),
    ("learning_rate: {type: normal, low: 0, high: 1}\n", "type must be float, int or categorical"),
    ("learning_rate: {type: float, low: 0.1, hi: 1}\n", "unknown key 'hi' for type float"),
    ("learning_rate: 0.001\n", "must be a distribution such as"),
    ("gamma: {type: float, low: 0.9, high: 1.5}\n", "setting 'gamma' must be a number in [0, 1], got 1.5"),
    ("batch_size: {type: float, low: 16, high: 64}\n", "is an integer: use type int or categorical"),
    ("batch_size: []\n", "choices must be a non-empty list"),
    ("optimizer: [adam, sgd]\n", "setting 'optimizer' must be one of 'adam', 'rmsprop', got 'sgd'"),
    ("net_arch: [huge]\n", "net_arch choices must be tiny, small, medium or lists"),
    ("n_timesteps: [1000]\n", "is not sampled: it is set by --n-timesteps"),
    ("gamma: [0.9, 0.99]\n", "'one_minus_gamma' and 'gamma' both set gamma; keep one"),
    ("env_kwargs: [a]\n", "a dict setting cannot be tuned"),
    ("gym_packages: [a]\n", "a list setting cannot be tuned"),
    ("", "is empty; it maps parameter names to distributions"),
    ("- learning_rate\n", "must be a mapping of parameter names to distributions"),
    ("learning_rate: [\n", "is not valid YAML"),
])
def test_bad_space_files_give_one_line(tmp_path, text, needle):
    with pytest.raises(ConfigError) as e:
        load_space("dqn", write(tmp_path, text))
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_an_empty_space_is_refused(tmp_path):
    path = write(tmp_path, "".join(f"{name}: null\n" for name in SPACES["qlearning"]))
    with pytest.raises(ConfigError, match="the search space is empty: nothing to tune"):
        load_space("qlearning", path)
    with pytest.raises(ConfigError, match="the search space is empty"):
        load_space("dqn", write(tmp_path, "learning_rate: null\n"), replace=True)


def test_qlearning_space_refuses_settings_the_table_does_not_read():
    with pytest.raises(ConfigError, match="--algo qlearning does not read 'batch_size'"):
        parse_param("batch_size", [32, 64], "qlearning", "search space")
    with pytest.raises(ConfigError, match="does not read 'gradient_steps'"):
        parse_param("subsample_steps", [1, 2], "qlearning", "search space")


@pytest.mark.parametrize("changes,needle", [
    ({"sampler": "cmaes"}, "unknown sampler 'cmaes'; allowed: tpe, random"),
    ({"pruner": "hyperband"}, "unknown pruner 'hyperband'; allowed: median, none, halving"),
    ({"n_trials": 0}, "--n-trials must be an integer >= 1"),
    ({"storage": "sqlite:///x.db"}, "--storage needs --study-name"),
    ({"timeout": -1.0}, "--timeout must be a number of seconds > 0"),
    ({"objective": "median"}, "unknown objective 'median'; allowed: mean, min, mean-std"),
    ({"prune_below": 200.0}, "--prune-below needs --objective min (a seed below it caps only the worst seed's "
                             "score), got --objective mean"),
    ({"prune_below": 200.0, "objective": "mean-std"}, "--prune-below needs --objective min"),
    ({"prune_below": math.inf, "objective": "min"}, "--prune-below must be a finite number (an evaluation return), "
                                                    "got inf"),
    ({"prune_below": math.nan, "objective": "min"}, "--prune-below must be a finite number"),
])
def test_bad_options_give_one_line(changes, needle):
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        check_options(TuneOptions("CartPole-v1", **changes))


def test_prune_below_decides_on_the_final_score_alone():
    from qzoo.tuning.objective import below_threshold

    assert below_threshold(199.99, 200.0) and below_threshold(-200.0, -110.0) and below_threshold(math.nan, 0.0)
    assert not below_threshold(200.0, 200.0)  # at the threshold: kept
    assert not below_threshold(-110.0, -110.0) and not below_threshold(-109.5, -110.0)
    assert not below_threshold(-1e9, None)  # no --prune-below: never
    check_options(TuneOptions("CartPole-v1", objective="min", prune_below=-110.0))  # accepted


def test_enqueued_trials_are_read_against_the_space(tmp_path):
    space = load_space("dqn", write(tmp_path, "double: [true, false]\nnet_arch: [tiny, [32, 32]]\n"
                                              "n_step: {type: int, low: 1, high: 5}\n"))
    trials = parse_enqueue(["learning_rate=1e-3,batch_size=128,double=true,net_arch=[32,32]",
                            "net_arch=tiny, n_step=3, train_freq=4, one_minus_gamma=0.01"], space)
    assert trials == [{"learning_rate": 1e-3, "batch_size": 128, "double": True, "net_arch": "[32, 32]"},
                      {"net_arch": "tiny", "n_step": 3, "train_freq": 4, "one_minus_gamma": 0.01}]
    assert type(trials[1]["n_step"]) is int and parse_enqueue([], space) == []


@pytest.mark.parametrize("item,needle", [
    ("learnig_rate=1e-3", "--enqueue: 'learnig_rate' is not a parameter of the search space (did you mean "
                          "'learning_rate'?); its parameters: learning_rate, batch_size"),
    ("learning_rate=0.5", "--enqueue: learning_rate=0.5 is not in the search space (allowed: float log-uniform "
                          "in [1e-05, 0.01])"),
    ("learning_rate=fast", "--enqueue: learning_rate=fast is not in the search space"),
    ("batch_size=100", "--enqueue: batch_size=100 is not in the search space (allowed: 16, 32, 64, 128, 256)"),
    ("n_step=2.5", "--enqueue: n_step=2.5 is not in the search space (allowed: int uniform in [1, 5])"),
    ("n_step=9", "--enqueue: n_step=9 is not in the search space"),
    ("double=maybe", "--enqueue: double=maybe is not in the search space (allowed: True, False)"),
    ("net_arch=[64,64]", "--enqueue: net_arch=[64,64] is not in the search space (allowed: tiny, [32, 32])"),
    ("gamma=0.99", "'gamma' is not a parameter of the search space"),  # the space samples one_minus_gamma
    ("learning_rate", "--enqueue expects NAME=VALUE,NAME=VALUE,..., got 'learning_rate'"),
    ("n_step=1,n_step=3", "--enqueue: 'n_step' is given twice"),
])
def test_bad_enqueued_trials_give_one_line(tmp_path, item, needle):
    space = load_space("dqn", write(tmp_path, "double: [true, false]\nnet_arch: [tiny, [32, 32]]\n"
                                              "n_step: {type: int, low: 1, high: 5}\n"))
    with pytest.raises(ConfigError) as e:
        parse_enqueue([item], space)
    assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)
