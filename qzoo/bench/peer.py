"""The peer for comparisons: stable-baselines3's DQN in its own virtual environment (never a qzoo dependency).

:func:`ensure_sb3` creates the venv on first use (CPU torch 2.13.0 first, so pip does not pull a CUDA build; then
stable-baselines3, gymnasium and minatar) and returns its python. :func:`run_sb3` runs ``sb3_runner.py`` there on a
qzoo config dict (same env, hyperparameters and seed) and returns the runner's JSON result.

The venv lives in ``$QZOO_SB3_VENV``, by default ``~/.cache/qzoo/sb3-venv``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from qzoo.config import ConfigError

HERE = Path(__file__).resolve().parent
RUNNER = HERE / "sb3_runner.py"
SB3_VERSION = "2.9.2"
PEER_PACKAGES = [f"stable-baselines3=={SB3_VERSION}", "gymnasium[classic-control,box2d]>=1.1,<2", "minatar>=1.0.15,<2",
                 "ale-py>=0.10,<1", "opencv-python-headless>=4.8,<6"]  # (SB3's AtariWrapper needs cv2)


def default_venv() -> Path:
    return Path(os.environ.get("QZOO_SB3_VENV") or Path.home() / ".cache" / "qzoo" / "sb3-venv")


def ensure_sb3(venv: Path | None = None, log=sys.stderr) -> Path:
    """The python of the SB3 venv, created (once) if missing. A venv whose install broke midway is redone, and one
    made before PEER_PACKAGES changed gets them."""
    venv = Path(venv or default_venv())
    python, done = venv / "bin" / "python", venv / ".qzoo-installed"
    if not done.exists() or done.read_text().split() != " ".join(PEER_PACKAGES).split():
        print(f"qzoo: creating {venv} with stable-baselines3=={SB3_VERSION} (once; a few minutes) ...", file=log,
              flush=True)
        try:
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
            subprocess.run(pip + ["torch==2.13.0"], check=True)
            subprocess.run(pip + PEER_PACKAGES, check=True)
        except (subprocess.CalledProcessError, OSError) as e:
            raise ConfigError(f"could not install the stable-baselines3 peer into {venv}: {e}") from None
        done.write_text(" ".join(PEER_PACKAGES) + "\n")
    return python


def peer_environ() -> dict[str, str]:
    """The environment for a peer process: the user's, without the OpenMP wait policy that importing qzoo set (a
    policy the user set stays), so the peer runs at its own defaults."""
    import qzoo

    env = dict(os.environ)
    if qzoo.USER_OMP_WAIT_POLICY is None:
        env.pop("OMP_WAIT_POLICY", None)
    return env


def run_sb3(spec: dict, venv: Path | None = None, timeout: float | None = None) -> dict:
    """Train SB3's DQN on ``spec`` (a qzoo config dict, plus optional ``run_dir``, ``eval_episodes``) and return
    ``{"steps", "seconds", "steps_per_s", "eval_mean", "eval_std", "train_return"}``."""
    python = ensure_sb3(venv)
    out = subprocess.run([str(python), str(RUNNER), json.dumps(spec)], capture_output=True, text=True,
                         timeout=timeout, env=peer_environ())
    if out.returncode != 0:
        raise RuntimeError(f"sb3 runner failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])
