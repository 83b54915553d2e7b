"""Model files (model.pt, best_model.pt): the Q-network and what it was trained on, written atomically and read
back (:mod:`qzoo.checkpoint.verified` checks them first); each carries a sha256 of its contents.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import torch

from qzoo.checkpoint.durable import CheckpointError, atomic_write, describe_os_error
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
    """model.pt / best_model.pt: the Q-network and what it was trained on, with its own checksum (``sha256``,
    :func:`payload_digest`), so one file carries what verifies it."""
    payload = {"format": "qzoo-model", "version": FORMAT_VERSION, "env_id": config.env_id, "algo": config.algo,
               "obs_shape": tuple(obs_shape), "n_actions": agent.n_actions, "step": step,
               "config": config.to_dict(), "q_net": agent.q_net.state_dict()}
    return {**payload, "sha256": payload_digest(payload)}


def payload_digest(payload: dict) -> str:
    """sha256 of a model payload's contents (every key but ``sha256``: tensors by dtype, shape and bytes, other
    values by repr), independent of how torch lays out the file."""
    digest = hashlib.sha256()

    def add(key: str, value) -> None:
        if isinstance(value, dict):
            for k in sorted(value, key=str):
                add(f"{key}/{k}", value[k])
        elif isinstance(value, torch.Tensor):
            data = value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
            digest.update(f"{key}:{value.dtype}:{tuple(value.shape)}:".encode())
            digest.update(data.tobytes())
        else:
            digest.update(f"{key}={value!r};".encode())

    add("", {k: v for k, v in payload.items() if k != "sha256"})
    return digest.hexdigest()


def load(path: Path) -> dict:
    """A model file or checkpoint, unverified (every command reads through :func:`qzoo.checkpoint.load_model`)."""
    try:
        with warnings.catch_warnings():  # a file that is no torch file may make torch warn (an odd pickle protocol)
            warnings.simplefilter("ignore")  # before it fails: the one line below says what is wrong
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
