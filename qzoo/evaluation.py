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
    """Play ``n_episodes`` episodes, epsilon-greedily, in ``env``: a single (non-vector) env, or a list of such envs
    played side by side. Env i is seeded ``seed + i`` at its first reset and draws from a random stream of its own
    (``default_rng(seed + i)``, as :func:`qzoo.agent.epsilon_greedy` draws for one observation), so every call
    with the same seed faces the same start states, and each env of a list plays exactly what it would play alone:
    its fixed share of the episodes (:func:`episode_shares`). Each step the greedy actions of the envs still playing
    come from one ``agent.greedy`` call (one batched forward pass: a Nature CNN scores 8 frames in ~1.8x the time
    of one; batched arithmetic may round differently, so a near-tie can go the other way). ``max_steps`` caps an
    episode that never ends. Results are in env order (env 0's episodes first). ``on_step(episode,
    return_so_far)`` is called at every episode's start and after every step (qzoo.video renders there; one env
    only)."""
    envs = list(env) if isinstance(env, (list, tuple)) else [env]
    envs = envs[:max(1, min(len(envs), n_episodes))]
    if on_step is not None and len(envs) > 1:
        raise ValueError("on_step needs a single evaluation env")
    shares = episode_shares(n_episodes, len(envs))
    rngs = [np.random.default_rng(seed + i) for i in range(len(envs))]
    obs = [np.asarray(e.reset(seed=seed + i)[0]) for i, e in enumerate(envs)]  # asarray: Discrete states are ints
    totals, lengths = [0.0] * len(envs), [0] * len(envs)
    returns, played = [[] for _ in envs], [[] for _ in envs]
    playing = [i for i in range(len(envs)) if shares[i] > 0]
    if on_step is not None and playing:
        on_step(0, 0.0)
    while playing:
        explore = {i: rngs[i].random(1)[0] < epsilon for i in playing}
        actions = {i: int(rngs[i].integers(0, agent.n_actions, 1)[0]) for i in playing}
        greedy = [i for i in playing if not explore[i]]
        if greedy:
            actions.update(zip(greedy, (int(a) for a in agent.greedy(np.stack([obs[i] for i in greedy]))),
                               strict=True))
        for i in playing:
            ob, reward, terminated, truncated, info = envs[i].step(actions[i])
            totals[i] += float(reward)
            lengths[i] += 1
            done = terminated or truncated
            if on_step is not None:
                on_step(len(returns[i]), totals[i])
            if done or lengths[i] >= max_steps:
                # Atari: the whole game's raw score, recorded before any wrapper
                returns[i].append(float(info["game_score"]) if done and "game_score" in info else totals[i])
                played[i].append(lengths[i])
                totals[i], lengths[i] = 0.0, 0
                ob, _ = envs[i].reset()
                if on_step is not None and len(returns[i]) < shares[i]:
                    on_step(len(returns[i]), 0.0)
            obs[i] = np.asarray(ob)
        playing = [i for i in playing if len(returns[i]) < shares[i]]
    return EvalResult(np.array([r for rs in returns for r in rs]), np.array([n for ns in played for n in ns]))


def episode_shares(n_episodes: int, n_envs: int) -> list[int]:
    """How many of ``n_episodes`` each of ``n_envs`` side-by-side envs plays: fixed in advance (as SB3's
    ``evaluate_policy``), so short episodes are not over-represented; the shares differ by at most one."""
    return [(n_episodes + i) // n_envs for i in range(n_envs)]


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
