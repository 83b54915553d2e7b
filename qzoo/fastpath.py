"""The update of a small Q-network without per-call overhead: on classic control an update is a few 64x256
matrix products, and the Python and dispatch around each torch call cost as much as the products themselves.

- :func:`clip_grad_norm`: global-norm clipping as ``clip_grad_norm_``'s two foreach kernels.
- :class:`FusedAdamStep`: fused Adam's one kernel, called directly.
- :class:`MLPPhase`: a whole training phase of a plain MLP (uniform replay): targets for all of its batches at
  once, then per update only the products of the forward and hand-written backward pass (``MLPBackprop``), into
  gradient buffers allocated once, the clipping and the Adam kernel. The same arithmetic, in the same order, as
  ``QAgent.update`` on each batch in turn (tested bit for bit); only the logged loss and mean Q are summed once
  per log interval (:class:`PhaseLog`) rather than per update.
- :class:`CenteredRMSpropStep`: centered RMSprop (the DQN / MinAtar papers' optimizer) over one flat buffer per
  moment, the foreach path's arithmetic without its allocations.
- :class:`MinAtarPhase`: :class:`MLPPhase` for the MinAtar CNN (conv 3x3 -> fc -> head) with that RMSprop: the
  convolution's backward is aten's ``convolution_backward``, called as autograd calls it (tested bit for bit).
"""

from __future__ import annotations

import numpy as np
import torch

import qzoo.native
from qzoo.losses import q_learning_target, td_loss, td_loss_grad
from qzoo.networks import MinAtarCNN, MLPBackprop


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

    def step(self, grads: list[torch.Tensor] | None = None) -> None:
        """One Adam step with ``grads`` (one per parameter, in order), or with the parameters' ``.grad``."""
        if self._state is None and not self.optimizer.state:
            if grads is not None:
                for p, g in zip(self.params, grads, strict=True):
                    p.grad = g
            with torch.inference_mode(False):  # state tensors that any later step may update in place
                self.optimizer.step()
            torch.autograd.graph.increment_version(self.params)
            return
        exp_avgs, exp_avg_sqs, steps = self.moments()
        group = self.optimizer.param_groups[0]
        beta1, beta2 = group["betas"]
        torch._foreach_add_(steps, 1)
        grads = [p.grad for p in self.params] if grads is None else grads
        torch._fused_adam_(self.params, grads, exp_avgs, exp_avg_sqs, [], steps,
                           amsgrad=False, lr=group["lr"], beta1=beta1, beta2=beta2,
                           weight_decay=group["weight_decay"], eps=group["eps"], maximize=False)
        # The fused kernel leaves the parameters' version counters as they were (torch 2.13; a foreach or
        # per-tensor step bumps them, as every in-place change should): bump them, so what keys a cache on a
        # weight's version (NatureCNN's bfloat16 casts) sees the step.
        torch.autograd.graph.increment_version(self.params)


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


class CenteredRMSpropStep:
    """``optimizer.step()`` of a centered ``torch.optim.RMSprop`` (one param group, no momentum or weight decay),
    as the foreach path's arithmetic without its per-call Python and allocations:

        v = alpha v + (1 - alpha) g^2;   m = lerp(m, g, 1 - alpha);   theta -= lr g / (sqrt(v - m^2) + eps)

    The moments ``v`` (square_avg) and ``m`` (grad_avg) live in one flat buffer each, whose views are the
    optimizer's state tensors (so ``state_dict`` and checkpoints are unchanged); the element-wise updates run once
    over each buffer, the denominator goes into a buffer allocated once, and only the parameter update runs per
    tensor. The first step goes through ``optimizer.step()`` to create the state.

    The square root: torch's CPU ``sqrt`` (MKL's VML) slows down 10-25x on a vector where exact zeros are mixed
    with other values, and a MinAtar network's moments are exactly 0 wherever a weight never had a gradient (the
    fc weights of input features that are never active): measured 1.47 ms for 132k values with 45% zeros against
    0.06 ms without. So the zeros are lifted to 1 before it and put back after, by adding and subtracting an exact
    0/1 mask, ``z = 1 - |sign(d)|``: every other value goes through the same ``sqrt`` unchanged (x + 0 = x, y - 0 = y
    exactly), so the denominators are bit for bit torch's (tested). The mask costs ~0.15 ms, more than it saves
    where zeros are few (MinAtar Space Invaders), so it is used while more than 1% of the moments are exactly 0,
    checked every ``CHECK_ZEROS_EVERY`` steps (either way the numbers are the same)."""

    CHECK_ZEROS_EVERY = 500

    def __init__(self, optimizer: torch.optim.RMSprop, params: list[torch.Tensor]):
        self.optimizer, self.params = optimizer, params
        self._state: tuple | None = None
        self._lift_zeros, self._steps_to_check = False, 0

    @classmethod
    def of(cls, optimizer: torch.optim.Optimizer, params: list[torch.Tensor]) -> CenteredRMSpropStep | None:
        group = optimizer.param_groups[0]
        flags = ("maximize", "capturable", "differentiable")
        if not (type(optimizer) is torch.optim.RMSprop and one_group_of(optimizer, params) and group["centered"]
                and group["momentum"] == 0 and group["weight_decay"] == 0 and not any(group.get(f) for f in flags)
                and all(p.device.type == "cpu" and p.dtype == torch.float32 for p in params)):
            return None
        return cls(optimizer, params)

    def forget_state(self) -> None:
        """The optimizer's state tensors were replaced (``load_state_dict``): gather them again."""
        self._state = None

    @torch.inference_mode(False)  # buffers that later steps update in place, whatever mode they run in
    def _gather_state(self) -> tuple:
        states = [self.optimizer.state[p] for p in self.params]
        sizes = [p.numel() for p in self.params]
        flats = []
        for key in ("square_avg", "grad_avg"):
            flat = torch.cat([s[key].detach().reshape(-1) for s in states])
            for s, view, p in zip(states, flat.split(sizes), self.params, strict=True):
                s[key] = view.view_as(p)
            flats.append(flat)
        denom, zeros, ones = torch.empty_like(flats[0]), torch.empty_like(flats[0]), torch.ones_like(flats[0])
        return (*flats, denom, [d.view_as(p) for d, p in zip(denom.split(sizes), self.params, strict=True)],
                [s["step"] for s in states], zeros, ones)

    def step(self, grads: list[torch.Tensor], flat_grad: torch.Tensor) -> None:
        """One step with ``grads`` (one per parameter, in order), which are views of ``flat_grad`` in that order;
        under ``no_grad`` or ``inference_mode`` (it updates the parameters in place)."""
        if self._state is None:
            if not self.optimizer.state:
                for p, g in zip(self.params, grads, strict=True):
                    p.grad = g
                with torch.inference_mode(False):
                    self.optimizer.step()
                return
            self._state = self._gather_state()
        square_avg, grad_avg, denom, denoms, steps, zeros, ones = self._state
        group = self.optimizer.param_groups[0]
        alpha = group["alpha"]
        torch._foreach_add_(steps, 1)
        square_avg.mul_(alpha).addcmul_(flat_grad, flat_grad, value=1 - alpha)
        grad_avg.lerp_(flat_grad, 1 - alpha)
        torch.addcmul(square_avg, grad_avg, grad_avg, value=-1, out=denom)
        if self._steps_to_check == 0:  # are enough moments exactly 0 for the slow path to cost more than the mask?
            self._lift_zeros = int(torch.count_nonzero(square_avg)) < 0.99 * square_avg.numel()
            self._steps_to_check = self.CHECK_ZEROS_EVERY
        self._steps_to_check -= 1
        if self._lift_zeros:
            torch.sub(ones, torch.sign(denom, out=zeros).abs_(), out=zeros)  # 1 where denom == 0, else 0 (NaN: NaN)
            denom.add_(zeros).sqrt_().sub_(zeros)  # sqrt(0) = 0 without the slow path (see above)
        else:
            denom.sqrt_()
        denom.add_(group["eps"])
        torch._foreach_addcdiv_(self.params, grads, denoms, value=-group["lr"])


class MinAtarPhase(PhaseLog):
    """A training phase of the MinAtar Q-network (``MinAtarCNN`` torso, plain linear head: conv 3x3 -> ReLU ->
    fc -> ReLU -> linear) with :class:`CenteredRMSpropStep` on the CPU, on uniform batches, the target network
    frozen for the phase. Per update, without autograd and with the gradients written into buffers allocated once:

        q = head(relu(fc(relu(conv(s_tm1)))));  dL/dq = td_loss_grad(q[a_tm1], y) at a_tm1, 0 elsewhere;
        back through head, fc (mm, sum, threshold_backward) and conv (aten's convolution_backward for the weight
        and bias only, as autograd calls it);  clip;  centered RMSprop

    with y computed as :class:`MLPPhase` computes it (plain: for every batch of the phase at once; Double DQN: per
    update from the online net as it is then). The same kernels on the same operands as ``QAgent.update`` (tested
    bit for bit)."""

    def __init__(self, online: torch.nn.Module, target: torch.nn.Module, rmsprop: CenteredRMSpropStep, *,
                 max_grad_norm: float, loss: str, double: bool):
        self.online, self.target = self.layers(online), self.layers(target)
        self._target_fc: tuple | None = None  # ((version, address) of the target fc weight, its transpose)
        self.params = [p for layer in self.online for p in (layer.weight, layer.bias)]
        sizes = [p.numel() for p in self.params]
        self.flat_grad = torch.zeros(sum(sizes))
        self.grads = [g.view_as(p) for g, p in zip(self.flat_grad.split(sizes), self.params, strict=True)]
        self.rmsprop = rmsprop
        self.max_grad_norm, self.loss, self.double = max_grad_norm, loss, double

    @staticmethod
    def takes(obs: np.ndarray) -> bool:
        """Any grids (N, C, H, W): the torso casts them (uint8 from replay) as this path does."""
        return obs.ndim == 4

    @staticmethod
    def layers(q_net: torch.nn.Module) -> list[torch.nn.Module]:
        """(conv, fc, head) of a plain MinAtar Q-network."""
        return [q_net.torso.convs[0], q_net.torso.fc, q_net.advantage]

    @classmethod
    def of(cls, q_net: torch.nn.Module, target_net: torch.nn.Module, rmsprop: CenteredRMSpropStep | None,
           **kw) -> MinAtarPhase | None:
        torso = getattr(q_net, "torso", None)
        if not (rmsprop is not None and isinstance(torso, MinAtarCNN) and q_net.value is None
                and q_net.support is None and type(torso.fc) is torch.nn.Linear
                and type(q_net.advantage) is torch.nn.Linear):
            return None
        conv = torso.convs[0]
        if not (conv.stride == (1, 1) and conv.padding == (0, 0) and conv.dilation == (1, 1) and conv.groups == 1
                and conv.padding_mode == "zeros" and conv.bias is not None):
            return None
        online = [p for layer in cls.layers(q_net) for p in (layer.weight, layer.bias)]
        if len(online) != len(rmsprop.params) or not all(a is b for a, b in zip(online, rmsprop.params, strict=False)):
            return None
        return cls(q_net, target_net, rmsprop, **kw)

    @staticmethod
    def forward(layers: list[torch.nn.Module], obs: torch.Tensor, fc_weight_t: torch.Tensor | None = None) \
            -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Q(obs, .) and the inputs of conv, fc and head, with the kernels the modules call (ReLUs in place).
        ``fc_weight_t``: the fc weight's transpose as a contiguous copy (the target net's, see :meth:`target_fc_t`)."""
        conv, fc, head = layers
        x = obs.float()
        h = torch.conv2d(x, conv.weight, conv.bias).relu_().flatten(1)
        f = torch.addmm(fc.bias, h, fc.weight.t() if fc_weight_t is None else fc_weight_t).relu_()
        return torch.addmm(head.bias, f, head.weight.t()), [x, h, f]

    def target_fc_t(self) -> torch.Tensor:
        """The target fc weight's transpose, contiguous. ``addmm`` with the (128, 1024) weight's transposed view
        takes ~2.4x as long at batch 32 as with a contiguous copy of it (98 vs 40 us), for the same
        results (bit-equal under MKL's AVX-512 and AVX2 kernels, tested through the phase's comparison with
        autograd). The target net changes only in place (a sync bumps the version counter), so the copy is made
        once per sync (64 us), not per update."""
        weight = self.target[1].weight
        key = (weight._version, weight.data_ptr())
        if self._target_fc is None or self._target_fc[0] != key:
            with torch.inference_mode(False):  # (a plain tensor: later syncs compare against it outside the phase)
                self._target_fc = (key, weight.detach().t().contiguous())
        return self._target_fc[1]

    @torch.inference_mode()
    def q_values(self, obs: torch.Tensor) -> torch.Tensor:
        """The online net's Q(obs, .) (acting), as ``q_net(obs)`` computes it."""
        return self.forward(self.online, obs)[0]

    @torch.inference_mode()
    def run(self, obs_tm1: torch.Tensor, action_tm1: torch.Tensor, reward_t: torch.Tensor, discount_t: torch.Tensor,
            obs_t: torch.Tensor, n_updates: int, rows: np.ndarray | None = None) -> None:
        """``n_updates`` updates on the phase's batches (rows [i * B, (i + 1) * B) are batch i; observations
        (N, C, H, W) of any dtype, cast as the torso casts them; ``rows``, the storage indices, are not needed:
        MinAtar phases are one small batch). Their losses and Q values go to the log (:meth:`drain_metrics`)."""
        n, batch = n_updates, len(action_tm1) // n_updates
        q_target_t = self.forward(self.target, obs_t, self.target_fc_t())[0]
        if self.double:
            next_xs, rewards, discounts, q_targets = (x.view(n, batch, *x.shape[1:]).unbind(0)
                                                      for x in (obs_t, reward_t, discount_t, q_target_t))
        q_taken, targets = self.log_rows(n, batch)
        if not self.double:
            targets.copy_(q_learning_target(reward_t, discount_t, q_target_t).view(n, batch, 1))
        xs = obs_tm1.view(n, batch, *obs_tm1.shape[1:]).unbind(0)
        actions = action_tm1.view(n, batch, 1).unbind(0)
        target_rows, q_rows = targets.unbind(0), q_taken.unbind(0)
        scale, kind, max_norm = 1.0 / batch, self.loss, self.max_grad_norm
        flat_grad, skip_below = self.flat_grad, (0.9 * max_norm) ** 2
        conv, fc, head = self.online
        kh, kw = conv.kernel_size
        g_conv_w, g_conv_b, g_fc_w, g_fc_b, g_head_w, g_head_b = self.grads
        for u in range(n):
            if self.double:
                q_select = self.forward(self.online, next_xs[u])[0]
                target_rows[u].copy_(q_learning_target(rewards[u], discounts[u], q_targets[u], q_select).unsqueeze(1))
            q, (x, h, f) = self.forward(self.online, xs[u])
            q_tm1 = torch.gather(q, 1, actions[u], out=q_rows[u])
            grad = torch.zeros_like(q).scatter_(1, actions[u], td_loss_grad(q_tm1, target_rows[u], scale, kind))
            torch.mm(grad.t(), f, out=g_head_w)
            torch.sum(grad, 0, out=g_head_b)
            grad = torch.ops.aten.threshold_backward(grad.mm(head.weight), f, 0)
            torch.mm(grad.t(), h, out=g_fc_w)
            torch.sum(grad, 0, out=g_fc_b)
            grad = torch.ops.aten.threshold_backward(grad.mm(fc.weight), h, 0)
            _, grad_w, grad_b = torch.ops.aten.convolution_backward(
                grad.view(batch, conv.out_channels, x.shape[2] - kh + 1, x.shape[3] - kw + 1), x, conv.weight,
                [conv.out_channels], [1, 1], [0, 0], [1, 1], False, [0, 0], 1, [False, True, True])
            g_conv_w.copy_(grad_w)
            g_conv_b.copy_(grad_b)
            if not float(torch.dot(flat_grad, flat_grad)) < skip_below:  # as MLPPhase: exactly 1 below it
                clip_grad_norm(self.grads, max_norm)
            self.rmsprop.step(self.grads, flat_grad)
