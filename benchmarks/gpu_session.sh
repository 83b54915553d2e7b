#!/bin/bash
# Issue 14's GPU row in one call of a lent GPU machine: Atari training steps/s at RL Zoo's DQN settings, qzoo
# (fp32, bf16, overlapped, both; 8 envs) against stable-baselines3 2.9.2's DQN on the same GPU, in one run
# (benchmarks/speed_atari.py with device=cuda), plus the machine's facts. Prepare here, then run there:
#
#     bash scripts/gpu_wheels.sh                                  # here: the missing wheels into .whl/
#     device run, carry [".whl"], timeout_s 560:  bash benchmarks/gpu_session.sh
#
# Results land in $OUT (the device tool brings them back): machine.txt, smoke.log (a 1,500-step qzoo run first, so
# a failure on CUDA shows its traceback), speed_atari_gpu.log (one line per run, as each ends; a failed run's error
# too: --keep-going) and speed_atari_gpu.json (the summary, printed at the end). ~6-7 min on an H100 for the defaults;
# BUDGET (s, default 480) stops it in time to bring back what finished. ENVS, WINDOW, REPEATS, DEVICE override.
# Off a GPU machine (DEVICE=cpu, a python with torch in PYTHON) it runs the same way, for checking the script.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/qzoo-gpu-out}
py=${PYTHON:-python3}
mkdir -p "$OUT"
"$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/qzoo-site .whl/*.whl \
    || { echo "gpu_session: installing .whl/ failed (run scripts/gpu_wheels.sh here and carry .whl)"; exit 2; }
export PYTHONPATH=/tmp/qzoo-site:$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 QZOO_SB3_PYTHON=$(command -v "$py")
{
  date -u; nvidia-smi 2>&1 | head -15; lscpu | grep -E "Model name|^CPU\(s\)|Flags" | cut -c1-400
  "$py" -c "import torch, gymnasium, ale_py, stable_baselines3 as s; print('torch', torch.__version__, 'cuda',
torch.cuda.is_available() and torch.cuda.get_device_name(), 'gymnasium', gymnasium.__version__, 'ale-py',
ale_py.__version__, 'sb3', s.__version__)"
} > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"
# a short training first (1,500 steps, 500 of them learning), so that a failure on CUDA shows its traceback here
timeout 150 "$py" -m qzoo train ALE/Pong-v5 --device "${DEVICE:-cuda}" -n 1500 --set learning_starts=1000 \
    --set eval_freq=0 --set eval_episodes=1 --runs-dir /tmp/qzoo-smoke --quiet > "$OUT/smoke.log" 2>&1
echo "gpu_session: qzoo train smoke run exit $? (log: smoke.log)"; tail -5 "$OUT/smoke.log"
timeout "${BUDGET:-480}" "$py" benchmarks/speed_atari.py --envs "${ENVS:-ALE/Pong-v5,ALE/SpaceInvaders-v5}" \
    --window "${WINDOW:-3000}" --repeats "${REPEATS:-2}" --set "device=${DEVICE:-cuda}" \
    --variant bf16=true --variant overlap=true --variant bf16=true,overlap=true --extra-envs 8 --keep-going \
    > "$OUT/speed_atari_gpu.json" 2> >(tee "$OUT/speed_atari_gpu.log" >&2)
rc=$?
echo "gpu_session: speed_atari.py exit $rc (124: BUDGET reached; the log holds the runs that finished)"
cat "$OUT/speed_atari_gpu.json"
exit $rc
