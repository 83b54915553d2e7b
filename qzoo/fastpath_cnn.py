"""The MinAtar CNN's training phase on the CPU without per-call overhead (:mod:`qzoo.fastpath` does the same for
small MLPs):

- :class:`CenteredRMSpropStep`: centered RMSprop (the DQN / MinAtar papers' optimizer) over one flat buffer per
  moment, the foreach path's arithmetic without its allocations; one compiled pass where qzoo's library is built.
- :class:`MinAtarPhase`: :class:`qzoo.fastpath.MLPPhase` for the MinAtar CNN (conv 3x3 -> fc -> head) with that
  RMSprop: the convolution's weight gradient is aten's ``convolution_backward``, called as autograd calls it, or
  the compiled kernel that sums in the same order.

Each compiled kernel (qzoo/csrc/minatar.cpp) is used only after :func:`same_numbers` has seen it give torch's
numbers bit for bit on this machine, for these shapes; otherwise (or without the library) torch's own calls run.
So the weights are the same with and without the library (tested against autograd and ``optimizer.step()``).
"""

from __future__ import annotations

import numpy as np
import torch

import qzoo.native
from qzoo.fastpath import PhaseLog, clip_grad_norm, one_group_of
from qzoo.losses import q_learning_target, td_loss_grad
from qzoo.networks import MinAtarCNN

_agrees: dict[tuple, bool] = {}  # (kernel, shapes and settings) -> whether the compiled kernel gave torch's numbers


def same_numbers(key: tuple, compare) -> bool:
    """Whether a compiled kernel gives torch's numbers bit for bit for ``key`` (the kernel's name, the shapes and
    settings it runs with) on this machine: ``compare()`` runs both once per key and process on random inputs (a
    summation order or a fused multiply-add that differs shows on almost every element) and says whether every
    output is equal. Which kernels torch runs depends on the CPU, the shapes and the thread count (oneDNN picks its
    convolution's algorithm by batch size), so the check runs where the training runs."""
    key = (*key, torch.get_num_threads())
    if key not in _agrees:
        with torch.inference_mode():
            _agrees[key] = bool(compare())
    return _agrees[key]


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
    checked every ``CHECK_ZEROS_EVERY`` steps (either way the numbers are the same).

    Where qzoo's library is built, the step is one compiled pass over the buffers (``centered_rmsprop`` in
    qzoo/csrc/minatar.cpp: the same operations, torch's ``sqrt``, zeros lifted always): ~0.13 ms instead of ~0.28 ms
    for MinAtar's 132k parameters on one Zen 4 core, once :func:`same_numbers` has seen it match these steps."""

    CHECK_ZEROS_EVERY = 500

    def __init__(self, optimizer: torch.optim.RMSprop, params: list[torch.Tensor]):
        self.optimizer, self.params = optimizer, params
        self._state: tuple | None = None
        self._step = None  # the compiled step, when it gives torch's numbers (looked up with the state)
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
        self._lifted = torch.empty(len(denom), dtype=torch.uint8)
        return (*flats, denom, [d.view_as(p) for d, p in zip(denom.split(sizes), self.params, strict=True)],
                [s["step"] for s in states], zeros, ones)

    def _compiled(self):
        """The compiled step, where the library is built and gives these steps' numbers (else None)."""
        native = qzoo.native.load()
        if native is None:
            return None
        group = self.optimizer.param_groups[0]
        sizes = tuple(p.numel() for p in self.params)
        key = ("centered_rmsprop", sizes, group["alpha"], group["eps"])  # (any learning rate: one product)
        return native.centered_rmsprop if same_numbers(key, lambda: self._compare(native, sizes, group)) else None

    @staticmethod
    def _compare(native, sizes: tuple[int, ...], group: dict) -> bool:
        """One step of each on equal random state (v > m^2, so no NaN) with some exact zeros (the lifted square
        roots), compared."""
        gen, n = torch.Generator().manual_seed(0), sum(sizes)
        grad, m = torch.randn(n, generator=gen) * 1e-3, torch.randn(n, generator=gen) * 1e-4
        v = (torch.rand(n, generator=gen) + 1.0) * 1e-6
        for t in (grad, v, m):
            t[::7] = 0.0
        params = torch.randn(n, generator=gen)
        runs = []
        for compiled in (False, True):
            p, g, sq, ga, d = params.clone(), grad.clone(), v.clone(), m.clone(), torch.empty(n)
            ps, gs, ds = (list(t.split(sizes)) for t in (p, g, d))
            steps = [torch.zeros(()) for _ in sizes]
            if compiled:
                native.centered_rmsprop(ps, g, sq, ga, d, torch.empty(n, dtype=torch.uint8), steps, group["alpha"],
                                        group["eps"], group["lr"])
            else:
                CenteredRMSpropStep.torch_step(ps, gs, g, sq, ga, d, ds, steps, None, None, group)
            runs.append([p, sq, ga, *steps])
        return all(torch.equal(a, b) for a, b in zip(*runs, strict=True))

    @staticmethod
    def torch_step(params, grads, flat_grad, square_avg, grad_avg, denom, denoms, steps, zeros, ones, group) -> None:
        """The step with torch's calls (``zeros``/``ones``: scratch buffers to lift the square root's zeros, or
        None not to)."""
        alpha = group["alpha"]
        torch._foreach_add_(steps, 1)
        square_avg.mul_(alpha).addcmul_(flat_grad, flat_grad, value=1 - alpha)
        grad_avg.lerp_(flat_grad, 1 - alpha)
        torch.addcmul(square_avg, grad_avg, grad_avg, value=-1, out=denom)
        if zeros is not None:
            torch.sub(ones, torch.sign(denom, out=zeros).abs_(), out=zeros)  # 1 where denom == 0, else 0 (NaN: NaN)
            denom.add_(zeros).sqrt_().sub_(zeros)  # sqrt(0) = 0 without the slow path (see above)
        else:
            denom.sqrt_()
        denom.add_(group["eps"])
        torch._foreach_addcdiv_(params, grads, denoms, value=-group["lr"])

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
            self._step = self._compiled()
        square_avg, grad_avg, denom, denoms, steps, zeros, ones = self._state
        group = self.optimizer.param_groups[0]
        if self._step is not None:
            self._step(self.params, flat_grad, square_avg, grad_avg, denom, self._lifted, steps, group["alpha"],
                       group["eps"], group["lr"])
            torch.autograd.graph.increment_version(self.params)  # (as the in-place calls below do)
            return
        if self._steps_to_check == 0:  # are enough moments exactly 0 for the slow path to cost more than the mask?
            self._lift_zeros = int(torch.count_nonzero(square_avg)) < 0.99 * square_avg.numel()
            self._steps_to_check = self.CHECK_ZEROS_EVERY
        self._steps_to_check -= 1
        lift = (zeros, ones) if self._lift_zeros else (None, None)
        self.torch_step(self.params, grads, flat_grad, square_avg, grad_avg, denom, denoms, steps, *lift, group)


class MinAtarPhase(PhaseLog):
    """A training phase of the MinAtar Q-network (``MinAtarCNN`` torso, plain linear head: conv 3x3 -> ReLU ->
    fc -> ReLU -> linear) with :class:`CenteredRMSpropStep` on the CPU, on uniform batches, the target network
    frozen for the phase. Per update, without autograd and with the gradients written into buffers allocated once:

        q = head(relu(fc(relu(conv(s_tm1)))));  dL/dq = td_loss_grad(q[a_tm1], y) at a_tm1, 0 elsewhere;
        back through head, fc (mm, sum, threshold_backward) and conv (the weight and bias gradients only);  clip;
        centered RMSprop

    with y computed as :class:`MLPPhase` computes it (plain: for every batch of the phase at once; Double DQN: per
    update from the online net as it is then). The convolution's forward and backward are torch's calls or the
    compiled kernels that give their numbers (:meth:`conv_for`, :meth:`conv_grad_for`, chosen once per input
    shape); the rest the same kernels on the same operands as ``QAgent.update`` (tested bit for bit)."""

    def __init__(self, online: torch.nn.Module, target: torch.nn.Module, rmsprop: CenteredRMSpropStep, *,
                 max_grad_norm: float, loss: str, double: bool):
        self.online, self.target = self.layers(online), self.layers(target)
        self._target_fc: tuple | None = None  # ((version, address) of the target fc weight, its transpose)
        self.params = [p for layer in self.online for p in (layer.weight, layer.bias)]
        sizes = [p.numel() for p in self.params]
        self.flat_grad = torch.zeros(sum(sizes))
        self.grads = [g.view_as(p) for g, p in zip(self.flat_grad.split(sizes), self.params, strict=True)]
        self.rmsprop = rmsprop
        self._kernels: dict[tuple, object] = {}  # (pass, input shape) -> the convolution's kernel (conv_for, ...)
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

    def forward(self, layers: list[torch.nn.Module], obs: torch.Tensor, fc_weight_t: torch.Tensor | None = None) \
            -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Q(obs, .) and the inputs of conv, fc and head, with the kernels the modules call (ReLUs in place), the
        convolution's as :meth:`conv_for` picks them. ``fc_weight_t``: the fc weight's transpose as a contiguous
        copy (the target net's, see :meth:`target_fc_t`)."""
        conv, fc, head = layers
        x = obs.float()
        h = self.conv_for(x)(x, conv.weight, conv.bias).relu_().flatten(1)
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

    def conv_for(self, x: torch.Tensor):
        """(x, weight, bias) -> conv2d(x, weight, bias) for inputs shaped as ``x``: ``torch.conv2d``, or the
        compiled kernel (3x3 kernels with 16 outputs on MinAtar's 10-wide grids, where qzoo's library is built) in
        whichever of oneDNN's two summation orders gives the same numbers for this batch size on this machine
        (oneDNN sums one image in (channel, row, column) order and batches in (row, column, channel) order here)."""
        shape = tuple(x.shape)
        if ("forward", shape) not in self._kernels:
            self._kernels["forward", shape] = torch.conv2d
            conv, native = self.online[0], qzoo.native.load()
            if native is not None and conv.kernel_size == (3, 3) and conv.out_channels == 16 and shape[3] == 10:
                for channel_last in (True, False):
                    kernel = (lambda x, w, b, last=channel_last: native.conv3x3_forward(x, w, b, last))

                    def compare(kernel=kernel) -> bool:
                        gen = torch.Generator().manual_seed(0)
                        x_, w, b = (torch.randn(s, generator=gen) for s in (shape, conv.weight.shape, (16,)))
                        return torch.equal(torch.conv2d(x_, w, b), kernel(x_, w, b))

                    if same_numbers(("conv3x3_forward", shape, channel_last), compare):
                        self._kernels["forward", shape] = kernel
                        break
        return self._kernels["forward", shape]

    def conv_grad_for(self, x: torch.Tensor):
        """(grad_out, x) -> (grad_weight, grad_bias) of the convolution for inputs shaped as ``x``: aten's
        ``convolution_backward``, as autograd calls it, or the compiled kernel (3x3 kernels with 16 outputs, where
        qzoo's library is built) once it has given the same numbers for these shapes on this machine."""
        shape = tuple(x.shape)
        if ("backward", shape) in self._kernels:
            return self._kernels["backward", shape]
        conv = self.online[0]

        def aten(grad: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return torch.ops.aten.convolution_backward(grad, x, conv.weight, [conv.out_channels], [1, 1], [0, 0],
                                                       [1, 1], False, [0, 0], 1, [False, True, True])[1:]

        def compare() -> bool:
            gen = torch.Generator().manual_seed(0)
            x_ = torch.randn(shape, generator=gen)
            grad = torch.randn(shape[0], 16, shape[2] - 2, shape[3] - 2, generator=gen)
            return all(torch.equal(a, b) for a, b in zip(aten(grad, x_), native.conv3x3_weight_grad(grad, x_),
                                                         strict=True))

        native, kernel = qzoo.native.load(), aten
        if native is not None and conv.kernel_size == (3, 3) and conv.out_channels == 16 \
                and same_numbers(("conv3x3_weight_grad", shape), compare):
            kernel = native.conv3x3_weight_grad
        self._kernels["backward", shape] = kernel
        return kernel

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
        conv_grad = self.conv_grad_for(xs[0])
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
            grad_w, grad_b = conv_grad(grad.view(batch, conv.out_channels, x.shape[2] - kh + 1, x.shape[3] - kw + 1), x)
            g_conv_w.copy_(grad_w)
            g_conv_b.copy_(grad_b)
            if not float(torch.dot(flat_grad, flat_grad)) < skip_below:  # as MLPPhase: exactly 1 below it
                clip_grad_norm(self.grads, max_norm)
            self.rmsprop.step(self.grads, flat_grad)
