"""Every setting alone, and all of them together, must solve the corridor (optimal: return 1.0 in 7 steps)
within seconds."""

import pytest

from qzoo.resolve import resolve
from qzoo.trainer import train

VARIANTS = {
    "dqn": [],
    "double": ["double=true"],
    "dueling": ["dueling=true"],
    "prioritized": ["prioritized=true"],
    "n_step": ["n_step=3"],
    "noisy": ["noisy=true"],
    "c51": ["distributional=c51", "v_min=0", "v_max=1", "n_atoms=11"],
    "all": ["double=true", "dueling=true", "prioritized=true", "n_step=3", "noisy=true", "distributional=c51",
            "v_min=0", "v_max=1", "n_atoms=11"],
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_setting_solves_the_corridor(variant):
    config = resolve("qzoo/Corridor-v0", sets=["progress_bar=false", "tensorboard=false", *VARIANTS[variant]])
    result = train(config, None, out=None)
    assert result.final_eval.mean == 1.0
    assert result.final_eval.lengths.tolist() == [7] * config.eval_episodes


def test_rainbow_preset_solves_the_corridor():
    config = resolve("qzoo/Corridor-v0", algo="rainbow", sets=["progress_bar=false", "tensorboard=false"])
    assert config.dueling and config.noisy and config.prioritized and config.n_step == 3
    assert config.distributional == "c51" and config.double
    result = train(config, None, out=None)
    assert result.final_eval.mean == 1.0 and result.final_eval.lengths.tolist() == [7] * config.eval_episodes
