#!/usr/bin/env bash
# Long Atari-100k runs beside a working session, one per core, and their small files into benchmarks/results.
#
#   bash benchmarks/atari100k_runs.sh start CORE GAME [ALGO]   # e.g. start 0 MsPacman der (ALGO default: der)
#   bash benchmarks/atari100k_runs.sh status                   # the last logged step of every run
#   bash benchmarks/atari100k_runs.sh finish GAME [ALGO]       # copy a finished run's small files, rewrite tables
#
# `start` runs seed 0 of GAME in the background, pinned to CORE, from a frozen copy of the current commit
# ($QZOO_FROZEN, default ~/qzoo-frozen: a git worktree, so merging into this checkout while the run goes changes
# nothing it imports), into $QZOO_PENDING (default ~/qzoo-pending) with a checkpoint every 10k steps (replay
# included). Started again after the run was cut (a session's end), it continues from the newest intact checkpoint
# exactly (`qzoo bench` does that for an unfinished run). A DER run takes ~2 h on one Zen 4 core, DrQ(ε) ~1.2 h.
# `finish` copies config.yaml, progress.csv, evaluations.csv, result.json and command.txt (never checkpoints) into
# benchmarks/results/atari100k/ALE/GAME-v5/ALGO_s0/, then `qzoo bench` (which skips finished runs) rewrites
# results.md, results.csv, curves.png and scores.png there. Committing is left to you.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
pending=${QZOO_PENDING:-$HOME/qzoo-pending}
frozen=${QZOO_FROZEN:-$HOME/qzoo-frozen}
sets=(--set bf16=true --set checkpoint_freq=10000)  # start and finish: a bench run's settings must match
usage() { sed -n '4,6p' "$0" | sed 's/^# *//' >&2; exit 2; }

case "${1:-}" in
start)
    [ $# -ge 3 ] || usage
    core=$2 game=$3 algo=${4:-der}
    if [ ! -d "$frozen" ]; then git worktree add --detach "$frozen" HEAD >/dev/null; fi
    mkdir -p "$pending"
    log="$pending/${game}_${algo}.log"
    (cd "$frozen" && PYTHONPATH="$frozen" OMP_WAIT_POLICY=PASSIVE setsid nohup taskset -c "$core" \
        "$repo/.venv/bin/qzoo" bench atari100k --algos "$algo" --seeds 1 --envs "ALE/$game-v5" --jobs 1 \
        --bench-dir "$pending" "${sets[@]}" >>"$log" 2>&1 &)
    echo "started $algo $game seed 0 on core $core (code of $(git -C "$frozen" rev-parse --short HEAD)); log $log"
    ;;
status)
    for progress in "$pending"/atari100k/ALE/*/*/progress.csv; do
        [ -f "$progress" ] || continue
        run=$(dirname "$progress")
        state=running; [ -f "$run/result.json" ] && state=finished
        last=$(tail -n 1 "$progress" | cut -d, -f1)
        echo "$(basename "$(dirname "$run")") $(basename "$run"): step $last ($state)"
    done
    ;;
finish)
    [ $# -ge 2 ] || usage
    game=$2 algo=${3:-der}
    src="$pending/atari100k/ALE/$game-v5/${algo}_s0"
    dst="benchmarks/results/atari100k/ALE/$game-v5/${algo}_s0"
    grep -q '"status": "finished"' "$src/result.json" 2>/dev/null || { echo "$src has not finished" >&2; exit 2; }
    mkdir -p "$dst"
    cp "$src"/{command.txt,config.yaml,evaluations.csv,progress.csv,result.json} "$dst/"
    OMP_WAIT_POLICY=PASSIVE .venv/bin/qzoo bench atari100k --algos "$algo" --seeds 1 --envs "ALE/$game-v5" \
        --jobs 1 --bench-dir benchmarks/results "${sets[@]}"
    echo "copied into $dst; tables rewritten (commit them with the run's files)"
    ;;
*) usage ;;
esac
