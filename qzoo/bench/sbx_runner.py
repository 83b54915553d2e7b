"""Runs SBX's DQN (``sbx-rl``: Stable-Baselines3 in JAX, the fastest DQN on small networks that RL Zoo supports)
with qzoo-named hyperparameters; prints one JSON line. Runs in the SBX venv (qzoo/bench/peer.py), which has no qzoo.

SBX's MLP Q-network has two hidden layers of ``net_arch[0]`` units (RL Zoo's CartPole and LunarLander entries use
[256, 256]); its optimizer is optax's Adam with the config's learning rate and eps. SBX has no gradient clipping
(``max_grad_norm`` does not exist there), so it does a little less arithmetic per update than qzoo and SB3, which
clip at the config's max_grad_norm. Each training phase samples all of its batches at once and runs the gradient
steps inside one jitted ``lax.scan``; the first phase includes the jit compilation, as it does for a user.
"""

import json
import os
import sys

import jax
import optax
import torch
from peer_runs import dqn_hyperparameters, evaluate, learn_timed  # this folder (the runner's sys.path[0])
from sbx import DQN
from stable_baselines3.common.env_util import make_vec_env


def main() -> None:
    spec = json.loads(sys.argv[1])
    torch.set_num_threads(1)  # SB3's replay buffer (which SBX uses) samples with torch
    arch = list(spec["net_arch"])
    if len(arch) != 2 or arch[0] != arch[1]:
        raise SystemExit(f"sbx_runner: SBX's DQN has two equal hidden layers; net_arch {arch} has no equivalent")
    if spec.get("optimizer", "adam") != "adam" or spec["env_id"].startswith(("ALE/", "MinAtar/")):
        raise SystemExit("sbx_runner: only MLP Q-networks with Adam (classic control, Box2D)")
    policy_kwargs = {"net_arch": arch, "optimizer_class": optax.adam,
                     "optimizer_kwargs": {"eps": spec.get("optimizer_eps", 1e-8)}}
    env_kwargs = spec.get("env_kwargs") or {}
    env = make_vec_env(spec["env_id"], n_envs=spec.get("n_envs", 1), seed=spec["seed"], env_kwargs=env_kwargs)
    model = DQN("MlpPolicy", env, **dqn_hyperparameters(spec), policy_kwargs=policy_kwargs)
    result = {**learn_timed(model, spec), "jax": jax.__version__, "backend": jax.default_backend(),
              "xla_flags": os.environ.get("XLA_FLAGS")}
    if spec.get("eval_episodes"):
        result.update(evaluate(model, spec, env_kwargs))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
