import pytest

from qzoo.schedules import LinearSchedule, epsilon_schedule


def test_linear_schedule_values():
    s = LinearSchedule(1.0, 0.1, 100)
    assert s(0) == 1.0
    assert s(50) == pytest.approx(0.55)
    assert s(100) == pytest.approx(0.1)
    assert s(10_000) == pytest.approx(0.1)


def test_epsilon_schedule_follows_sb3_fraction_of_training():
    # CartPole preset: fraction 0.16 of 50k steps = 8000 steps from 1.0 to 0.04
    eps = epsilon_schedule(1.0, 0.04, 0.16, 50_000)
    assert eps(0) == 1.0
    assert eps(4000) == pytest.approx(0.52)
    assert eps(8000) == pytest.approx(0.04)
    assert eps(49_999) == pytest.approx(0.04)


def test_zero_duration_is_final_value_and_negative_is_refused():
    assert LinearSchedule(1.0, 0.2, 0)(0) == 0.2
    with pytest.raises(ValueError):
        LinearSchedule(1.0, 0.2, -1)


def test_learning_rate_schedule_linear_to_zero_or_constant():
    from qzoo.schedules import learning_rate_schedule

    lin = learning_rate_schedule("linear", 2.3e-3, 50_000)  # RL Zoo's lin_2.3e-3 over a 50k-step run
    assert lin(0) == 2.3e-3
    assert lin(12_500) == pytest.approx(1.725e-3)  # a quarter of the way: 3/4 of the rate
    assert lin(50_000) == 0.0
    const = learning_rate_schedule("constant", 2.3e-3, 50_000)
    assert const(0) == const(49_999) == 2.3e-3


@pytest.mark.parametrize("schedule,expected", [("linear", 1e-3 * (1 - 960 / 1000)), ("constant", 1e-3)])
def test_training_steps_the_optimizer_with_the_scheduled_rate(schedule, expected):
    """The last training phase of a 1000-step run with train_freq 64 is at step 960: a linear schedule gives it
    1e-3 * (1 - 960/1000) = 4e-5; the constant one 1e-3."""
    from qzoo.resolve import resolve
    from qzoo.trainer import train

    config = resolve("qzoo/Corridor-v0", sets=[f"learning_rate_schedule={schedule}", "learning_rate=1e-3",
                                               "n_timesteps=1000", "train_freq=64", "gradient_steps=2",
                                               "learning_starts=100", "eval_freq=0", "eval_episodes=1",
                                               "progress_bar=false", "tensorboard=false"])
    result = train(config, None, out=None)
    assert result.agent.optimizer.param_groups[0]["lr"] == pytest.approx(expected, rel=1e-12)
    assert result.agent.updates == 2 * (1000 // 64 - 1)  # phases at 128, 192, ..., 960 (64 <= learning_starts)


def test_a_delayed_decay_holds_the_start_as_dopamine_does():
    """Dopamine's linearly_decaying_epsilon (DrQ(eps): warm-up 1,600 steps, decay period 5,000, final 0.01):
    epsilon = 0.01 + 0.99 * clip((5000 + 1600 - t) / 5000, 0, 1). By hand: t 1600 -> 1.0; t 4100 -> 0.01 + 0.99 * 0.5
    = 0.505; t 6600 -> 0.01."""
    eps = epsilon_schedule(1.0, 0.01, 0.05, 100_000, delay=1600)  # 5% of 100k = 5,000 steps of decay
    assert eps(0) == 1.0 and eps(1600) == 1.0
    assert eps(4100) == pytest.approx(0.505) and eps(6600) == pytest.approx(0.01) and eps(50_000) == pytest.approx(0.01)
    dopamine = lambda t: 0.01 + min(max((5000 + 1600 - t) / 5000, 0.0), 1.0) * 0.99  # noqa: E731
    assert all(eps(t) == pytest.approx(dopamine(t)) for t in range(0, 8000, 37))
    assert epsilon_schedule(1.0, 0.01, 0.05, 100_000)(1600) < 1.0  # no delay (SB3's): decays from step 0
    assert LinearSchedule(1.0, 0.2, 0, delay=10)(9) == 1.0 and LinearSchedule(1.0, 0.2, 0, delay=10)(10) == 0.2
    with pytest.raises(ValueError):
        LinearSchedule(1.0, 0.2, 5, delay=-1)
