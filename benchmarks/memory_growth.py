"""Resident-memory growth per gradient update of an Atari agent, with and without parts of the training loop.

    python benchmarks/memory_growth.py MODE [UPDATES]
    # MODE: words joined by '_': learn (always), sync (a hard target sync after each update, as DrQ(eps)),
    # act (one action per update), log (pop_metrics every 100), nocache (re-cast the target's fc to bf16 on every
    # call), fp32 (bf16=false). Run it under jemalloc as qzoo does (LD_PRELOAD=.../libjemalloc.so) and add
    # MALLOC_CONF=stats_print:true to see live bytes (allocated) against pages kept (resident) at exit.

The DrQ(eps) Pong preset (bf16 unless fp32), one torch thread, a replay of 3,000 random frames; RSS every 250
updates and the slope after update 500 (BENCHMARKS.md, Memory).
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from update_cost import synthetic_agent  # (benchmarks/, the script's folder)

from qzoo import networks


def rss_mb() -> float:
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20


def main(mode: str, n: int) -> None:
    torch.set_num_threads(1)
    if "nocache" in mode:
        def cast_every_call(self, x):
            fc = self.fc
            return fc(x) if fc.weight.requires_grad else torch.nn.functional.linear(x, fc.weight.to(torch.bfloat16),
                                                                                     fc.bias)
        networks.NatureCNN._fc_bf16 = cast_every_call
    cfg, agent, replay, obs = synthetic_agent("drq_eps", [f"bf16={'false' if 'fp32' in mode else 'true'}"])
    rng = np.random.default_rng(0)
    base = None
    for i in range(n):
        if "act" in mode:
            agent.act(obs, 0.01, rng)
        agent.learn(replay, 1, cfg.batch_size, 3000 + i)
        if "sync" in mode:
            agent.sync_target()
        if "log" in mode and i % 100 == 0:
            agent.pop_metrics()
        if i % 250 == 0:
            base = rss_mb() if i == 500 else base
            print(f"{i} {rss_mb():.1f} MB", flush=True)
    print(f"{mode}: growth after update 500: {(rss_mb() - base) * 1024 / (n - 500):.1f} kB/update")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 2000)
