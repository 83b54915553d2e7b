"""Load a trained agent from a run directory, a model file, a checkpoint or a ``qzoo export`` folder, checking
that it fits its env. Below the trainers and the exporter: it reads their files (:mod:`qzoo.checkpoint`,
:mod:`qzoo.qtable`, the export's ``model.safetensors``) and imports neither."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from qzoo import checkpoint as ckpt
from qzoo.agent import build_agent, resolve_device
from qzoo.config import TABULAR_ALGOS, Config, ConfigError, from_dict
from qzoo.envs import check_env
from qzoo.qtable import load_qtable, table_agent

# An export folder (qzoo.export writes it): the weights and their metadata in one safetensors file.
WEIGHTS_FILE = "model.safetensors"
EXPORT_FORMAT = "qzoo-export"


def load_policy(path: Path, which: str = "final", device: str = "cpu", out=None):
    """Returns (agent, config, model_path). The agent's ``act`` is ready for evaluation. ``path``: a run
    directory, a model/checkpoint file in one, or a folder written by ``qzoo export``. Model files are verified
    (:func:`qzoo.checkpoint.load_model`); checkpoints it skipped are named on ``out`` (default: stderr)."""
    if is_export(Path(path)):
        return load_exported(Path(path), device)
    if _trained_algo(Path(path)) in TABULAR_ALGOS:
        return load_qtable(Path(path), which)
    payload, model_path = ckpt.load_model(path, which, out or sys.stderr)
    config: Config = from_dict(payload["config"])
    weights = payload["q_net"] if "q_net" in payload else payload["agent"]["q_net"]
    agent = deep_agent(config, payload["obs_shape"], payload["n_actions"], weights, device, model_path)
    return agent, config, model_path


def deep_agent(config: Config, obs_shape, n_actions: int, weights: dict, device: str, source: Path):
    """A QAgent for ``config`` holding ``weights`` (a Q-network state dict saved from observations of shape
    ``obs_shape`` with ``n_actions`` actions), in evaluation mode; ConfigError if the env no longer fits."""
    info = check_env(config, training=False)
    if tuple(info.observation_space.shape) != tuple(obs_shape) or info.n_actions != n_actions:
        raise ConfigError(f"'{source}' was trained on observations {tuple(obs_shape)} with "
                          f"{n_actions} actions; '{config.env_id}' now gives "
                          f"{tuple(info.observation_space.shape)} and {info.n_actions}")
    agent = build_agent(config, info.observation_space, info.n_actions, resolve_device(device))
    agent.q_net.load_state_dict(weights)
    agent.q_net.eval()
    return agent


def _trained_algo(path: Path) -> str | None:
    """The algo in the config.yaml of a run directory (or of the run directory holding a file); None if absent."""
    run_dir = path if path.is_dir() else path.parent
    return ckpt.read_config(run_dir).algo if (run_dir / ckpt.CONFIG_FILE).is_file() else None


def is_export(path: Path) -> bool:
    return path.is_dir() and (path / WEIGHTS_FILE).is_file()


def load_exported(path: Path, device: str = "cpu"):
    """(agent, config, weights path) from an export folder (the same triple as :func:`load_policy`)."""
    from safetensors import SafetensorError, safe_open

    weights_path = path / WEIGHTS_FILE
    config = ckpt.read_config(path)
    try:
        with safe_open(str(weights_path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError) as e:
        raise ConfigError(f"'{weights_path}' is not a readable safetensors file ({type(e).__name__})") from None
    if meta.get("format") != EXPORT_FORMAT or meta.get("version") != str(ckpt.FORMAT_VERSION):
        raise ConfigError(f"'{weights_path}' is not a qzoo export of format version {ckpt.FORMAT_VERSION}")
    if config.is_tabular:
        return table_agent(config, tensors["q_table"].double().numpy(), weights_path), config, weights_path
    agent = deep_agent(config, json.loads(meta["obs_shape"]), int(meta["n_actions"]), tensors, device, weights_path)
    return agent, config, weights_path
