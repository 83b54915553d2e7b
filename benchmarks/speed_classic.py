"""Training speed on a classic-control env with RL Zoo's hyperparameters: qzoo vs stable-baselines3's DQN,
alternating in one run so both see the same machine load. Reports steps/s and the ratio.

    python benchmarks/speed_classic.py [--env CartPole-v1] [--steps 20000] [--repeats 2] [--peer-threads N]

qzoo uses one torch thread for MLPs (its default). ``--peer-threads`` sets SB3's: 1 (default) compares the two
implementations at equal threads; 0 leaves torch's default (one thread per core), which is what an SB3 user gets.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peer import run_sb3  # noqa: E402

from qzoo.config import resolve  # noqa: E402
from qzoo.trainer import train  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--env", default="CartPole-v1")
    p.add_argument("--steps", type=int, default=20_000)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--peer-threads", type=int, default=1, help="SB3's torch threads (0: torch's default)")
    args = p.parse_args()

    config = resolve(args.env, flags={"n_timesteps": args.steps},
                     sets=["progress_bar=false", "tensorboard=false", "eval_freq=0", "eval_episodes=1",
                           "device=cpu"])
    spec = {k: v for k, v in config.to_dict().items()}
    qz, sb, splits = [], [], []
    for r in range(args.repeats):
        res = train(config.replace(seed=r), None, out=None)
        qz.append(res.steps / res.loop_seconds)
        splits.append({k: round(v / res.loop_seconds, 3) for k, v in res.timing.items()})
        updates = res.agent.updates
        sb.append(run_sb3({**spec, "seed": r, "eval_episodes": 0, "torch_threads": args.peer_threads or None})[
            "steps_per_s"])
        print(f"repeat {r}: qzoo {qz[-1]:.0f} steps/s   sb3 {sb[-1]:.0f} steps/s", file=sys.stderr)
    q, s = statistics.median(qz), statistics.median(sb)
    print(json.dumps({"env": args.env, "steps": args.steps, "repeats": args.repeats, "peer_threads": args.peer_threads,
                      "qzoo_steps_per_s": round(q),
                      "sb3_steps_per_s": round(s), "ratio": round(q / s, 2), "qzoo_all": [round(x) for x in qz],
                      "sb3_all": [round(x) for x in sb],
                      "qzoo_time_split": splits[-1], "qzoo_ms_per_update": round(
                          1e3 * res.timing["update"] / max(updates, 1), 3),
                      "machine": platform.processor() or platform.machine(),
                      "date": time.strftime("%Y-%m-%d")}))


if __name__ == "__main__":
    main()
