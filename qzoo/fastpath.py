"""The update of a small Q-network without per-call overhead: on classic control an update is a few 64x256
matrix products, and the Python and dispatch around each torch call cost as much as the products themselves.

- :func:`clip_grad_norm`: global-norm clipping as ``clip_grad_norm_``'s two foreach kernels.
- :class:`FusedAdamStep`: fused Adam's one kernel, called directly.
- :class:`MLPPhase`: a whole training phase of a plain MLP (uniform replay): targets for all of its batches at
  once, then per update only the products of the forward and hand-written backward pass (``MLPBackprop``), into
  gradient buffers allocated once, the clipping and the Adam kernel. The same arithmetic, in the same order, as
  ``QAgent.update`` on each batch in turn (tested bit for bit); only the logged loss and mean Q are summed once
  per log interval (:class:`PhaseLog`) rather than per update.

The MinAtar CNN's phase, with centered RMSprop, is :mod:`qzoo.fastpath_cnn`.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future

import numpy as np
import torch

import qzoo.native
from qzoo.losses import q_learning_target, td_loss, td_loss_grad
from qzoo.networks import MLPBackprop


def clip_grad_norm(grads: list[torch.Tensor], max_norm: float) -> None:
    """Scale the gradients so their global L2 norm is at most ``max_norm``:  g *= min(max_norm / (||g|| + 1e-6), 1).
    The arithmetic of ``torch.nn.utils.clip_grad_norm_(foreach=True)`` (tested equal) for gradients on one device,
    without its per-call grouping by device and dtype, which costs as much as the norm itself on small networks."""
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    scale = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    # Most updates are not clipped: multiplying by exactly 1 changes nothing, so on the CPU (where reading the
    # factor costs nothing) the pass over every gradient is skipped then (a NaN factor still multiplies)
    if grads[0].device.type != "cpu" or scale.item() != 1.0:
        torch._foreach_mul_(grads, scale)


def one_group_of(optimizer: torch.optim.Optimizer, params: list[torch.Tensor]) -> bool:
    """True when ``optimizer`` has one param group holding exactly ``params``, in order, with a plain float learning
    rate: what stepping its state directly (FusedAdamStep, CenteredRMSpropStep) assumes."""
    group = optimizer.param_groups[0]
    return (len(optimizer.param_groups) == 1 and isinstance(group["lr"], float) and len(group["params"]) == len(params)
            and all(a is b for a, b in zip(group["params"], params, strict=False)))


class FusedAdamStep:
    """``optimizer.step()`` of a fused ``torch.optim.Adam`` (one param group, no amsgrad), as the one kernel call
    it makes, without the per-call Python around it (hooks, grouping by device and dtype, state look-ups): 2-3x
    less overhead per update on small networks, the same kernel, the same state (so ``state_dict`` and
    checkpoints are unchanged). The first step goes through ``optimizer.step()`` to create the state."""

    def __init__(self, optimizer: torch.optim.Adam, params: list[torch.Tensor]):
        self.optimizer, self.params = optimizer, params
        self._state: tuple | None = None
        self._halves_agree: bool | None = None  # does a step in halves give the whole step's numbers? (None: unknown)

    @classmethod
    def of(cls, optimizer: torch.optim.Optimizer, params: list[torch.Tensor]) -> FusedAdamStep | None:
        group = optimizer.param_groups[0]
        flags = ("amsgrad", "maximize", "capturable", "differentiable", "decoupled_weight_decay")
        if not (type(optimizer) is torch.optim.Adam and one_group_of(optimizer, params) and group.get("fused")
                and not any(group.get(flag) for flag in flags)
                and len({p.device for p in params}) == 1
                and hasattr(torch, "_fused_adam_")):
            return None
        return cls(optimizer, params)

    def forget_state(self) -> None:
        """The optimizer's state tensors were replaced (``load_state_dict``): look them up again."""
        self._state = None

    def moments(self) -> tuple[list, list, list] | None:
        """The state the fused kernel updates, (exp_avgs, exp_avg_sqs, steps) in the parameters' order; None before
        the first step (which creates it)."""
        if self._state is None and self.optimizer.state:
            states = [self.optimizer.state[p] for p in self.params]
            self._state = tuple([s[key] for s in states] for key in ("exp_avg", "exp_avg_sq", "step"))
        return self._state

    def step(self, grads: list[torch.Tensor] | None = None, beside: Callable[..., Future] | None = None) -> None:
        """One Adam step with ``grads`` (one per parameter, in order), or with the parameters' ``.grad``.
        ``beside(fn, *args)``: runs ``fn(*args)`` on a second thread (qzoo.second_thread), which then steps half of
        each large parameter (:meth:`_step_halves`)."""
        if self._state is None and not self.optimizer.state:
            if grads is not None:
                for p, g in zip(self.params, grads, strict=True):
                    p.grad = g
            with torch.inference_mode(False):  # state tensors that any later step may update in place
                self.optimizer.step()
            torch.autograd.graph.increment_version(self.params)
            return
        exp_avgs, exp_avg_sqs, steps = self.moments()
        torch._foreach_add_(steps, 1)
        grads = [p.grad for p in self.params] if grads is None else grads
        tensors = (self.params, grads, exp_avgs, exp_avg_sqs, steps)
        if beside is None or self._halves_agree is False:
            self._kernel(*tensors)
        else:
            self._step_halves(tensors, beside)
        # The fused kernel leaves the parameters' version counters as they were (torch 2.13; a foreach or
        # per-tensor step bumps them, as every in-place change should): bump them, so what keys a cache on a
        # weight's version (NatureCNN's bfloat16 casts) sees the step.
        torch.autograd.graph.increment_version(self.params)

    def _kernel(self, params, grads, exp_avgs, exp_avg_sqs, steps) -> None:
        group = self.optimizer.param_groups[0]
        beta1, beta2 = group["betas"]
        torch._fused_adam_(params, grads, exp_avgs, exp_avg_sqs, [], steps, amsgrad=False, lr=group["lr"],
                           beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"], eps=group["eps"],
                           maximize=False)

    def _step_halves(self, tensors: tuple[list[torch.Tensor], ...], beside: Callable[..., Future]) -> None:
        """The step with each large parameter (>= 64k elements, an even first dimension) in two halves of its rows,
        the second on the other thread. Adam is element by element, so each half's numbers are the whole's unless
        the kernel treats an element differently by its place in the tensor (a vector loop's tail): checked on the
        first such step, which is made whole while the halves step copies; if they differ every step is whole."""
        if self._halves_agree is None:
            params, grads, exp_avgs, exp_avg_sqs, steps = tensors
            copies = [[t.clone() for t in ts] for ts in (params, exp_avgs, exp_avg_sqs)]
            split = self._halves((copies[0], grads, copies[1], copies[2], steps))
            if split is not None:
                job = beside(self._kernel, *split[1])
                self._kernel(*split[0])
                job.result()
            self._kernel(*tensors)
            self._halves_agree = split is not None and all(
                torch.equal(a, b) for got, want in zip((params, exp_avgs, exp_avg_sqs), copies, strict=True)
                for a, b in zip(got, want, strict=True))
            return
        here, there = self._halves(tensors)
        job = beside(self._kernel, *there)
        self._kernel(*here)
        job.result()

    @staticmethod
    def _halves(tensors: tuple[list[torch.Tensor], ...]) -> tuple[list[list], list[list]] | None:
        """The kernel's lists for this thread and the other: the first and second half of the rows of each large
        parameter (and of its gradient and moments; its step count, read and not written by the kernel, in both),
        the small ones whole here. None when no parameter is large."""
        here, there = [[] for _ in tensors], [[] for _ in tensors]
        for parts in zip(*tensors, strict=True):
            p, step = parts[0], parts[-1]
            if p.numel() >= 1 << 16 and p.shape[0] % 2 == 0:
                half = p.shape[0] // 2
                for lists, rows in ((here, slice(0, half)), (there, slice(half, None))):
                    for out, t in zip(lists[:-1], parts[:-1], strict=True):
                        out.append(t[rows])
                    lists[-1].append(step)
            else:
                for out, t in zip(here, parts, strict=True):
                    out.append(t)
        return (here, there) if there[0] else None


class PhaseLog:
    """The logged loss and mean Q of a phase loop's updates, computed when asked (:meth:`drain_metrics`, once per log
    interval) rather than after every phase: each update writes its Q(s_tm1, a_tm1) and targets y into rows of two
    buffers, whose losses are evaluated together. Saves a handful of small ops per phase, which matter with one
    update per phase (MinAtar: train_freq 1)."""

    loss: str
    _log_q = _log_y = None
    _logged = 0
    _sums: tuple[torch.Tensor, torch.Tensor] | None = None

    def log_rows(self, n: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows (n, batch, 1) for the next n updates' Q(s_tm1, a_tm1) and targets."""
        if self._log_q is None or self._log_q.shape[1] != batch or self._logged + n > len(self._log_q):
            self._flush()
            if self._log_q is None or self._log_q.shape[1] != batch or n > len(self._log_q):
                with torch.inference_mode(False):
                    self._log_q, self._log_y = torch.empty(2, max(n, 256), batch, 1).unbind(0)
        rows = slice(self._logged, self._logged + n)
        self._logged += n
        return self._log_q[rows], self._log_y[rows]

    @torch.inference_mode()
    def _flush(self) -> None:
        if self._logged:
            q, y = self._log_q[:self._logged], self._log_y[:self._logged]
            losses = td_loss(q, y, self.loss).view(self._logged, -1).mean(1).sum()
            sums = (losses, q.view(self._logged, -1).mean(1).sum())
            self._sums = sums if self._sums is None else (self._sums[0] + sums[0], self._sums[1] + sums[1])
            self._logged = 0

    def drain_metrics(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The sums, since the last call, of each update's mean loss and mean Q(s_tm1, a_tm1) (None: no update)."""
        self._flush()
        sums, self._sums = self._sums, None
        return sums


GRAD_ALIGN = 16  # floats: 64 bytes, the alignment of a tensor torch allocates


class MLPPhase(PhaseLog):
    """A training phase of a plain or dueling MLP Q-network (``MLPBackprop``) with ``FusedAdamStep``, on uniform batches
    (no importance weights), the target network frozen for the phase. Per update:

        q = MLP(s_tm1);  dL/dq = td_loss_grad(q[a_tm1], y) at a_tm1, 0 elsewhere;  backward into the gradient
        buffers;  clip;  Adam

    with y = r + discount * max_a Q_target(s_t, a) computed for every batch of the phase beforehand, or with Double
    DQN y = r + discount * Q_target(s_t, argmax_a Q(s_t, a)) where Q is the online net at that update."""

    TARGET_CHUNK = 512  # rows per product of the target pass (:meth:`target_values`)

    def __init__(self, backprop: MLPBackprop, target: MLPBackprop, adam: FusedAdamStep, *, max_grad_norm: float,
                 loss: str, double: bool):
        self.layers, self.adam = backprop.layers, adam
        pair = lambda layer: None if layer is None else (layer.bias, layer.weight.t())  # noqa: E731
        self.online = [pair(layer) for layer in self.layers]  # views: follow in-place updates
        self.target = [pair(layer) for layer in target.layers]
        self.online_value, self.target_value = pair(backprop.value), pair(target.value)  # dueling: V's layer
        # the gradients, written in place by every update: views of one flat buffer, whose squared norm is one dot
        # (the zeros between them add nothing). Each view starts 64 bytes into the buffer, as a fresh tensor does:
        # a BLAS product written into a misaligned output may sum in another order (MKL on a Zen 4 EPYC does), and
        # the gradients must be the reference path's to the last bit
        sizes = [p.numel() for p in backprop.params]
        padded = [-(-n // GRAD_ALIGN) * GRAD_ALIGN for n in sizes]
        starts = [sum(padded[:i]) for i in range(len(padded))]
        self.flat_grad = torch.zeros(sum(padded))
        self.grads = [self.flat_grad[start:start + p.numel()].view_as(p)
                      for start, p in zip(starts, backprop.params, strict=True)]
        self.max_grad_norm, self.loss, self.double = max_grad_norm, loss, double

    @classmethod
    def of(cls, backprop: MLPBackprop | None, target: MLPBackprop | None, adam: FusedAdamStep | None,
           **kw) -> MLPPhase | None:
        if backprop is None or target is None or adam is None or len(backprop.params) != len(adam.params) \
                or not all(a is b for a, b in zip(backprop.params, adam.params, strict=False)):
            return None
        return cls(backprop, target, adam, **kw)

    @staticmethod
    def takes(obs: np.ndarray) -> bool:
        """Whether the phase's observations suit this path (float32 vectors: the MLP's own input)."""
        return obs.dtype == np.float32

    @staticmethod
    def forward(layers: list[tuple[torch.Tensor, torch.Tensor]], x: torch.Tensor,
                value: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Q(x, .) and the layer inputs, from (bias, weight^T) pairs: nn.Linear's addmm, the ReLUs in place; with a
        dueling head's ``value`` pair, Q = V + A - mean_a A as MLPBackprop computes it."""
        inputs = [x]
        for bias, weight_t in layers[:-1]:
            inputs.append(torch.addmm(bias, inputs[-1], weight_t).relu_())
        bias, weight_t = layers[-1]
        q = torch.addmm(bias, inputs[-1], weight_t)
        if value is not None:
            q = MLPBackprop.combine(torch.addmm(value[0], inputs[-1], value[1]), q)
        return q, inputs

    def target_values(self, obs_t: torch.Tensor, rows: np.ndarray | None = None) -> torch.Tensor:
        """Q_target(s_t, .) of every row of a phase (the target is frozen for the phase), each distinct storage row
        once when ``rows`` (the rows' storage indices) repeat: while the buffer is small a phase draws the same
        transitions many times (RL Zoo's CartPole: 8,192 draws from 1,256 rows in the first phase, ~79% distinct
        over the run). In chunks of ``TARGET_CHUNK`` rows, whose activations stay in the core's cache (on a Zen 4
        EPYC one 8,192-row pass took 21-34 ms, the same rows in 512-row chunks 14-16 ms). Each output row is
        its own products, so the values are those of one pass over all rows, bit for bit (tested), as long as every
        product has a multiple of 4 rows: BLAS sums a row of a product with one output column (a dueling head's
        value layer) in another order when the rows are not, and every column when they are fewer than 4. So the
        distinct rows are padded to a multiple of 16 (a phase of batches of 32 or 64 has such a count anyway)."""
        if rows is not None:
            distinct, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
            if len(distinct) < 0.95 * len(rows):
                first = np.concatenate([first, np.full(-len(first) % 16, first[-1])])
                return self.target_values(obs_t[torch.from_numpy(first)])[torch.from_numpy(inverse)]
        chunk = self.TARGET_CHUNK
        parts = [self.forward(self.target, obs_t[i:i + chunk], self.target_value)[0]
                 for i in range(0, len(obs_t), chunk)]
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    @torch.inference_mode()  # (less per-call work than no_grad: ~6% of an update at CartPole's sizes)
    def run(self, obs_tm1: torch.Tensor, action_tm1: torch.Tensor, reward_t: torch.Tensor, discount_t: torch.Tensor,
            obs_t: torch.Tensor, n_updates: int, rows: np.ndarray | None = None) -> None:
        """``n_updates`` updates on the phase's batches (rows [i * B, (i + 1) * B) are batch i; float32
        observations, flattened here; ``rows``: their storage indices, if known). Their losses and Q values go to
        the log (:meth:`drain_metrics`)."""
        n, batch = n_updates, len(action_tm1) // n_updates
        obs_tm1, obs_t = obs_tm1.flatten(1), obs_t.flatten(1)
        q_target_t = self.target_values(obs_t, rows)
        if self.double:  # each update's targets, filled in as it goes (they depend on the online net)
            next_xs, rewards, discounts, q_targets = (x.view(n, batch, *x.shape[1:]).unbind(0)
                                                      for x in (obs_t, reward_t, discount_t, q_target_t))
        q_taken, targets = self.log_rows(n, batch)
        if not self.double:  # the whole phase's targets at once (elementwise: the same numbers)
            targets.copy_(q_learning_target(reward_t, discount_t, q_target_t).view(n, batch, 1))
        xs, actions = obs_tm1.view(n, batch, -1).unbind(0), action_tm1.view(n, batch, 1).unbind(0)
        target_rows, q_rows = targets.unbind(0), q_taken.unbind(0)
        grads, scale, kind, max_norm = self.grads, 1.0 / batch, self.loss, self.max_grad_norm
        flat_grad, skip_below = self.flat_grad, (0.9 * max_norm) ** 2
        backward = [(i, grads[2 * i], grads[2 * i + 1], layer.weight) for i, layer in enumerate(self.layers)][::-1]
        last, online_value = len(self.layers) - 1, self.online_value
        if online_value is not None:  # dueling: V's gradients are the last two buffers
            grad_value_weight, grad_value_bias, value_weight = grads[-2], grads[-1], online_value[1].t()
        native = qzoo.native.load()
        # the compiled loop (qzoo/csrc/mlp_phase.cpp: these calls, in this order) takes the updates from the first
        # one with Adam's state (the first step of a run creates it through optimizer.step())
        in_python = n if native is None else int(self.adam.moments() is None)
        for u in range(in_python):
            if self.double:
                q_select = self.forward(self.online, next_xs[u], online_value)[0]
                target_rows[u].copy_(q_learning_target(rewards[u], discounts[u], q_targets[u], q_select).unsqueeze(1))
            q, inputs = self.forward(self.online, xs[u], online_value)
            q_tm1 = torch.gather(q, 1, actions[u], out=q_rows[u])  # (B, 1)
            grad = torch.zeros_like(q).scatter_(1, actions[u], td_loss_grad(q_tm1, target_rows[u], scale, kind))
            if online_value is not None:
                grad, grad_v = MLPBackprop.head_grads(grad)
                torch.mm(grad_v.t(), inputs[-1], out=grad_value_weight)
                torch.sum(grad_v, 0, out=grad_value_bias)
            for i, grad_weight, grad_bias, weight in backward:  # as MLPBackprop.backward, into the buffers
                torch.mm(grad.t(), inputs[i], out=grad_weight)
                torch.sum(grad, 0, out=grad_bias)
                if i > 0:
                    grad_h = grad.mm(weight)
                    if online_value is not None and i == last:
                        grad_h = grad_h + grad_v.mm(value_weight)
                    grad = torch.ops.aten.threshold_backward(grad_h, inputs[i], 0)
            # Clipping scales by min(max_norm / (||g|| + 1e-6), 1), which is exactly 1 well below the threshold:
            # a dot product (float32, relative error far below the 10% margin) tells when to skip it
            if not float(torch.dot(flat_grad, flat_grad)) < skip_below:
                clip_grad_norm(grads, max_norm)
            self.adam.step(grads)
        if in_python < n:
            group = self.adam.optimizer.param_groups[0]
            by_update = lambda x: x.view(n, batch, *x.shape[1:]) if self.double else None  # noqa: E731
            value_b, value_wt = online_value or (None, None)
            native.mlp_phase(
                [layer.weight for layer in self.layers], [w for _, w in self.online], [b for b, _ in self.online],
                None if value_wt is None else value_wt.t(), value_wt, value_b, grads, flat_grad,
                obs_tm1.view(n, batch, -1), action_tm1.view(n, batch, 1), targets, q_taken, by_update(obs_t),
                by_update(reward_t), by_update(discount_t), by_update(q_target_t), in_python, n, scale,
                kind == "huber", max_norm, skip_below, self.adam.params, *self.adam.moments(), group["lr"],
                *group["betas"], group["weight_decay"], group["eps"])
            torch.autograd.graph.increment_version(self.adam.params)  # as FusedAdamStep.step does
