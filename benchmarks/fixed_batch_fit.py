"""Does an Atari agent's update fit? The loss of repeated updates on one fixed batch, for the float32 path (its stem
convolution's space-to-depth weight gradient), the float32 path with the stem replaced by plain ``F.conv2d``
(autograd's gradient) and the bf16 path: the three should fall alike (a diagnostic for a run that does not learn).

    python benchmarks/fixed_batch_fit.py [--algo dqn] [--updates 150]

The agent and replay are ``update_cost.py``'s (ALGO's Pong preset, a replay of 3,000 random frames, one thread).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


def losses(algo: str, mode: str, updates: int) -> list[float]:
    import torch
    import torch.nn.functional as F
    from update_cost import synthetic_agent

    import qzoo.networks as networks

    torch.manual_seed(0)
    if mode == "float32, plain stem":
        networks.StemConv.apply = staticmethod(lambda obs, w, b: F.conv2d(obs.float(), w, b, 4))
    cfg, agent, replay, _ = synthetic_agent(algo, ["bf16=true" if mode == "bf16" else "bf16=false"])
    batch = replay.sample(cfg.batch_size, 3000)
    out = []
    for i in range(updates):
        agent.update(batch)
        if i % 10 == 9:
            out.append(agent.pop_metrics()["loss"])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--algo", default="dqn")
    p.add_argument("--updates", type=int, default=150)
    args = p.parse_args()
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); from fixed_batch_fit import losses; "
            "print(json.dumps(losses(sys.argv[2], sys.argv[3], int(sys.argv[4]))))")
    for mode in ("float32", "float32, plain stem", "bf16"):  # each in its own process (the stem is patched)
        out = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent), args.algo, mode,
                              str(args.updates)], check=True, capture_output=True, text=True).stdout
        values = json.loads(out.strip().splitlines()[-1])
        print(f"{mode:>20}: " + " ".join(f"{v:.5f}" for v in values))


if __name__ == "__main__":
    main()
