#!/usr/bin/env bash
# Create .venv and install qzoo into it. Idempotent.   bash scripts/setup.sh [--dev]
# --dev adds the test tools and the optional extras the tests exercise (PostgreSQL driver, Ray).
# The CPU build of PyTorch is installed first and pinned, so pip never pulls a multi-GB CUDA build;
# the package itself only asks for torch>=2.2,<3, which that build satisfies.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip=(.venv/bin/python -m pip install -q --disable-pip-version-check)
.venv/bin/python -c "import torch" 2>/dev/null || "${pip[@]}" torch==2.13.0 2> >(grep -v 'is ignored' >&2)
extra=""
[ "${1:-}" = "--dev" ] && extra="[dev]"
# Test-only system packages, installed when missing (Debian): the report test opens the HTML page in a real
# headless chromium; the tuning tests start a throwaway PostgreSQL server.
if [ "${1:-}" = "--dev" ] && command -v apt-get >/dev/null 2>&1; then
    missing=()
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || missing+=(postgresql)
    if [ ${#missing[@]} -gt 0 ]; then
        sudo_=""; [ "$(id -u)" = 0 ] || sudo_="sudo"
        echo "installing test dependencies: ${missing[*]}"
        $sudo_ apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq \
            --no-install-recommends "${missing[@]}" >/dev/null
    fi
fi
"${pip[@]}" -e ".${extra}" 2> >(grep -v 'is ignored' >&2)
# the compiled kernels (once per machine and torch version, ~1 min; without a C++ compiler training runs torch's
# calls from Python: the same numbers, slower)
.venv/bin/python -m qzoo.native || true
echo "qzoo installed in .venv ($(.venv/bin/python -c 'import torch, gymnasium; print("torch", torch.__version__, "gymnasium", gymnasium.__version__)'))"
