"""Run directories and atomic checkpoints.

A run directory holds::

    config.yaml        the fully resolved configuration (reloadable with --preset)
    command.txt        the command line that started the run
    progress.csv       one row per log interval
    evaluations.csv    one row per evaluation
    tensorboard/       TensorBoard event files
    checkpoints/       periodic full checkpoints (agent, optimizer, target net, step): step_<N>.pt
    best_model.pt      Q-network with the best evaluation so far
    model.pt           final Q-network
    qtable.csv         --algo qlearning: the final Q-table, with best_qtable.csv, in place of the .pt files

Every file is written to a temporary name in the same directory, flushed, fsynced, then renamed, so a crash
never leaves a half-written file under a real name.
"""

from __future__ import annotations

import io
import os
import re
import time
from pathlib import Path

import torch
import yaml

from qzoo.config import Config, ConfigError, from_dict

FORMAT_VERSION = 1
MODEL_FILE, BEST_FILE, CONFIG_FILE = "model.pt", "best_model.pt", "config.yaml"


def new_run_dir(root: str | Path, config: Config) -> Path:
    """``<root>/<env_id>/<algo>_s<seed>_<YYYYmmdd-HHMMSS>[_k]`` (created, never reused)."""
    base = Path(root) / config.env_id / f"{config.algo}_s{config.seed}_{time.strftime('%Y%m%d-%H%M%S')}"
    path, k = base, 1
    while True:
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            k += 1
            path = base.with_name(f"{base.name}_{k}")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save(path: Path, payload: dict) -> None:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(Path(path), buffer.getvalue())


def write_config(run_dir: Path, config: Config) -> None:
    atomic_write_bytes(run_dir / CONFIG_FILE, yaml.safe_dump(config.to_dict(), sort_keys=False).encode())


def read_config(run_dir: Path) -> Config:
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"'{run_dir}' is not a qzoo run directory (no {CONFIG_FILE})")
    with open(path) as f:
        return from_dict(yaml.safe_load(f))


def model_payload(config: Config, agent, step: int, obs_shape) -> dict:
    return {"format": "qzoo-model", "version": FORMAT_VERSION, "env_id": config.env_id, "algo": config.algo,
            "obs_shape": tuple(obs_shape), "n_actions": agent.n_actions, "step": step,
            "config": config.to_dict(), "q_net": agent.q_net.state_dict()}


def checkpoint_payload(config: Config, agent, step: int, obs_shape, extra: dict) -> dict:
    payload = model_payload(config, agent, step, obs_shape)
    payload.update(format="qzoo-checkpoint", agent=agent.state_dict(), **extra)
    del payload["q_net"]
    return payload


def checkpoint_files(run_dir: Path) -> list[Path]:
    files = (Path(run_dir) / "checkpoints").glob("step_*.pt")
    return sorted(files, key=lambda p: int(re.findall(r"\d+", p.stem)[0]))


def save_checkpoint(run_dir: Path, payload: dict, keep: int) -> Path:
    directory = Path(run_dir) / "checkpoints"
    directory.mkdir(exist_ok=True)
    path = directory / f"step_{payload['step']}.pt"
    save(path, payload)
    for old in checkpoint_files(run_dir)[:-keep]:
        old.unlink()
    return path


def load(path: Path) -> dict:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConfigError(f"model file '{path}' does not exist") from None
    except Exception as e:  # truncated / corrupted / not a torch file
        raise ConfigError(f"'{path}' is not a readable qzoo model ({type(e).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") not in ("qzoo-model", "qzoo-checkpoint"):
        raise ConfigError(f"'{path}' is not a qzoo model file")
    if payload.get("version") != FORMAT_VERSION:
        raise ConfigError(f"'{path}' has format version {payload.get('version')}; this qzoo reads {FORMAT_VERSION}")
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
