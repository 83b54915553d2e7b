"""How much of a Nature-CNN Q-network's first convolution is alive: the share of its ReLU outputs above 0 and the
filters ever active, on frames of random play, and how much Q varies across those frames (an input-blind network's
barely does). A diagnostic for an Atari run whose curve stays flat.

    python benchmarks/dead_filters.py RUN_DIR_OR_MODEL [...] [--frames 200]

Each argument is a run directory (its model.pt, or its newest checkpoint), a model file or a checkpoint file; the
frames come from the first one's env with its preprocessing, random actions, every 10th observation.
"""

from __future__ import annotations

import argparse


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+")
    p.add_argument("--frames", type=int, default=200)
    args = p.parse_args()
    import numpy as np
    import torch
    import torch.nn.functional as F

    from qzoo.envs import make_vec_env
    from qzoo.policy import load_policy

    torch.set_num_threads(1)
    loaded = [load_policy(m) for m in args.models]  # (agent, config, model file): verified, fitted to its env
    config = loaded[0][1].replace(n_envs=1)
    envs = make_vec_env(config)
    obs, _ = envs.reset(seed=0)
    rng, frames = np.random.default_rng(0), []
    while len(frames) < args.frames:
        obs, *_ = envs.step(rng.integers(0, loaded[0][0].n_actions, 1))
        if rng.random() < 0.1:
            frames.append(obs[0])
    envs.close()
    x = torch.as_tensor(np.stack(frames))
    for agent, _, model_path in loaded:
        torso = agent.q_net.torso
        first = torso.convs[0]
        with torch.no_grad():  # the stem as NatureCNN.forward computes it in float32, up to its ReLU
            h = F.relu(F.conv2d(torso._pad_input(x).float(), first.weight * (1.0 / 255.0), first.bias, first.stride))
            q = agent.q_net(x)
        ever = int((h > 0).flatten(2).any(2).any(0).sum())
        print(f"{model_path}: first-layer outputs active {float((h > 0).float().mean()):.4f}, "
              f"filters ever active {ever}/{h.shape[1]}, Q's std across {len(x)} frames {float(q.std(0).mean()):.3g}")

if __name__ == "__main__":
    main()
