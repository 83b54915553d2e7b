"""Evaluation: run whole episodes with a fixed epsilon and report returns as the environment gives them.

For Atari the evaluation env plays whole games (all lives) with the game's own rewards, and an episode's
return is the game score (``info["game_score"]``); :func:`human_normalized` puts it on the human/random scale.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class EvalResult:
    returns: np.ndarray
    lengths: np.ndarray

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        return float(np.std(self.returns))

    def summary(self) -> str:
        return (f"return {self.mean:.2f} ± {self.std:.2f}, length {np.mean(self.lengths):.1f} "
                f"± {np.std(self.lengths):.1f} over {len(self.returns)} episodes")


def evaluate(agent, env, n_episodes: int, epsilon: float, seed: int, max_steps: int = 100_000,
             on_step: Callable[[int, float], None] | None = None) -> EvalResult:
    """Play ``n_episodes`` episodes in ``env`` (a single, non-vector env). The first reset is seeded, so
    every call with the same seed faces the same start states; ``max_steps`` caps an episode that never ends.
    ``on_step(episode, return_so_far)`` is called after every reset and every step (qzoo.video renders there)."""
    rng = np.random.default_rng(seed)
    returns, lengths = [], []
    obs, _ = env.reset(seed=seed)
    for episode in range(n_episodes):
        total, length, done = 0.0, 0, False
        if on_step is not None:
            on_step(episode, total)
        while not done and length < max_steps:
            action = int(agent.act(np.asarray(obs)[None], epsilon, rng)[0])  # asarray: Discrete states are ints
            obs, reward, terminated, truncated, info = env.step(action)
            total += float(reward)
            length += 1
            done = terminated or truncated
            if on_step is not None:
                on_step(episode, total)
        if done and "game_score" in info:  # Atari: the whole game's raw score, recorded before any wrapper
            total = float(info["game_score"])
        returns.append(total)
        lengths.append(length)
        obs, _ = env.reset()
    return EvalResult(np.array(returns), np.array(lengths))


# Random and human scores per Atari game (ALE ROM ids), as in DeepMind's dqn_zoo ``atari_data.py`` (also
# Dopamine's normalisation table): averages over episodes starting with 1-30 no-ops, capped at 108,000 frames.
ATARI_RANDOM_HUMAN = {
    "alien": (227.8, 7127.7), "amidar": (5.8, 1719.5), "assault": (222.4, 742.0), "asterix": (210.0, 8503.3),
    "asteroids": (719.1, 47388.7), "atlantis": (12850.0, 29028.1), "bank_heist": (14.2, 753.1),
    "battle_zone": (2360.0, 37187.5), "beam_rider": (363.9, 16926.5), "berzerk": (123.7, 2630.4),
    "bowling": (23.1, 160.7), "boxing": (0.1, 12.1), "breakout": (1.7, 30.5), "centipede": (2090.9, 12017.0),
    "chopper_command": (811.0, 7387.8), "crazy_climber": (10780.5, 35829.4), "defender": (2874.5, 18688.9),
    "demon_attack": (152.1, 1971.0), "double_dunk": (-18.6, -16.4), "enduro": (0.0, 860.5),
    "fishing_derby": (-91.7, -38.7), "freeway": (0.0, 29.6), "frostbite": (65.2, 4334.7),
    "gopher": (257.6, 2412.5), "gravitar": (173.0, 3351.4), "hero": (1027.0, 30826.4),
    "ice_hockey": (-11.2, 0.9), "jamesbond": (29.0, 302.8), "kangaroo": (52.0, 3035.0), "krull": (1598.0, 2665.5),
    "kung_fu_master": (258.5, 22736.3), "montezuma_revenge": (0.0, 4753.3), "ms_pacman": (307.3, 6951.6),
    "name_this_game": (2292.3, 8049.0), "phoenix": (761.4, 7242.6), "pitfall": (-229.4, 6463.7),
    "pong": (-20.7, 14.6), "private_eye": (24.9, 69571.3), "qbert": (163.9, 13455.0),
    "riverraid": (1338.5, 17118.0), "road_runner": (11.5, 7845.0), "robotank": (2.2, 11.9),
    "seaquest": (68.4, 42054.7), "skiing": (-17098.1, -4336.9), "solaris": (1236.3, 12326.7),
    "space_invaders": (148.0, 1668.7), "star_gunner": (664.0, 10250.0), "surround": (-10.0, 6.5),
    "tennis": (-23.8, -8.3), "time_pilot": (3568.0, 5229.2), "tutankham": (11.4, 167.6),
    "up_n_down": (533.4, 11693.2), "venture": (0.0, 1187.5), "video_pinball": (16256.9, 17667.9),
    "wizard_of_wor": (563.5, 4756.5), "yars_revenge": (3092.9, 54576.9), "zaxxon": (32.5, 9173.3),
}
_BY_KEY = {name.replace("_", ""): scores for name, scores in ATARI_RANDOM_HUMAN.items()}


def human_normalized(game: str, score: float) -> float | None:
    """(score - random) / (human - random) for an Atari game named by its ROM id (``space_invaders``) or its
    env-id name (``SpaceInvaders``); None for a game without published human and random scores."""
    scores = _BY_KEY.get(game.replace("_", "").lower())
    if scores is None:
        return None
    random, human = scores
    return (score - random) / (human - random)
