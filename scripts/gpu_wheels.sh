#!/bin/bash
# The wheels a lent GPU machine (the `device` tool's nvidia-h100-x1 / nvidia-h200) lacks for benchmarks/gpu_session.sh:
# its image has Python 3.12 with CUDA PyTorch, numpy, OpenCV, PyYAML, tqdm, TensorBoard, pandas, matplotlib and
# cloudpickle, and cannot download. This fetches gymnasium, ale-py (ships its ROMs) and stable-baselines3 2.9.2 for
# CPython 3.12 into .whl/ (git-ignored, ~4 MB), at the versions of this checkout's .venv where it has them.
#
#     bash scripts/gpu_wheels.sh        # then: device run with carry [".whl"]: bash benchmarks/gpu_session.sh
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
version() { "$py" -c "import importlib.metadata as m; print('==' + m.version('$1'))" 2>/dev/null || true; }
mkdir -p .whl
"$py" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
    "gymnasium$(version gymnasium)" "farama-notifications$(version farama-notifications)" "ale-py$(version ale-py)" \
    "stable-baselines3==2.9.2"
ls .whl
