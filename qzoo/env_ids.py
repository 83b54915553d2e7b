"""What kind of environment an env id names (Atari, MinAtar), asked without building anything.

Lowest layer with :mod:`qzoo.config`: it imports no other qzoo module, so the config (presets pick an ``atari`` or
``minatar`` entry by the id), the replay buffer, plotting and the tools may ask it without pulling in the env
factory (:mod:`qzoo.envs` imports the config)."""

from __future__ import annotations

import ale_py
import gymnasium as gym

gym.register_envs(ale_py)  # ale-py registers ALE/<Game>-v5 and <Game>NoFrameskip-v4 when imported

ATARI_ENTRY_POINTS = ("ale_py.env:AtariEnv", "ale_py.env.AtariEnv")


def is_atari_id(env_id: str) -> bool:
    """True for the ids ale-py registers (``ALE/Pong-v5`` and the older ``PongNoFrameskip-v4`` style ones)."""
    try:
        entry_point = gym.spec(env_id).entry_point
    except gym.error.Error:
        return False
    return isinstance(entry_point, str) and entry_point in ATARI_ENTRY_POINTS


def atari_game(env_id: str) -> str:
    """The ALE ROM id of an Atari env id: ``ALE/SpaceInvaders-v5`` -> ``space_invaders``."""
    return gym.spec(env_id).kwargs["game"]


def is_minatar_id(env_id: str) -> bool:
    return env_id.startswith("MinAtar/")
