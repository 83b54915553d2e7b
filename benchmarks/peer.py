"""The peer for comparisons: stable-baselines3 in its own virtual environment (never a qzoo dependency).

``ensure_sb3()`` creates ``benchmarks/.sb3-venv`` on first use (CPU torch from the local wheel first, so pip
does not pull a CUDA build), adds ale-py and OpenCV (for the Atari benchmark) to a venv made before they were
needed, and returns its python. ``run_sb3(config_dict)`` runs ``sb3_runner.py`` there and
returns its JSON result.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV = HERE / ".sb3-venv"
SB3_VERSION = "2.9.2"
ATARI_PACKAGES = ["ale-py>=0.10,<1", "opencv-python-headless>=4.8,<6"]  # SB3's AtariWrapper needs cv2


def ensure_sb3() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {VENV} with stable-baselines3=={SB3_VERSION} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        pip = [str(python), "-m", "pip", "install", "-q"]
        subprocess.run(pip + ["torch==2.13.0"], check=True)
        subprocess.run(pip + [f"stable-baselines3=={SB3_VERSION}", "gymnasium[classic-control,box2d]>=1.1,<2",
                              *ATARI_PACKAGES], check=True)
    elif subprocess.run([str(python), "-c", "import ale_py, cv2"], capture_output=True).returncode != 0:
        subprocess.run([str(python), "-m", "pip", "install", "-q", *ATARI_PACKAGES], check=True)
    return python


def run_sb3(spec: dict, timeout: int = 3600) -> dict:
    python = ensure_sb3()
    out = subprocess.run([str(python), str(HERE / "sb3_runner.py"), json.dumps(spec)], capture_output=True,
                         text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"sb3 runner failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])
