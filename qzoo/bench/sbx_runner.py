"""Runs SBX's DQN (``sbx-rl``: Stable-Baselines3 in JAX, the fastest DQN on small networks that RL Zoo supports)
with qzoo-named hyperparameters; prints one JSON line. Runs in the SBX venv (qzoo/bench/peer.py), which has no qzoo.

Classic control / Box2D: SBX's MLP Q-network has two hidden layers of ``net_arch[0]`` units (RL Zoo's CartPole and
LunarLander entries use [256, 256]); its optimizer is optax's Adam with the config's learning rate and eps. SBX has no
gradient clipping (``max_grad_norm`` does not exist there), so it does a little less arithmetic per update than qzoo
and SB3, which clip at the config's max_grad_norm.

MinAtar (``MinAtar/<Game>-v1``, qzoo's adapter loaded by path; the ``minatar`` package must be in the venv): SBX has
no Q-network for 10x10 grids (its ``CnnPolicy`` is the Nature CNN), so :class:`MinAtarQNetwork` is qzoo's MinAtar
network in flax (conv 16 3x3 stride 1 VALID, ReLU, dense 128, ReLU, dense n_actions; the uint8 (C, 10, 10) grids
cast to float32 and moved channels-last for flax's conv), given to SBX through a subclass of its ``DQNPolicy``.
The optimizer is ``optax.rmsprop(decay=0.95, eps, centered=True, eps_in_sqrt=False)``: theta -= lr g /
(sqrt(E[g^2] - E[g]^2) + eps), the formula of torch's centered RMSprop (eps outside the square root), both
moments starting at 0; it is chained after ``optax.clip_by_global_norm(max_grad_norm)`` so the update clips as
qzoo and SB3 do (optax scales by max_norm / ||g|| above the threshold, torch by max_norm / (||g|| + 1e-6)).
The weights are initialised by flax's defaults (LeCun normal, zero biases), not torch's: the same network and
arithmetic per update, not the same numbers.

Each training phase samples all of its batches at once and runs the gradient steps inside one jitted ``lax.scan``
(with one update per step: one call per step); the first phase includes the jit compilation, as it does for a user.
"""

import json
import os
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
import torch
from peer_runs import (  # this folder (the runner's sys.path[0])
    dqn_hyperparameters,
    evaluate,
    learn_timed,
    load_minatar_adapter,
)
from sbx import DQN
from sbx.common.type_aliases import RLTrainState
from sbx.dqn.policies import DQNPolicy
from stable_baselines3.common.env_util import make_vec_env


class MinAtarQNetwork(nn.Module):
    """qzoo's MinAtar Q-network: conv 16 3x3 stride 1, ReLU, dense 128, ReLU, dense n_actions."""

    n_actions: int
    n_units: int = 128

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        x = jnp.transpose(x.astype(jnp.float32), (0, 2, 3, 1))  # (B, C, H, W) uint8 -> (B, H, W, C) float
        x = nn.relu(nn.Conv(16, kernel_size=(3, 3), strides=(1, 1), padding="VALID")(x))
        x = x.reshape((x.shape[0], -1))
        x = nn.relu(nn.Dense(self.n_units)(x))
        return nn.Dense(self.n_actions)(x)


class MinAtarPolicy(DQNPolicy):
    """SBX's DQN policy with :class:`MinAtarQNetwork` (``net_arch=[128]``) instead of its MLP."""

    def build(self, key: jax.Array, lr_schedule) -> jax.Array:
        key, qf_key = jax.random.split(key, 2)
        obs = jnp.array([self.observation_space.sample()])
        self.qf = MinAtarQNetwork(n_actions=int(self.action_space.n), n_units=self.n_units)
        self.qf_state = RLTrainState.create(
            apply_fn=self.qf.apply, params=self.qf.init({"params": qf_key}, obs),
            target_params=self.qf.init({"params": qf_key}, obs),
            tx=self.optimizer_class(learning_rate=lr_schedule(1), **self.optimizer_kwargs))
        self.qf.apply = jax.jit(self.qf.apply)
        return key


def clipped_centered_rmsprop(learning_rate, *, max_grad_norm: float, eps: float, decay: float = 0.95):
    """Global-norm clipping, then centered RMSprop with eps outside the square root (torch's formula)."""
    return optax.chain(optax.clip_by_global_norm(max_grad_norm),
                       optax.rmsprop(learning_rate, decay=decay, eps=eps, eps_in_sqrt=False, centered=True))


def main() -> None:
    spec = json.loads(sys.argv[1])
    torch.set_num_threads(1)  # SB3's replay buffer (which SBX uses) samples with torch
    env_kwargs = spec.get("env_kwargs") or {}
    if spec["env_id"].startswith("MinAtar/"):
        if spec.get("network", "minatar") not in ("minatar", "auto") or spec.get("optimizer") != "rmsprop":
            raise SystemExit("sbx_runner: MinAtar only with the MinAtar CNN and centered RMSprop")
        load_minatar_adapter()
        policy = MinAtarPolicy
        policy_kwargs = {"net_arch": [128], "optimizer_class": clipped_centered_rmsprop,
                         "optimizer_kwargs": {"max_grad_norm": spec["max_grad_norm"], "eps": spec["optimizer_eps"]}}
    else:
        arch = list(spec["net_arch"])
        if len(arch) != 2 or arch[0] != arch[1]:
            raise SystemExit(f"sbx_runner: SBX's DQN has two equal hidden layers; net_arch {arch} has no equivalent")
        if spec.get("optimizer", "adam") != "adam" or spec["env_id"].startswith("ALE/"):
            raise SystemExit("sbx_runner: only MLP Q-networks with Adam (classic control, Box2D) and MinAtar")
        policy = "MlpPolicy"
        policy_kwargs = {"net_arch": arch, "optimizer_class": optax.adam,
                         "optimizer_kwargs": {"eps": spec.get("optimizer_eps", 1e-8)}}
    env = make_vec_env(spec["env_id"], n_envs=spec.get("n_envs", 1), seed=spec["seed"], env_kwargs=env_kwargs)
    model = DQN(policy, env, **dqn_hyperparameters(spec), policy_kwargs=policy_kwargs)
    result = {**learn_timed(model, spec), "jax": jax.__version__, "backend": jax.default_backend(),
              "xla_flags": os.environ.get("XLA_FLAGS")}
    if spec.get("eval_episodes"):
        result.update(evaluate(model, spec, env_kwargs))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
