"""Atari 2600 games (ALE ids) with the DQN preprocessing, every step a setting of :class:`~qzoo.config.Config`.

The pipeline, inner to outer (``training`` marks what only the training environment gets)::

    gym.make(id, frameskip=1, repeat_action_probability=0 (nature) | 0.25 (machado), max_num_frames_per_episode)
    AtariPreprocessing      gymnasium's: noop_max random no-op starts, frame_skip with a max over the last two
                            frames (sprites that flicker on alternate frames stay visible), grayscale, resize to
                            screen_size (cv2 INTER_AREA)
    CropResize              only with atari_crop: AtariPreprocessing keeps the native 210x160 screen, this drops
                            the rows/columns and resizes
    GameScore               the raw score of the whole game (all lives, before clipping): info["game_score"] at
                            the step where the game really ends
    EpisodicLife            training, nature protocol: an episode ends at a life loss, the game goes on
    FireReset               games whose actions include FIRE: FIRE then action 2 after every reset
    TransformReward(sign)   training: rewards clipped to {-1, 0, 1}
    FrameStackObservation   gymnasium's: the last frame_stack frames, zero-padded at an episode start
    ChannelsFirst           only for RGB: (stack, H, W, 3) -> (3 * stack, H, W)

The training envs are this same pipeline, one per env, batched by gymnasium's SyncVectorEnv
(``atari_backend: auto`` or ``wrappers``): transition by transition what RL Zoo trains on (SB3's ``AtariWrapper``
+ ``VecFrameStack(4)``; tests/unit/test_atari_golden.py replays a trace recorded from SB3). ``atari_backend:
vector`` trains on ale-py's C++ ``AtariVectorEnv`` instead (:class:`AtariTrainingVectorEnv`): the preprocessing
in C++ threads, faster where cores are free (BENCHMARKS.md), but NOT the standard protocol. Its episodes and
scores follow the wrappers' rules within a life, with three differences at a reset: a life loss ends the episode
but the next one starts from the very next frame (the frame stack carries on; the wrappers take a no-op step,
FIRE and action 2, and zero-pad the stack); at a game reset the C++ env presses FIRE for one frame (the wrappers:
FIRE, then action 2, as agent steps); its no-op counts come from its own generator. The wrappers stay the
evaluation env and the independent reference the tests hold both to.

``make_env`` adds RecordEpisodeStatistics outside all of it, so an episode's logged return is what the agent
learns from (per life, clipped, in training); the game score is recorded inside, before anything alters it.
Observations reach the agent as uint8 (frame_stack, screen_size, screen_size); the network scales them.

Design decisions:
- Gymnasium's AtariPreprocessing and FrameStackObservation do the heavy lifting; the wrappers here are the small
  ones it lacks, written after Stable-Baselines3's ``atari_wrappers`` (EpisodicLifeEnv, FireResetEnv).
- Zero padding of the frame stack, as SB3's VecFrameStack and ALE's own C++ ``AtariVectorEnv`` do, so a
  pipeline built here and ``AtariVectorEnv`` with the same settings give identical observations (tested).
- The 30-minute cap (max_episode_frames) is ALE's own ``max_num_frames_per_episode``: it counts emulator frames
  of the whole game, across lives, and ends it with ``truncated`` (which bootstraps).
- A game that ends inside a reset (during EpisodicLife's no-op or FireReset's FIRE steps) loses its game score
  record; that needs a game to end within one agent step of a life loss or a reset, which the ALE games do not.
"""

from __future__ import annotations

import os

import ale_py
import gymnasium as gym
import numpy as np
from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation, TransformReward

from qzoo.config import Config
from qzoo.env_ids import ATARI_ENTRY_POINTS, atari_game, is_atari_id  # noqa: F401  (their home; re-exported)

gym.register_envs(ale_py)
ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)  # no emulator banner on stderr for every game created

STICKY_ACTION_PROBABILITY = {"nature": 0.0, "machado": 0.25}


class CropResize(gym.ObservationWrapper):
    """Drop ``[top, bottom, left, right]`` pixel rows/columns of each frame, then resize it to ``size`` x ``size``
    with the same interpolation as AtariPreprocessing (area averaging)."""

    def __init__(self, env: gym.Env, crop: list[int], size: int):
        super().__init__(env)
        import cv2

        self._resize = cv2.resize
        self._interpolation = cv2.INTER_AREA
        top, bottom, left, right = crop
        height, width = env.observation_space.shape[:2]
        if 2 * (height - top - bottom) < height or 2 * (width - left - right) < width:  # a score bar, a border
            raise ValueError(f"setting 'atari_crop' {list(crop)} leaves {max(height - top - bottom, 0)}x"
                             f"{max(width - left - right, 0)} of the {height}x{width} screen; a crop must keep at "
                             "least half of its rows and half of its columns")
        self.rows, self.cols, self.size = slice(top, height - bottom), slice(left, width - right), size
        shape = (size, size) + env.observation_space.shape[2:]
        self.observation_space = gym.spaces.Box(0, 255, shape, np.uint8)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        cropped = observation[self.rows, self.cols]
        return self._resize(cropped, (self.size, self.size), interpolation=self._interpolation)


class GameScore(gym.Wrapper):
    """Sums the raw reward of a whole game, across lives, and puts it in ``info["game_score"]`` at the step where
    the game really ends (terminated or truncated). Placed before EpisodicLife, FireReset and reward clipping, so
    it sees every step (also those taken inside their resets) and the unclipped reward."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.score = 0.0

    def reset(self, **kwargs):
        self.score = 0.0
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.score += float(reward)
        if terminated or truncated:
            info = {**info, "game_score": self.score}
        return obs, reward, terminated, truncated, info


class EpisodicLife(gym.Wrapper):
    """A life loss ends the episode (``terminated``, so the value of losing a life is 0) while the game goes on:
    ``reset`` after a life loss takes one no-op step instead of restarting the game. A real game over, a
    truncation or a seeded reset restarts it. As SB3's EpisodicLifeEnv (Mnih et al. 2015 trained this way)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.lives, self.game_over = 0, True

    def _ale_lives(self) -> int:
        return self.env.unwrapped.ale.lives()

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.game_over = terminated or truncated
        lives = self._ale_lives()
        if 0 < lives < self.lives:  # lives reaching 0 is the game over itself, reported by the game
            terminated = True
        self.lives = lives
        return obs, reward, terminated, truncated, info

    def reset(self, *, seed=None, options=None):
        if self.game_over or seed is not None:
            obs, info = self.env.reset(seed=seed, options=options)
        else:
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                obs, info = self.env.reset(options=options)
        self.game_over = False
        self.lives = self._ale_lives()
        return obs, info


def has_fire(env: gym.Env) -> bool:
    meanings = env.unwrapped.get_action_meanings()
    return len(meanings) >= 3 and meanings[1] == "FIRE"


class FireReset(gym.Wrapper):
    """Press FIRE (action 1), then action 2, after every reset: games such as Breakout do not start (or launch the
    next ball) until FIRE is pressed. As SB3's FireResetEnv; only for games whose action 1 is FIRE."""

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        for action in (1, 2):
            obs, _, terminated, truncated, _ = self.env.step(action)
            if terminated or truncated:
                obs, info = self.env.reset(**kwargs)
        return obs, info


class ChannelsFirst(gym.ObservationWrapper):
    """Stacked RGB frames (stack, H, W, 3) -> (3 * stack, H, W), the layout a convolutional torso reads."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        stack, height, width, channels = env.observation_space.shape
        self.observation_space = gym.spaces.Box(0, 255, (stack * channels, height, width), np.uint8)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(observation.transpose(0, 3, 1, 2)).reshape(self.observation_space.shape)


def make_atari_env(config: Config, *, training: bool, env_kwargs: dict | None = None) -> gym.Env:
    """The preprocessed game ``config.env_id``. ``training``: life-loss episodes (nature protocol, episodic_life)
    and clipped rewards (clip_reward); otherwise whole games with the game's own rewards (evaluation).
    ``env_kwargs`` (default: ``config.env_kwargs``; a video adds ``render_mode``, which a Config does not hold) go
    to ``gym.make`` last, so they can change the emulator settings (not frameskip, which must stay 1: the skipping
    is done here)."""
    nature = config.atari_protocol == "nature"
    kwargs = {"frameskip": 1, "repeat_action_probability": STICKY_ACTION_PROBABILITY[config.atari_protocol],
              "max_num_frames_per_episode": config.max_episode_frames,
              "obs_type": "grayscale" if config.grayscale else "rgb",  # cheaper per frame than rgb when gray
              **(config.env_kwargs if env_kwargs is None else env_kwargs)}
    env = gym.make(config.env_id, **kwargs)
    native = tuple(env.observation_space.shape[1::-1])  # (width, height), as cv2 and AtariPreprocessing take it
    env = AtariPreprocessing(env, noop_max=config.noop_max if nature else 0, frame_skip=config.frame_skip,
                             screen_size=native if config.atari_crop else config.screen_size,
                             terminal_on_life_loss=False, grayscale_obs=config.grayscale)
    if config.atari_crop:
        env = CropResize(env, config.atari_crop, config.screen_size)
    env = GameScore(env)
    if training and nature and config.episodic_life:
        env = EpisodicLife(env)
    if config.fire_reset and has_fire(env):
        env = FireReset(env)
    if training and config.clip_reward:
        env = TransformReward(env, np.sign)
    env = FrameStackObservation(env, config.frame_stack, padding_type="zero")
    if not config.grayscale:
        env = ChannelsFirst(env)
    return env


def vector_backend_problem(config: Config) -> str | None:
    """Why ``AtariVectorEnv`` cannot train with these settings (None: it can)."""
    if not config.grayscale:
        return "RGB frames (grayscale false)"
    if config.atari_crop:
        return "atari_crop"
    if config.env_kwargs:
        return "env_kwargs"
    return None


def uses_vector_backend(config: Config) -> bool:
    """True when the training envs are ale-py's C++ ``AtariVectorEnv``: only when asked for (``atari_backend:
    vector``; ``auto`` is the faithful wrapper pipeline) and the settings allow it (check_env refuses the rest)."""
    return config.atari_backend == "vector" and vector_backend_problem(config) is None


class AtariTrainingVectorEnv(gym.vector.VectorWrapper):
    """ale-py's C++ ``AtariVectorEnv`` as qzoo's training envs: same-step autoreset with the true final
    observation in ``infos["final_obs"]``, life-loss episodes, clipped rewards, and in ``infos["final_info"]``
    each finished episode's return and length (``episode``, as RecordEpisodeStatistics) and each finished game's
    raw score (``game_score``), exactly as the wrapper pipeline reports them.

    The C++ env plays whole games with raw rewards (no episodic_life, no reward_clipping, so that it reports the
    real game over and the raw score); this wrapper ends an episode where ``info["lives"]`` drops while the game
    goes on (as EpisodicLife: 0 < lives < previous lives; such a step's s' is the observation itself, as the game
    was not reset) and clips the rewards. A game that is over or truncated was reset by the C++ env in the same
    step: its s' is the C++ env's ``final_obs``."""

    # why a checkpoint cannot hold these envs' games (a resume starts new episodes; envs/snapshot.py)
    snapshot_problem = "ale-py's C++ AtariVectorEnv (atari_backend vector) gives no access to each game's state"

    def __init__(self, config: Config, n_envs: int):
        from ale_py.vector_env import AtariVectorEnv

        nature = config.atari_protocol == "nature"
        env = AtariVectorEnv(
            atari_game(config.env_id), n_envs, num_threads=min(n_envs, os.cpu_count() or 1),
            noop_max=config.noop_max if nature else 0, frameskip=config.frame_skip, maxpool=config.frame_skip > 1,
            img_height=config.screen_size, img_width=config.screen_size, grayscale=True,
            stack_num=config.frame_stack, episodic_life=False, life_loss_info=False, reward_clipping=False,
            use_fire_reset=config.fire_reset, max_num_frames_per_episode=config.max_episode_frames,
            repeat_action_probability=STICKY_ACTION_PROBABILITY[config.atari_protocol], autoreset_mode="SameStep")
        super().__init__(env)
        self.metadata = {**env.metadata, "autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}
        self.episodic_life = nature and config.episodic_life
        self.clip_reward = config.clip_reward
        self.lives = np.zeros(n_envs, np.int64)
        self.episode_return = np.zeros(n_envs)
        self.episode_length = np.zeros(n_envs, np.int64)
        self.game_score = np.zeros(n_envs)

    def reset(self, *, seed=None, options=None):
        obs, info = self.env.reset(seed=seed, options=options)
        self.lives[:] = info["lives"]
        self.episode_return[:] = self.episode_length[:] = self.game_score[:] = 0
        return obs, {}

    def step(self, actions):
        obs, raw_reward, game_over, truncated, info = self.env.step(np.asarray(actions))
        game_over = game_over.astype(bool)
        game_ended = game_over | truncated  # the C++ env reset these games in this step
        lives = info["lives"]
        terminated = game_over
        if self.episodic_life:
            terminated = game_over | (~game_ended & (0 < lives) & (lives < self.lives))
        self.lives[:] = lives
        raw_reward = raw_reward.astype(np.float64)
        reward = np.sign(raw_reward) if self.clip_reward else raw_reward
        self.episode_return += reward
        self.episode_length += 1
        self.game_score += raw_reward
        ended = terminated | truncated
        infos = {}
        if ended.any():
            final_obs = obs.copy()  # an episode ended by a life loss ends at the observation itself
            if game_ended.any():
                final_obs[game_ended] = info["final_obs"][game_ended]
            infos = {"final_obs": final_obs, "_final_obs": ended, "final_info": {
                "episode": {"r": self.episode_return.copy(), "l": self.episode_length.copy()}, "_episode": ended,
                "game_score": self.game_score.copy(), "_game_score": game_ended}}
            self.episode_return[ended] = 0
            self.episode_length[ended] = 0
            self.game_score[game_ended] = 0
        return obs, reward, terminated, truncated, infos
