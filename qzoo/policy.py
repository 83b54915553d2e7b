"""Load a trained agent from a run directory, a model file or a checkpoint, checking that it fits its env."""

from __future__ import annotations

import sys
from pathlib import Path

from qzoo import checkpoint as ckpt
from qzoo.agent import build_agent, resolve_device
from qzoo.config import TABULAR_ALGOS, Config, ConfigError, from_dict
from qzoo.envs import check_env


def load_policy(path: Path, which: str = "final", device: str = "cpu", out=None):
    """Returns (agent, config, model_path). The agent's ``act`` is ready for evaluation. ``path``: a run
    directory, a model/checkpoint file in one, or a folder written by ``qzoo export``. Model files are verified
    (:func:`qzoo.checkpoint.load_model`); checkpoints it skipped are named on ``out``."""
    from qzoo.export import is_export, load_exported

    if is_export(Path(path)):
        return load_exported(Path(path), device)
    if _trained_algo(Path(path)) in TABULAR_ALGOS:
        from qzoo.tabular import load_qtable

        return load_qtable(Path(path), which)
    payload, model_path = ckpt.load_model(path, which, out or sys.stderr)
    config: Config = from_dict(payload["config"])
    weights = payload["q_net"] if "q_net" in payload else payload["agent"]["q_net"]
    agent = deep_agent(config, payload["obs_shape"], payload["n_actions"], weights, device, model_path)
    return agent, config, model_path


def deep_agent(config: Config, obs_shape, n_actions: int, weights: dict, device: str, source: Path):
    """A QAgent for ``config`` holding ``weights`` (a Q-network state dict saved from observations of shape
    ``obs_shape`` with ``n_actions`` actions), in evaluation mode; ConfigError if the env no longer fits."""
    info = check_env(config)
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
