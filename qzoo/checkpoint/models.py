"""Model files (model.pt, best_model.pt): the Q-network and what it was trained on, written atomically and read
back for ``qzoo eval`` (a checkpoint's Q-network serves as well).
"""

from __future__ import annotations

from pathlib import Path

import torch

from qzoo.checkpoint.durable import CheckpointError, atomic_write, describe_os_error
from qzoo.checkpoint.rundir import BEST_FILE, MODEL_FILE, checkpoint_files
from qzoo.config import Config, ConfigError

FORMAT_VERSION = 2  # 2: the whole training state and a manifest; 1: agent, optimizer and step only
MODEL_VERSIONS = (1, 2)  # model files whose Q-network `qzoo eval` reads


def save(path: Path, payload: dict) -> None:
    """A torch file (model.pt, best_model.pt), atomically; the file it replaces stays intact on failure."""
    path = Path(path)
    try:
        atomic_write(path, lambda f: torch.save(payload, f))
    except OSError as e:
        raise CheckpointError(f"could not write {path}: {describe_os_error(e)}; the previous {path.name} (if any) "
                              "is intact") from None

def model_payload(config: Config, agent, step: int, obs_shape) -> dict:
    return {"format": "qzoo-model", "version": FORMAT_VERSION, "env_id": config.env_id, "algo": config.algo,
            "obs_shape": tuple(obs_shape), "n_actions": agent.n_actions, "step": step,
            "config": config.to_dict(), "q_net": agent.q_net.state_dict()}


def load(path: Path) -> dict:
    """A model file or checkpoint, for its Q-network (``qzoo eval``)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConfigError(f"model file '{path}' does not exist") from None
    except Exception as e:  # truncated / corrupted / not a torch file
        raise ConfigError(f"'{path}' is not a readable qzoo model ({type(e).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") not in ("qzoo-model", "qzoo-checkpoint"):
        raise ConfigError(f"'{path}' is not a qzoo model file")
    if payload.get("version") not in MODEL_VERSIONS:
        raise ConfigError(f"'{path}' has format version {payload.get('version')}; this qzoo reads "
                          f"{', '.join(map(str, MODEL_VERSIONS))}")
    return payload

def find_model(run_dir: Path, which: str = "final") -> Path:
    """The model file of a run: ``final`` (model.pt, else the latest checkpoint) or ``best``."""
    run_dir = Path(run_dir)
    if run_dir.is_file():
        return run_dir
    if not run_dir.is_dir():
        raise ConfigError(f"run directory '{run_dir}' does not exist")
    candidates = [run_dir / BEST_FILE] if which == "best" else [run_dir / MODEL_FILE]
    candidates += checkpoint_files(run_dir)[::-1]
    for path in candidates:
        if path.is_file():
            return path
    raise ConfigError(f"'{run_dir}' holds no model ({MODEL_FILE}, {BEST_FILE} or checkpoints/step_*.pt)")
