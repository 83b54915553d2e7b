"""Snapshots of the training environments, so that a resumed run continues their episodes exactly.

A checkpoint holds one snapshot of the training vector env (:func:`vec_env_state`); a resume restores it into the
freshly built envs (:func:`restore_vec_env`). Three ways, tried in this order:

``pickle``   environments that pickle with their whole state (classic control, the toy envs): the list of
             sub-environments as it is, mid-episode.
``per env``  every other sub-environment of a vector env that holds them in Python (``SyncVectorEnv``, or any with a
             list ``envs``), one snapshot each, in two parts:

             - the wrapper chain, walked generically: each wrapper's ``__dict__`` without the inner env and without
               values that do not pickle (references the wrapper took at construction, e.g. an ``ALEInterface``).
               That covers FrameStackObservation's frames, AtariPreprocessing's max-pool buffer and lives,
               EpisodicLife's lives and game-over flag, GameScore, TimeLimit's elapsed steps,
               RecordEpisodeStatistics' counters, OrderEnforcing's flag, and any wrapper added later, with no
               code per wrapper.
             - the core env: an ALE game (anything with ``clone_state``) saves the emulator with its random
               generator (``clone_state(include_rng=True)``, ~14 kB) and the picklable part of its ``__dict__``
               (its ``np_random``, which draws AtariPreprocessing's no-op counts). Any other env (Box2D, MuJoCo:
               their worlds do not pickle) is rebuilt by replay: :class:`ActionLog`, the outermost wrapper of such
               training envs, records how the current episode began (the seed of a seeded reset, or the env's
               generator just before an unseeded one, as the vector env's autoreset does) and the actions since.
               A resume resets the new env the same way, replays the actions and compares the observation it
               reaches with the one saved: equal, the episode goes on; different (an env that is not
               deterministic), every env starts a new episode and the resume says so.
``none``     a vector env without per-env access (ale-py's C++ ``AtariVectorEnv``): new episodes on resume, seeded
             from the run's seed and the step, said in one line.

The snapshot is pickled (the checkpoint file is checksum-verified and the user's own); the checkpoint stores it as
bytes, so ``torch.load(weights_only=True)`` reads the rest of the checkpoint without unpickling objects.
"""

from __future__ import annotations

import copy
import pickle

import gymnasium as gym
import numpy as np
from gymnasium.utils import EzPickle
from gymnasium.vector import AutoresetMode, SyncVectorEnv

# the vector env's own per-env flags (SyncVectorEnv); in SAME_STEP mode nothing else survives a step
_VECTOR_FIELDS = ("_autoreset_envs", "_terminations", "_truncations")
_CONSTANT_TYPES = (gym.spaces.Space, gym.envs.registration.EnvSpec)


class ActionLog(gym.Wrapper):
    """Records how the current episode began and the actions taken since, so that an env whose state does not pickle
    can be rebuilt by replaying them (:func:`restore_vec_env`). ``start`` is ``("seed", seed, options)`` after a
    seeded reset, or ``("rng", generator, options)`` with a copy of the core env's ``np_random`` as it was just
    before an unseeded one; ``obs`` is the last observation returned."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.start: tuple | None = None
        self.actions: list = []
        self.obs = None

    def reset(self, *, seed=None, options=None):
        start = ("seed", seed, options) if seed is not None else \
            ("rng", copy.deepcopy(self.env.unwrapped.np_random), options)
        obs, info = self.env.reset(seed=seed, options=options)
        self.start, self.actions, self.obs = start, [], obs
        return obs, info

    def step(self, action):
        result = self.env.step(action)
        self.actions.append(action)
        self.obs = result[0]
        return result


def needs_action_log(env: gym.Env) -> bool:
    """True for envs whose state neither pickles nor has an emulator snapshot: gymnasium's ``EzPickle`` envs
    (Box2D, MuJoCo) pickle only their constructor arguments."""
    core = env.unwrapped
    return isinstance(core, EzPickle) and not hasattr(core, "clone_state")


# ---- one env ----------------------------------------------------------------------------------------------------
def _layers(env: gym.Env) -> list:
    """The wrapper chain, outermost first, ending with the core env."""
    layers = [env]
    while isinstance(layers[-1], gym.Wrapper):
        layers.append(layers[-1].env)
    return layers


def _picklable_fields(obj) -> dict:
    """``obj.__dict__`` without the inner env, the spaces and spec (fixed at construction; an Atari observation
    space alone pickles to 100 kB) and values that do not pickle."""
    out = {}
    for key, value in vars(obj).items():
        if key == "env" or isinstance(value, _CONSTANT_TYPES):
            continue
        try:
            out[key] = pickle.dumps(value)
        except Exception:  # a reference taken at construction (an emulator handle, a Box2D world)
            continue
    return out


def env_state(env: gym.Env) -> dict:
    """A snapshot of one sub-environment (see the module docstring); ValueError when there is none to take."""
    layers = _layers(env)
    core = layers[-1]
    wrappers = [_picklable_fields(layer) for layer in layers[:-1]]
    if hasattr(core, "clone_state"):  # ALE: the emulator with its RNG, and the env's own generator
        return {"wrappers": wrappers, "core": {"ale": core.clone_state(include_rng=True),
                                               "fields": _picklable_fields(core)}}
    if isinstance(env, ActionLog) and env.start is not None:
        return {"wrappers": wrappers, "replay": {"start": env.start, "actions": list(env.actions), "obs": env.obs}}
    raise ValueError(f"{type(core).__name__} has no snapshot (no emulator state, no action log)")


def restore_env(env: gym.Env, state: dict) -> str | None:
    """Load ``state`` (from :func:`env_state`) into ``env``, a freshly built env of the same kind. None when done,
    else why the episode could not be continued (a phrase)."""
    layers = _layers(env)
    if len(layers) - 1 != len(state["wrappers"]):
        return f"the wrapper chain has {len(layers) - 1} wrappers, the snapshot {len(state['wrappers'])}"
    core = layers[-1]
    if "core" in state:
        core.restore_state(state["core"]["ale"])
        for key, data in state["core"]["fields"].items():
            setattr(core, key, pickle.loads(data))
    else:
        replay = state["replay"]
        kind, how, options = replay["start"]
        inner = env.env  # the ActionLog's inner env: the replay does not touch the log
        if kind == "seed":
            obs, _ = inner.reset(seed=how, options=options)
        else:
            core.np_random = copy.deepcopy(how)
            obs, _ = inner.reset(options=options)
        for action in replay["actions"]:
            obs = inner.step(action)[0]
        if not np.array_equal(np.asarray(obs), np.asarray(replay["obs"])):
            return (f"replaying its {len(replay['actions'])} actions since the episode's reset reached another "
                    "observation than the saved one (the env is not deterministic)")
    for layer, fields in zip(layers[:-1], state["wrappers"], strict=True):
        for key, data in fields.items():
            setattr(layer, key, pickle.loads(data))
    return None


# ---- the training vector env ------------------------------------------------------------------------------------
def _sub_envs(envs) -> list | None:
    """The sub-environments of a vector env that holds them in Python (SyncVectorEnv, or any vector env with a list
    ``envs`` of gymnasium envs), else None."""
    subs = getattr(envs, "envs", None)
    return subs if isinstance(subs, list) and all(isinstance(env, gym.Env) for env in subs) else None


def vec_env_state(envs: gym.vector.VectorEnv) -> dict:
    """The checkpoint's snapshot of the training envs: ``{"envs": pickled sub-envs}``, ``{"snapshots": pickled
    per-env snapshots}``, or ``{"envs": None, "why": phrase}`` when there is none (a resume starts new episodes)."""
    if _sub_envs(envs) is None:
        return {"envs": None, "why": getattr(envs, "snapshot_problem", None)
                or f"{type(envs).__name__} gives no access to each env's state"}
    if isinstance(envs, SyncVectorEnv) and not any(isinstance(env.unwrapped, EzPickle) for env in envs.envs):
        try:
            data = pickle.dumps(envs.envs)
            pickle.loads(data)
            return {"envs": data}
        except Exception:  # fall through to per-env snapshots
            pass
    try:
        snapshots = [env_state(env) for env in envs.envs]
    except ValueError as e:
        return {"envs": None, "why": str(e)}
    vector = {name: np.array(getattr(envs, name)) for name in _VECTOR_FIELDS if hasattr(envs, name)}
    return {"envs": None, "snapshots": pickle.dumps({"envs": snapshots, "vector": vector})}


def restore_vec_env(envs: gym.vector.VectorEnv, state: dict) -> tuple[gym.vector.VectorEnv, str | None]:
    """The training envs of a checkpoint: ``(vector env, None)`` when they continue their episodes exactly, else
    ``(envs, why)``: the caller resets them to start new episodes. ``envs`` are the freshly built (and reset)
    training envs; with a pickled snapshot they are closed and replaced."""
    if state.get("envs") is not None:  # a file of the user's own run directory, checksum-verified
        restored = pickle.loads(state["envs"])
        envs.close()
        return SyncVectorEnv([lambda env=env: env for env in restored], autoreset_mode=AutoresetMode.SAME_STEP), None
    if "snapshots" not in state:
        return envs, state.get("why", "they cannot be snapshotted")
    snapshot = pickle.loads(state["snapshots"])
    if _sub_envs(envs) is None or len(envs.envs) != len(snapshot["envs"]):
        return envs, "the training envs are not built as they were when the checkpoint was written"
    for i, (env, env_snapshot) in enumerate(zip(envs.envs, snapshot["envs"], strict=True)):
        problem = restore_env(env, env_snapshot)
        if problem is not None:
            return envs, f"env {i}: {problem}"
    for name, value in snapshot["vector"].items():
        setattr(envs, name, value.copy())
    return envs, None
