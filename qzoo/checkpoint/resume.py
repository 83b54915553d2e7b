"""Resuming a run: the config it continues with, the newest checkpoint that verifies and fits (reading only), and
loading that checkpoint into the freshly built parts of the training loop (:func:`training_state` is what
:meth:`~qzoo.checkpoint.periodic.Checkpointer.save` is given; :func:`restore` puts it back).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from qzoo.checkpoint.durable import unflatten
from qzoo.checkpoint.models import FORMAT_VERSION
from qzoo.checkpoint.periodic import verify
from qzoo.checkpoint.rundir import MODEL_FILE, checkpoint_names, checkpoint_steps, read_config
from qzoo.config import TRI_STATE, Config, ConfigError, coerce

# Settings a resume may change: they do not alter what the agent learns from the steps it takes (n_timesteps:
# a longer budget; the schedules keep their horizon through schedule_timesteps).
RESUME_MAY_CHANGE = ("n_timesteps", "schedule_timesteps", "device", "torch_threads", "progress_bar",
                     "keep_checkpoints", "checkpoint_freq", "save_replay", "eval_envs", "target_thread")


@dataclass
class Resume:
    """A verified checkpoint to continue from."""

    path: Path  # step_N.pt
    payload: dict
    replay_path: Path | None  # None: saved without its replay buffer
    skipped: list[str]  # newer checkpoints that failed verification, with the reason

    @property
    def step(self) -> int:
        return int(self.payload["step"])


def resume_config(run_dir: Path, n_timesteps: int | None = None, changes: dict | None = None) -> Config:
    """The configuration to resume ``run_dir`` with: its config.yaml, a longer ``n_timesteps`` if given (the
    schedules keep their horizon) and ``changes`` to the settings a resume may change."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"run directory '{run_dir}' does not exist")
    config = read_config(run_dir)
    if config.is_tabular:
        raise ConfigError(f"'{run_dir}' is a {config.algo} run; --resume continues deep Q-learning runs (a Q-table "
                          "run is short: start it again)")
    changes = dict(changes or {})
    refused = sorted(set(changes) - set(RESUME_MAY_CHANGE))
    if refused:
        raise ConfigError(f"--resume keeps the run's settings; '{refused[0]}' cannot change (a resume may change: "
                          f"{', '.join(k for k in RESUME_MAY_CHANGE if k != 'schedule_timesteps')})")
    if n_timesteps is not None and n_timesteps != config.n_timesteps:
        changes.update(n_timesteps=n_timesteps, schedule_timesteps=config.schedule_horizon)
    return config.replace(**changes) if changes else config


def prepare_resume(run_dir: Path, n_timesteps: int | None = None, changes: dict | None = None
                   ) -> tuple[Config, Resume]:
    """(config, checkpoint) to continue ``run_dir`` with (:func:`resume_config`, :func:`find_resumable`)."""
    from qzoo.envs import check_env

    config = resume_config(run_dir, n_timesteps, changes)
    info = check_env(config)
    return config, find_resumable(run_dir, config, info.observation_space.shape, info.n_actions)


def find_resumable(run_dir: Path, config: Config, obs_shape, n_actions: int) -> Resume:
    """The newest checkpoint of ``run_dir`` that verifies, checked against ``config`` and the env as it is now;
    ConfigError (one line naming what differs) when there is none or it does not fit. Reads only."""
    directory = Path(run_dir) / "checkpoints"
    steps = checkpoint_steps(directory)[::-1]
    if not steps:
        raise ConfigError(f"'{run_dir}' has no checkpoint to resume from (checkpoints/step_N.pt)")
    skipped = []
    for step in steps:
        problem = verify(directory, step)
        if problem is None:
            pt = directory / checkpoint_names(step)[0]
            try:
                payload = torch.load(pt, map_location="cpu", weights_only=True)
                break
            except Exception as e:
                problem = f"{pt.name} cannot be read ({type(e).__name__})"
        skipped.append(f"step_{step}: {problem}")
    else:
        raise ConfigError(f"no intact checkpoint in '{directory}' ({'; '.join(skipped)})")
    _check_fits(pt, payload, config, tuple(obs_shape), n_actions)
    replay = directory / checkpoint_names(step)[1] if payload["replay"] else None
    return Resume(pt, payload, replay, skipped)


def _check_fits(path: Path, payload, config: Config, obs_shape: tuple, n_actions: int) -> None:
    where = f"checkpoint {path.parent.parent.name}/checkpoints/{path.name}"
    if not isinstance(payload, dict) or payload.get("format") != "qzoo-checkpoint":
        raise ConfigError(f"{where} is not a qzoo checkpoint")
    if payload.get("version") != FORMAT_VERSION:
        raise ConfigError(f"{where} has format version {payload.get('version')}; this qzoo resumes format "
                          f"version {FORMAT_VERSION} only")
    if payload["env_id"] != config.env_id:
        raise ConfigError(f"{where} is from env '{payload['env_id']}', the run is on '{config.env_id}'")
    if payload["algo"] != config.algo:
        raise ConfigError(f"{where} is from algo '{payload['algo']}', the run is '{config.algo}'")
    if tuple(payload["obs_shape"]) != obs_shape or payload["n_actions"] != n_actions:
        raise ConfigError(f"{where} has observations {tuple(payload['obs_shape'])} and {payload['n_actions']} "
                          f"actions; '{config.env_id}' now gives {obs_shape} and {n_actions}")
    # (bf16 was a bool before it took 'auto': such checkpoints say false / true)
    saved = {k: coerce(k, v) if k in TRI_STATE else v for k, v in payload["config"].items()}
    now = config.to_dict()
    differ = [k for k in now if k not in RESUME_MAY_CHANGE and k in saved and saved[k] != now[k]]
    if differ:
        raise ConfigError(f"{where} was written with different settings than the run's config.yaml: "
                          + ", ".join(f"{k} {saved.get(k)!r} vs {now[k]!r}" for k in differ[:3]))
    # A checkpoint at the last step of a run without its model.pt (killed during the final evaluation): the resume
    # finishes the run (the loop has no step left; the final evaluation, model.pt and best model follow).
    finished = payload["step"] == config.n_timesteps and (path.parent.parent / MODEL_FILE).is_file()
    if payload["step"] > config.n_timesteps or finished:
        raise ConfigError(f"{where} is at step {payload['step']}, the run's budget is {config.n_timesteps} steps"
                          + (f" and the run is finished ({MODEL_FILE})" if finished else "")
                          + ": pass a larger --total-timesteps to continue it")

def load_replay(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as data:
        return unflatten({key: data[key] for key in data.files})

# ---- resuming the loop ----------------------------------------------------------------------------------------
def training_state(*, step: int, vec_steps: int, obs, rng: np.random.Generator, best_eval: float, agent, progress,
                   envs, acting: list | None = None) -> dict:
    """What the training loop holds besides the replay buffer, for :meth:`Checkpointer.save`. ``acting``: the
    acting copy's tensors of an overlapped run (``TrainingPhases.acting_state``)."""
    from qzoo.envs import vec_env_state

    return {"step": step, "vec_steps": vec_steps, "obs": torch.from_numpy(np.array(obs)),
            "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
            "best_eval": best_eval, "agent": agent.state_dict(), "progress": progress.state_dict(),
            "envs": vec_env_state(envs), "acting": acting}


@dataclass
class Restored:
    envs: object  # the training vector env to continue with
    obs: np.ndarray
    step: int
    vec_steps: int
    best_eval: float
    learn_from: int  # learning resumes once step > learn_from (later than learning_starts while replay refills)
    acting: list | None = None  # an overlapped run's acting copy (TrainingPhases.load_acting_state)


def restore(resume: Resume, config: Config, *, agent, replay, progress, envs, rng: np.random.Generator,
            out=None) -> Restored:
    """Load ``resume`` into the freshly built parts of a run and say, in one line, how it continues."""
    from qzoo.envs import restore_vec_env

    state = resume.payload
    step = state["step"]
    agent.load_state_dict(state["agent"])
    progress.load_state_dict(state["progress"])
    envs, why_not = restore_vec_env(envs, state["envs"])  # None: they continue their episodes exactly
    exact, notes = why_not is None, []
    if exact:
        obs = state["obs"].numpy()
    else:  # new episodes, seeded from the run's seed and the step
        obs, _ = envs.reset(seed=config.seed + step)
        notes.append(f"the environments start new episodes ({why_not})")
    learn_from = config.learning_starts
    if resume.replay_path is not None:
        replay.load_state_dict(load_replay(resume.replay_path))
        if not exact:
            replay.reset()  # the unfinished episodes' pending steps belong to episodes that will not go on
    else:
        learn_from = step + max(config.learning_starts, config.batch_size)
        notes.append(f"the replay buffer was not saved: it refills for {learn_from - step} steps before learning")
    rng.bit_generator.state = state["rng"]
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    if out is not None:
        skipped = "".join(f"; skipped {s}" for s in resume.skipped)
        print(f"qzoo: resuming from {resume.path.name} (step {step}){skipped}"
              + "".join(f"; {n}" for n in notes), file=out, flush=True)
    return Restored(envs, obs, step, state["vec_steps"], state["best_eval"], learn_from, state.get("acting"))
