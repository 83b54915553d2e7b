"""What bounds an Atari update on this CPU: the arithmetic of one update, counted from the network's layer shapes,
against the rate the matrix kernels reach here (one thread).

    python benchmarks/kernel_rates.py [--algos dqn,drq_eps,der] [--updates 60]

Prints, per algo (its Pong preset, bf16 and float32): the update's GFLOP (hand count, below), the CPU ms of
one ``agent.learn`` on one torch thread (``update_cost.time_updates``: synthetic replay, jemalloc) and the GFLOP/s
that makes; then the fully connected layer's product alone (``F.linear``) at batch 1, 32, 64 and 256 in bfloat16
and float32: what oneDNN/MKL reach on this core for one matrix product (the convolutions, whose products have
batch x output pixels rows, run at about the large-batch rate).

The count (multiply-adds x 2): every convolution and linear layer's multiply-adds for one observation (torch's
FlopCounterMode over a forward pass of one frame stack), times the batch; an update makes the forward passes its
algorithm needs (online at s_t; target at s_t+1; with Double also online at s_t+1), then the backward pass: each
layer's weight gradient (as many products as its forward) and the input gradient of every layer but the first (the
frames need none). A noisy layer's forward is two products (mean weights, and sigma weights on the noise-scaled
input), and so are its gradients. Elementwise work (ReLU, casts, the loss, Adam) is left out.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def update_gflop(cfg, agent) -> float:
    """The hand count above for one update of ``agent`` (batch ``cfg.batch_size``): one observation's forward pass
    counted by torch's FlopCounterMode (no gradients, so every layer is a plain aten product it counts; noisy
    layers sample noise in training mode: two products), the first convolution's share from its shapes."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    torso = agent.q_net.torso
    frames = torch.zeros((1, 4, 84, 84), dtype=torch.uint8)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        agent.q_net(frames)
    forward = counter.get_total_flops()  # multiply-adds x 2, one observation
    first = torso.convs[0]
    height, width = torso._pad_input(frames).shape[-2:]
    out_h = (height - first.kernel_size[0]) // first.stride[0] + 1
    out_w = (width - first.kernel_size[1]) // first.stride[1] + 1
    kernel = first.in_channels * first.kernel_size[0] * first.kernel_size[1]
    first_flops = 2 * out_h * out_w * first.out_channels * kernel
    passes = 3 if cfg.double else 2
    return cfg.batch_size * (passes * forward + forward + (forward - first_flops)) / 1e9


def gemm_rates(k: int, n: int = 512) -> list[tuple[str, int, float]]:
    import torch
    import torch.nn.functional as F

    out = []
    for dtype in (torch.bfloat16, torch.float32):
        w = torch.randn(n, k).to(dtype)
        for m in (1, 32, 64, 256):
            x = torch.randn(m, k).to(dtype)
            for _ in range(5):
                F.linear(x, w)
            reps = 40
            start = time.perf_counter()
            for _ in range(reps):
                F.linear(x, w)
            seconds = (time.perf_counter() - start) / reps
            out.append((str(dtype).split(".")[-1], m, 2 * m * k * n / seconds / 1e9))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--algos", default="dqn,drq_eps,der")
    p.add_argument("--updates", type=int, default=60)
    args = p.parse_args()
    from qzoo import allocator

    allocator.restart_python_with_jemalloc(sys.argv)  # as the qzoo command starts itself
    import torch
    from update_cost import synthetic_agent, time_updates

    torch.set_num_threads(1)
    print(f"allocator: {allocator.describe()}; torch {torch.__version__}, one thread", flush=True)
    fc_inputs = set()
    for algo in args.algos.split(","):
        cfg, agent, _, _ = synthetic_agent(algo, [])
        gflop = update_gflop(cfg, agent)
        fc_inputs.add(agent.q_net.torso.fc.in_features)
        for bf16 in ("true", "false"):
            ms = time_updates(algo, [f"bf16={bf16}"], args.updates, 0, 0)
            print(f"{algo:8} bf16={bf16:5}: {gflop:.2f} GFLOP per update, {ms:6.2f} ms CPU -> "
                  f"{gflop / ms * 1e3:5.1f} GFLOP/s", flush=True)
    for k in sorted(fc_inputs):
        for dtype, m, rate in gemm_rates(k):
            print(f"F.linear {dtype:8} batch {m:3} x {k} -> 512: {rate:5.1f} GFLOP/s", flush=True)


if __name__ == "__main__":
    main()
