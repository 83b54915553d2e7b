"""MinAtar (Young & Tian 2019) as Gymnasium environments: ``MinAtar/<Game>-v1``.

Five Atari-like games on a 10x10 grid (Asterix, Breakout, Freeway, Seaquest, SpaceInvaders), from the ``minatar``
package (its game logic, unchanged). The package's own ``minatar.gym`` wrapper is not used: it does not seed
Gymnasium's ``np_random`` (so ``gymnasium.utils.env_checker`` fails), its sticky-action memory survives a reset
(a seeded reset does not replay the same episode) and it gives channels-last bool observations. This adapter:

- observation: ``uint8`` array of shape (channels, 10, 10), values 0/1, channels first as torch's Conv2d reads
  them (the game's (10, 10, channels) bool state, transposed). Channels per game: Asterix 4, Breakout 4,
  Freeway 7, Seaquest 10, SpaceInvaders 6.
- actions: ``minimal_action_set=True`` (default; the package's ``-v1`` convention): only the game's meaningful
  actions (Breakout 3, Freeway 3, Asterix 5, SpaceInvaders 4, Seaquest 6); ``False``: all six MinAtar actions
  (no-op, left, up, right, down, fire), as the MinAtar paper's agents used. (No ``-v0`` ids with the full set
  are registered: Gymnasium would call them out of date; use ``env_kwargs: {minimal_action_set: false}``.)
- ``sticky_action_prob`` (default 0.1, as in MinAtar and its paper): with this probability the previous action
  is repeated instead of the chosen one; the memory starts at no-op on every reset.
- ``difficulty_ramping`` (default True, MinAtar's default): the games speed up over time.
- seeding: ``reset(seed=s)`` seeds ``np_random`` (sticky actions) and, from it, the game's own random state,
  so the same seed and actions give the same trajectory. Episodes end only by the game's own termination
  (MinAtar has no time limit; Freeway ends itself after 2500 steps).
- ``render_mode="rgb_array"``: one colour per channel, each cell ``render_scale`` pixels wide.

MinAtar has no frame skip: one step is one game frame, and the paper's "frames" are agent steps.

This module imports nothing from qzoo: the peers' runners (qzoo/bench/sb3_runner.py, sbx_runner.py) load it by
path in venvs without qzoo. ``is_minatar_id`` lives in :mod:`qzoo.env_ids`.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

GAMES = {"Asterix": "asterix", "Breakout": "breakout", "Freeway": "freeway", "Seaquest": "seaquest",
         "SpaceInvaders": "space_invaders"}
ACTION_NAMES = ("NOOP", "LEFT", "UP", "RIGHT", "DOWN", "FIRE")  # MinAtar's action indices 0..5

# An RGB colour per channel (black background), for rgb_array rendering.
_PALETTE = np.array([[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                     [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212],
                     [0, 128, 128]], np.uint8)


class MinAtarEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(self, game: str, minimal_action_set: bool = True, sticky_action_prob: float = 0.1,
                 difficulty_ramping: bool = True, render_mode: str | None = None, render_scale: int = 16):
        from minatar import Environment  # imported here: the package pulls in matplotlib/seaborn (~2 s)

        if game not in GAMES.values():
            raise ValueError(f"unknown MinAtar game {game!r}; allowed: {', '.join(GAMES.values())}")
        if not 0.0 <= sticky_action_prob <= 1.0:
            raise ValueError(f"sticky_action_prob must be in [0, 1], got {sticky_action_prob}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        # Sticky actions are done here (with np_random), so the game itself is made without them.
        self.game = Environment(game, sticky_action_prob=0.0, difficulty_ramping=difficulty_ramping)
        self.game_name = game
        self.sticky_action_prob = float(sticky_action_prob)
        self.action_set = list(self.game.minimal_action_set()) if minimal_action_set else list(range(6))
        height, width, channels = self.game.state_shape()
        self.observation_space = gym.spaces.Box(0, 1, (channels, height, width), np.uint8)
        self.action_space = gym.spaces.Discrete(len(self.action_set))
        self.render_mode = render_mode
        self.render_scale = int(render_scale)
        self._last_action = 0  # the game action repeated by a sticky step
        self._game_seeded = False

    def get_action_meanings(self) -> list[str]:
        return [ACTION_NAMES[a] for a in self.action_set]

    def _obs(self) -> np.ndarray:
        return np.ascontiguousarray(self.game.state().transpose(2, 0, 1), dtype=np.uint8)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None or not self._game_seeded:  # the game's random state follows np_random
            self.game.seed(int(self.np_random.integers(2**31 - 1)))
            self._game_seeded = True
        self.game.reset()
        self._last_action = 0
        return self._obs(), {}

    def step(self, action):
        action = self.action_set[int(action)]
        if self.sticky_action_prob > 0 and self.np_random.random() < self.sticky_action_prob:
            action = self._last_action
        self._last_action = action
        reward, terminated = self.game.act(action)
        return self._obs(), float(reward), bool(terminated), False, {}

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        state = self.game.state()  # (10, 10, C) bool; a cell shows its highest channel
        index = np.where(state.any(axis=2), state.shape[2] - np.argmax(state[:, :, ::-1], axis=2), 0)
        image = _PALETTE[index % len(_PALETTE)]
        return np.repeat(np.repeat(image, self.render_scale, axis=0), self.render_scale, axis=1)


def register_minatar_envs() -> None:
    """Register ``MinAtar/<Game>-v1`` for the five games (minimal action set unless env_kwargs say otherwise)."""
    for name, game in GAMES.items():
        env_id = f"MinAtar/{name}-v1"
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=MinAtarEnv, kwargs={"game": game})
