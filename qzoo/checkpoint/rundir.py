"""The layout of a run directory and what guards it: file names, the lock, a new directory's name, config.yaml.

(The whole layout is in :mod:`qzoo.checkpoint`'s docstring.)
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from pathlib import Path

import yaml

from qzoo.checkpoint.durable import atomic_write_bytes
from qzoo.config import Config, ConfigError, from_dict

MODEL_FILE, BEST_FILE, CONFIG_FILE = "model.pt", "best_model.pt", "config.yaml"
LOG_FILES = ("progress.csv", "evaluations.csv")

CHECKPOINT_FILE = re.compile(r"step_(\d+)\.(pt|replay\.npz|json)")


@contextlib.contextmanager
def run_dir_lock(run_dir: Path):
    """Hold an exclusive lock on ``run_dir`` for the duration (a flock on the directory itself: no file is created),
    so two processes never train into one run directory (e.g. the same ``--resume`` started twice). ConfigError in
    one line when another holder has it. The kernel drops the lock with its process, even after kill -9. A no-op
    where flock does not exist (Windows)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    fd = os.open(run_dir, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ConfigError(f"'{run_dir}' is in use by another qzoo process (a training or resume of this run is "
                              "still running); wait for it to end or stop it first") from None
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


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


def write_config(run_dir: Path, config: Config) -> None:
    atomic_write_bytes(run_dir / CONFIG_FILE, yaml.safe_dump(config.to_dict(), sort_keys=False).encode())


def read_config(run_dir: Path) -> Config:
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"'{run_dir}' is not a qzoo run directory (no {CONFIG_FILE})")
    try:
        with open(path) as f:
            values = yaml.safe_load(f)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"'{path}' cannot be read ({type(e).__name__})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"'{path}' does not hold a mapping of settings")
    return from_dict(values)


def checkpoint_files(run_dir: Path) -> list[Path]:
    """The checkpoints' ``step_N.pt`` files, oldest first (complete or not: see :func:`verify`)."""
    files = (Path(run_dir) / "checkpoints").glob("step_*.pt")
    return sorted(files, key=lambda p: int(re.findall(r"\d+", p.stem)[0]))


def checkpoint_names(step: int) -> tuple[str, str, str]:
    return f"step_{step}.pt", f"step_{step}.replay.npz", f"step_{step}.json"


def checkpoint_steps(directory: Path) -> list[int]:
    if not directory.is_dir():
        return []
    return sorted({int(m.group(1)) for p in directory.iterdir() if (m := CHECKPOINT_FILE.fullmatch(p.name))})
