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
