"""The peers for comparisons, each in its own virtual environment (never a qzoo dependency): stable-baselines3's
DQN (PyTorch), and SBX's (``sbx-rl``, Stable-Baselines3 in JAX, the faster of the two on small networks).

:func:`ensure_sb3` creates the venv on first use (CPU torch 2.13.0 first, so pip does not pull a CUDA build; then
stable-baselines3, gymnasium and minatar) and returns its python. :func:`run_sb3` runs ``sb3_runner.py`` there on a
qzoo config dict (same env, hyperparameters and seed) and returns the runner's JSON result.

The venv lives in ``$QZOO_SB3_VENV``, by default ``~/.cache/qzoo/sb3-venv``; ``$QZOO_SB3_PYTHON`` names a python that
already has stable-baselines3 instead (no venv is made: a machine that cannot download, such as a lent GPU machine
with the wheels carried in). :func:`ensure_sbx` / :func:`run_sbx` do the same for SBX (``sbx_runner.py``;
``$QZOO_SBX_VENV``, by default ``~/.cache/qzoo/sbx-venv``), with JAX on the CPU on one thread unless ``XLA_FLAGS``
says otherwise.
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
SBX_RUNNER = HERE / "sbx_runner.py"
SB3_VERSION = "2.9.2"
PEER_PACKAGES = [f"stable-baselines3=={SB3_VERSION}", "gymnasium[classic-control,box2d]>=1.1,<2", "minatar>=1.0.15,<2",
                 "ale-py>=0.10,<1", "opencv-python-headless>=4.8,<6"]  # (SB3's AtariWrapper needs cv2)
SBX_VERSION = "0.28.0"
SBX_PACKAGES = [f"sbx-rl=={SBX_VERSION}", "gymnasium[classic-control,box2d]>=1.1,<2", "minatar>=1.0.15,<2"]
ONE_THREAD_XLA = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def default_venv() -> Path:
    return Path(os.environ.get("QZOO_SB3_VENV") or Path.home() / ".cache" / "qzoo" / "sb3-venv")


def default_sbx_venv() -> Path:
    return Path(os.environ.get("QZOO_SBX_VENV") or Path.home() / ".cache" / "qzoo" / "sbx-venv")


def _ensure_venv(venv: Path, packages: list[str], name: str, log) -> Path:
    """The python of ``venv``, created (once) with CPU torch 2.13.0 (so pip does not pull a CUDA build) and
    ``packages``. A venv whose install broke midway is redone, and one made before ``packages`` changed gets them."""
    python, done = venv / "bin" / "python", venv / ".qzoo-installed"
    if not done.exists() or done.read_text().split() != " ".join(packages).split():
        print(f"qzoo: creating {venv} with {name} (once; a few minutes) ...", file=log, flush=True)
        try:
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
            subprocess.run(pip + ["torch==2.13.0"], check=True)
            subprocess.run(pip + packages, check=True)
        except (subprocess.CalledProcessError, OSError) as e:
            raise ConfigError(f"could not install the {name} peer into {venv}: {e}") from None
        done.write_text(" ".join(packages) + "\n")
    return python


def ensure_sb3(venv: Path | None = None, log=sys.stderr) -> Path:
    """The python of the SB3 venv, created (once) if missing; ``$QZOO_SB3_PYTHON`` when set (and no ``venv``)."""
    if venv is None and os.environ.get("QZOO_SB3_PYTHON"):
        return Path(os.environ["QZOO_SB3_PYTHON"])
    return _ensure_venv(Path(venv or default_venv()), PEER_PACKAGES, f"stable-baselines3=={SB3_VERSION}", log)


def ensure_sbx(venv: Path | None = None, log=sys.stderr) -> Path:
    """The python of the SBX venv (JAX on the CPU), created (once) if missing."""
    return _ensure_venv(Path(venv or default_sbx_venv()), SBX_PACKAGES, f"sbx-rl=={SBX_VERSION}", log)


def peer_environ() -> dict[str, str]:
    """The environment for a peer process: the user's, without the OpenMP wait policy that importing qzoo set and
    the jemalloc that the qzoo command preloaded (what the user set stays), so the peer runs at its own defaults."""
    import qzoo
    from qzoo.allocator import without_qzoo_preload

    env = without_qzoo_preload(dict(os.environ))
    if qzoo.USER_OMP_WAIT_POLICY is None:
        env.pop("OMP_WAIT_POLICY", None)
    return env


def _run(python: Path, runner: Path, spec: dict, env: dict, timeout: float | None, prefix: list[str]) -> dict:
    out = subprocess.run([*prefix, str(python), str(runner), json.dumps(spec)], capture_output=True, text=True,
                         timeout=timeout, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{runner.name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_sb3(spec: dict, venv: Path | None = None, timeout: float | None = None, prefix: list[str] = ()) -> dict:
    """Train SB3's DQN on ``spec`` (a qzoo config dict, plus optional ``run_dir``, ``eval_episodes``; on the config's
    ``device``, which means the same to SB3: ``auto`` is CUDA when present) and return ``{"steps", "seconds",
    "steps_per_s", "eval_mean", "eval_std", "train_return"}``. ``prefix``: a command to run the runner under
    (``["taskset", "-c", "1"]``)."""
    return _run(ensure_sb3(venv), RUNNER, spec, peer_environ(), timeout, list(prefix))


def run_sbx(spec: dict, venv: Path | None = None, timeout: float | None = None, prefix: list[str] = ()) -> dict:
    """Train SBX's DQN on ``spec`` (an MLP config dict, plus optional ``eval_episodes``), as :func:`run_sb3`. JAX
    runs on the CPU, on one thread (``XLA_FLAGS``) unless the caller's environment sets its own flags."""
    env = peer_environ()
    env.setdefault("XLA_FLAGS", ONE_THREAD_XLA)
    env["JAX_PLATFORMS"] = "cpu"
    return _run(ensure_sbx(venv), SBX_RUNNER, spec, env, timeout, list(prefix))
