#!/usr/bin/env bash
# Long Atari-100k runs beside a working session, one per core, and their small files into benchmarks/results.
#
#   bash benchmarks/atari100k_runs.sh start CORE GAME [ALGO [SEED]]  # e.g. start 0 MsPacman der (default: der, 0)
#   bash benchmarks/atari100k_runs.sh chain CORE ALGO SEED GAME...    # those games one after another on CORE
#   bash benchmarks/atari100k_runs.sh status                         # the last logged step of every run
#   bash benchmarks/atari100k_runs.sh finish GAME [ALGO [SEED]]      # copy a finished run's small files, tables
#
# `start` runs seed SEED of GAME in the background, pinned to CORE, from a frozen copy of the current commit
# ($QZOO_FROZEN, default ~/qzoo-frozen: a git worktree, so merging into this checkout while the run goes changes
# nothing it imports), into $QZOO_PENDING (default ~/qzoo-pending) with a checkpoint every 10k steps (replay
# included). Started again after the run was cut (a session's end), it continues from the newest intact checkpoint
# exactly (`qzoo bench` does that for an unfinished run). A DER run takes ~2 h on one Zen 4 core, DrQ(ε) ~1.2 h.
# `chain` queues several games on one core (each as `start` would run it, the next when the last one exits: a
# session's worth of runs in one command); cut by a session's end, the same `chain` again continues the cut run
# and skips the finished ones.
# A seed above 0 is run as `qzoo bench --seeds SEED+1`, which needs seeds 0..SEED-1 finished in $QZOO_PENDING:
# `start` copies the committed ones from benchmarks/results there first (their small files are a finished run).
# `finish` copies config.yaml, progress.csv, evaluations.csv, result.json and command.txt (never checkpoints) into
# benchmarks/results/atari100k/ALE/GAME-v5/ALGO_sSEED/, then `qzoo bench` (which skips finished runs) rewrites
# results.md, results.csv, curves.png and scores.png there. Committing is left to you.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
pending=${QZOO_PENDING:-$HOME/qzoo-pending}
frozen=${QZOO_FROZEN:-$HOME/qzoo-frozen}
sets=(--set bf16=true --set checkpoint_freq=10000)  # start and finish: a bench run's settings must match
usage() { sed -n '4,7p' "$0" | sed 's/^# *//' >&2; exit 2; }
seeds_before() {  # seeds 0..$2-1 of game $1, algo $3, finished: from benchmarks/results into $pending
    local s
    for ((s = 0; s < $2; s++)); do
        local run="atari100k/ALE/$1-v5/$3_s$s"
        [ -f "$pending/$run/result.json" ] && continue
        [ -f "benchmarks/results/$run/result.json" ] \
            || { echo "seed $s of $3 $1 is not in benchmarks/results" >&2; exit 2; }
        mkdir -p "$pending/$(dirname "$run")" && cp -r "benchmarks/results/$run" "$pending/$run"
    done
}

run_one() {  # core game algo seed: one bench run in the foreground, from the frozen worktree, into its log
    (cd "$frozen" && PYTHONPATH="$frozen" OMP_WAIT_POLICY=PASSIVE taskset -c "$1" "$repo/.venv/bin/qzoo" bench \
        atari100k --algos "$3" --seeds $(($4 + 1)) --envs "ALE/$2-v5" --jobs 1 --bench-dir "$pending" "${sets[@]}" \
        >>"$pending/${2}_${3}_s${4}.log" 2>&1)
}
launch() {  # core algo seed game...: prepare, then the games in turn in the background (start: one game)
    local core=$1 algo=$2 seed=$3 game
    shift 3
    if [ ! -d "$frozen" ]; then git worktree add --detach "$frozen" HEAD >/dev/null; fi
    mkdir -p "$pending"
    for game in "$@"; do seeds_before "$game" "$seed" "$algo"; done
    (setsid nohup bash "$repo/benchmarks/atari100k_runs.sh" _run "$core" "$algo" "$seed" "$@" >/dev/null 2>&1 &)
    echo "started $algo seed $seed of $* on core $core, one after another (code of" \
        "$(git -C "$frozen" rev-parse --short HEAD)); logs $pending/<game>_${algo}_s${seed}.log"
}

case "${1:-}" in
start)
    [ $# -ge 3 ] || usage
    launch "$2" "${4:-der}" "${5:-0}" "$3"
    ;;
chain)
    [ $# -ge 5 ] || usage
    launch "$2" "$3" "$4" "${@:5}"
    ;;
_run)  # core algo seed game...: the games in turn (start and chain run this in the background)
    core=$2 algo=$3 seed=$4; shift 4
    for game in "$@"; do run_one "$core" "$game" "$algo" "$seed" || true; done
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
    game=$2 algo=${3:-der} seed=${4:-0}
    src="$pending/atari100k/ALE/$game-v5/${algo}_s${seed}"
    dst="benchmarks/results/atari100k/ALE/$game-v5/${algo}_s${seed}"
    grep -q '"status": "finished"' "$src/result.json" 2>/dev/null || { echo "$src has not finished" >&2; exit 2; }
    mkdir -p "$dst"
    cp "$src"/{command.txt,config.yaml,evaluations.csv,progress.csv,result.json} "$dst/"
    OMP_WAIT_POLICY=PASSIVE .venv/bin/qzoo bench atari100k --algos "$algo" --seeds $((seed + 1)) --envs "ALE/$game-v5" \
        --jobs 1 --bench-dir benchmarks/results "${sets[@]}"
    echo "copied into $dst; tables rewritten (commit them with the run's files)"
    ;;
*) usage ;;
esac
