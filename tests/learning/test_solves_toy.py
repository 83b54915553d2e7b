"""DQN must solve the corridor (optimal: return 1.0 in 7 steps) within seconds."""

import pytest

from qzoo.config import resolve
from qzoo.trainer import train


@pytest.mark.parametrize("double", [False, True])
def test_dqn_solves_the_corridor(double):
    config = resolve("qzoo/Corridor-v0", sets=["progress_bar=false", "tensorboard=false", f"double={double}"])
    result = train(config, None, out=None)
    assert result.final_eval.mean == 1.0
    assert result.final_eval.lengths.tolist() == [7] * config.eval_episodes
