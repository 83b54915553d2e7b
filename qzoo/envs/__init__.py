"""Environment factory: env ids -> validated, seeded Gymnasium vector environments.

The vector env uses SAME_STEP autoreset: when an episode ends, ``step`` returns the first observation of
the next episode and puts the true last observation in ``info["final_obs"]``. The trainer stores that final
observation as s' so a truncated episode still bootstraps from where it really ended.

Discrete observations (FrozenLake, Taxi: an integer state) reach the deep agent one-hot encoded
(:class:`OneHotObservation`); the tabular agent indexes its table with the integer itself.

Atari games (ALE ids) go through the DQN preprocessing of :mod:`qzoo.envs.atari`: the training vector env (the
gymnasium wrappers with ``training=True``, or with ``atari_backend: vector`` ale-py's C++ AtariVectorEnv) ends
episodes at a life loss and clips rewards; the evaluation env plays whole games with the game's own score. Either
reports a finished game's raw score in ``info["game_score"]``.

A checkpoint holds the training envs mid-episode (:mod:`qzoo.envs.snapshot`); training envs whose state does not
pickle (Box2D, MuJoCo) get :class:`~qzoo.envs.snapshot.ActionLog` as their outermost wrapper for that.

MinAtar games (``MinAtar/<Game>-v1``, :mod:`qzoo.envs.minatar`) give (channels, 10, 10) uint8 grids, read by the
small MinAtar CNN (``network: auto`` picks it for images smaller than the Nature CNN's 36x36 minimum).
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from qzoo.config import Config, ConfigError
from qzoo.env_ids import is_atari_id
from qzoo.envs.atari import (
    AtariTrainingVectorEnv,
    make_atari_env,
    uses_vector_backend,
    vector_backend_problem,
)
from qzoo.envs.minatar import register_minatar_envs
from qzoo.envs.snapshot import ActionLog, needs_action_log, restore_vec_env, vec_env_state  # noqa: F401
from qzoo.guards import check_training

gym.register(id="qzoo/Corridor-v0", entry_point="qzoo.envs.toy:Corridor", max_episode_steps=30)
register_minatar_envs()  # MinAtar/<Game>-v1


class OneHotObservation(gym.ObservationWrapper):
    """Discrete(n) state s -> float32 vector of length n with a 1 at s - start, so an MLP can read it."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.start, n = int(env.observation_space.start), int(env.observation_space.n)
        self.observation_space = gym.spaces.Box(0.0, 1.0, (n,), np.float32)

    def observation(self, observation) -> np.ndarray:
        one_hot = np.zeros(self.observation_space.shape, np.float32)
        one_hot[int(observation) - self.start] = 1.0
        return one_hot


@dataclass(frozen=True)
class EnvInfo:
    observation_space: gym.spaces.Space
    n_actions: int


def import_gym_packages(packages) -> None:
    for name in packages:
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise ConfigError(f"setting 'gym_packages': cannot import '{name}' ({e})") from None


def check_env(config: Config, training: bool = True) -> EnvInfo:
    """Refuse env ids that do not exist, bad env_kwargs and unsupported spaces, before anything runs. The env is made
    and reset once with the user's env_kwargs: whatever it raises becomes one ConfigError naming the env, the kwargs
    and the env's own message. ``training``: also check that this machine can train the config (its device, its
    memory: :func:`qzoo.guards.check_training`); evaluation passes False."""
    import_gym_packages(config.gym_packages)
    try:
        gym.spec(config.env_id)
    except gym.error.DeprecatedEnv as e:
        raise ConfigError(f"environment id '{config.env_id}' is not available in this gymnasium: {e}") from None
    except gym.error.Error:
        close = difflib.get_close_matches(config.env_id, list(gym.registry), n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else \
            "; `python -c \"import gymnasium; gymnasium.pprint_registry()\"` lists the registered ids"
        raise ConfigError(f"unknown environment id '{config.env_id}'{hint}") from None
    try:
        if is_atari_id(config.env_id):
            problem = vector_backend_problem(config)
            if config.atari_backend == "vector" and problem:
                raise ConfigError(f"setting 'atari_backend' 'vector' cannot be used with {problem}: use 'auto' "
                                  "(the wrapper pipeline)")
            env = make_atari_env(config, training=False)
        else:
            env = gym.make(config.env_id, **config.env_kwargs)
        try:
            env.reset(seed=config.seed)
        except BaseException:
            env.close()
            raise
    except ConfigError:
        raise
    except gym.error.DependencyNotInstalled as e:
        raise ConfigError(f"environment '{config.env_id}' needs a package that is not installed: {e}") from None
    except Exception as e:  # the env's own refusal: an assert, a KeyError for a map name, a ValueError, ...
        raise ConfigError(env_refusal(config, e)) from None
    try:
        if training and config.video_every and (problem := render_problem(config.env_id)):
            raise ConfigError(f"setting 'video_every': {problem}; leave it at 0")
        if not isinstance(env.action_space, gym.spaces.Discrete):
            raise ConfigError(f"environment '{config.env_id}' has action space {env.action_space}; {config.algo} "
                              "needs a Discrete action space")
        obs_space = env.observation_space
        if config.is_tabular:
            if not isinstance(obs_space, gym.spaces.Discrete):
                raise ConfigError(f"environment '{config.env_id}' has {type(obs_space).__name__} observations of "
                                  f"shape {obs_space.shape}; --algo {config.algo} needs a Discrete observation space "
                                  "(one table row per state): use --algo dqn")
            return EnvInfo(obs_space, int(env.action_space.n))  # a Q-table: no device, no replay buffer
        if isinstance(obs_space, gym.spaces.Discrete):
            obs_space = OneHotObservation(env).observation_space
        network = config.resolved_network(getattr(obs_space, "shape", None) or ())
        is_box = isinstance(obs_space, gym.spaces.Box)
        if network == "mlp" and not (is_box and len(obs_space.shape) == 1):
            raise ConfigError(f"environment '{config.env_id}' has observation space {obs_space}; the 'mlp' network "
                              "needs a flat Box observation")
        if network == "nature_cnn" and not (is_box and len(obs_space.shape) == 3 and min(obs_space.shape[1:]) >= 36):
            raise ConfigError(f"environment '{config.env_id}' has observation space {obs_space}; the 'nature_cnn' "
                              "network needs image observations (channels, height, width) of at least 36x36")
        if network == "minatar" and not (is_box and len(obs_space.shape) == 3 and min(obs_space.shape[1:]) >= 3):
            raise ConfigError(f"environment '{config.env_id}' has observation space {obs_space}; the 'minatar' "
                              "network needs grid observations (channels, height, width) of at least 3x3")
        from qzoo.replay.augment import augmentation_problem

        problem = augmentation_problem(config, getattr(obs_space, "shape", None) or ())
        if problem:
            raise ConfigError(problem)
        if training:
            check_training(config, obs_space, int(env.action_space.n))
        return EnvInfo(obs_space, int(env.action_space.n))
    finally:
        env.close()


def render_problem(env_id: str) -> str | None:
    """Why ``env_id`` cannot give video frames (its class lists render modes without 'rgb_array'), or None (it can,
    or its entry point does not say: making it will tell)."""
    spec = gym.spec(env_id)
    creator = spec.entry_point
    if isinstance(creator, str):
        try:
            creator = gym.envs.registration.load_env_creator(creator)
        except Exception:  # noqa: BLE001 - an entry point that does not load: making the env says why
            return None
    modes = (getattr(creator, "metadata", None) or {}).get("render_modes")
    if modes is None or "rgb_array" in modes:
        return None
    return f"environment '{env_id}' renders no video frames (its render modes: {', '.join(modes) or 'none'}; a " \
        "video needs 'rgb_array')"


def env_refusal(config: Config, error: Exception) -> str:
    """One line: the env, the user's env_kwargs and what the env said (its exception, newlines folded)."""
    said = " ".join(str(error).split()) or "(no message)"
    said = f"{type(error).__name__}: {said}" if isinstance(error, (KeyError, AssertionError, IndexError)) else said
    if len(said) > 300:
        said = said[:300] + " ..."
    kwargs = f" with env_kwargs {config.env_kwargs}" if config.env_kwargs else ""
    return f"environment '{config.env_id}' refused to start{kwargs}: {said}"


def make_env(env_id: str, env_kwargs: dict | None = None, *, one_hot: bool = True, config: Config | None = None,
             training: bool = False) -> Callable[[], gym.Env]:
    """A thunk building one environment. Episode statistics are recorded as the agent sees its rewards.
    Discrete observations are one-hot encoded unless ``one_hot`` is False (tabular agents). ALE ids get the
    Atari pipeline with the settings of ``config`` (the defaults when None): ``training`` for the training env
    (life-loss episodes, clipped rewards), otherwise whole games with raw rewards (evaluation)."""
    # ``env_kwargs`` go to the env beside the config: they may hold a render_mode (a video), which no Config holds
    atari_config = (config or Config()).replace(env_id=env_id) if is_atari_id(env_id) else None

    def thunk() -> gym.Env:
        if atari_config is not None:
            env = make_atari_env(atari_config, training=training, env_kwargs=dict(env_kwargs or {}))
        else:
            env = gym.make(env_id, **(env_kwargs or {}))
        if one_hot and isinstance(env.observation_space, gym.spaces.Discrete):
            env = OneHotObservation(env)
        env = gym.wrappers.RecordEpisodeStatistics(env)
        # a training env whose state does not pickle is rebuilt on resume by replaying its episode (envs/snapshot.py)
        return ActionLog(env) if training and needs_action_log(env) else env

    return thunk


def make_eval_env(config: Config, **env_kwargs) -> gym.Env:
    """One evaluation env of a run's ``config`` (Atari: whole games, raw score; discrete observations one-hot unless
    the run is tabular), as ``qzoo eval``, ``export`` and ``record`` play it; ``env_kwargs`` go on top of the
    config's (a video's ``render_mode``)."""
    return make_env(config.env_id, {**config.env_kwargs, **env_kwargs}, one_hot=not config.is_tabular,
                    config=config)()


def make_eval_envs(config: Config, episodes: int | None = None, one_hot: bool = True) -> list[gym.Env]:
    """The evaluation envs of ``config`` (Atari: whole games, raw score): ``config.resolved_eval_envs`` of them, to
    be played side by side by :func:`qzoo.evaluation.evaluate`."""
    thunk = make_env(config.env_id, config.env_kwargs, one_hot=one_hot, config=config)
    first = thunk()
    n = config.resolved_eval_envs(first.observation_space.shape, episodes)
    return [first] + [thunk() for _ in range(n - 1)]


def make_vec_env(config: Config, n_envs: int | None = None) -> gym.vector.VectorEnv:
    """The training environments (for Atari: life-loss episodes, clipped rewards; the wrapper pipeline, or ale-py's
    C++ AtariVectorEnv with ``atari_backend: vector``)."""
    import_gym_packages(config.gym_packages)
    if is_atari_id(config.env_id) and uses_vector_backend(config):
        return AtariTrainingVectorEnv(config, n_envs or config.n_envs)
    fns = [make_env(config.env_id, config.env_kwargs, config=config, training=True)
           for _ in range(n_envs or config.n_envs)]
    return SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)


def true_next_obs(next_obs: np.ndarray, infos: dict) -> np.ndarray:
    """s' for each env: ``next_obs``, except where an episode just ended, where autoreset already put the next
    episode's first observation there and the real last observation is in ``infos["final_obs"]``."""
    if "final_obs" not in infos:
        return next_obs
    obs_t = next_obs.copy()
    for i in np.flatnonzero(infos["_final_obs"]):
        obs_t[i] = infos["final_obs"][i]
    return obs_t


def finished_games(infos: dict) -> list[float]:
    """Raw scores of the Atari games (all lives, unclipped) that really ended in this vector step; [] otherwise."""
    final = infos.get("final_info")
    if not final or "game_score" not in final:
        return []
    return [float(final["game_score"][i]) for i in np.flatnonzero(final["_game_score"])]


def finished_episodes(infos: dict) -> list[tuple[int, float, int]]:
    """(env index, return, length) for each episode that ended in this vector step."""
    final = infos.get("final_info")
    if not final or "episode" not in final:
        return []
    ep, mask = final["episode"], final["_episode"]
    return [(int(i), float(ep["r"][i]), int(ep["l"][i])) for i in np.flatnonzero(mask)]
