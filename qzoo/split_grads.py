"""The Nature CNN's weight gradients on a second thread, while the backward pass goes on down the layers.

The backward pass of a layer y = f(x; W) makes two products from dL/dy: dL/dx, which the layer below waits for, and
dL/dW, which nothing waits for until the optimizer's step. Autograd makes both, one after the other, on one thread.
Here the pass that learns runs each layer (the three convolutions and the fully connected one) through
:class:`SplitLayer`, whose backward makes dL/dx on the calling thread and hands dL/dW (and dL/db) to a second
thread (the ``target_thread``'s, which by then has finished the target's forward pass); the first layer's, made
last, are split by output channel between the two threads where that gives the same numbers
(:meth:`WeightGrads.add_first`); :meth:`WeightGrads.collect` waits for them all and puts them in the parameters'
``.grad`` before the gradient is clipped and stepped.

The same numbers as autograd, bit for bit (tested): each product is the call autograd's own backward makes —
``aten::convolution_backward`` asked for the input gradient or for the weight and bias gradients (oneDNN computes
them in separate primitives either way), ``grad.mm(W)`` and ``grad.t().mm(x)`` for the fully connected layer
(``addmm``'s backward for these layouts), the bias gradient summed over the batch — on the same tensors; then what
the graph does after it: autocast's bfloat16 casts are undone (``ToCopyBackward0``: ``.float()``), the first
layer's 1/255 scaling multiplied in (``MulBackward0``), and the float32 first layer's weight gradient taken as
:class:`qzoo.conv_ops.StemConv` takes it.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future

import torch
import torch.nn.functional as F

from qzoo.conv_ops import stem_input, stem_weight_grad

# (layer kind, shapes, dtypes) -> do the gradients of half the output channels sum as the whole's do here?
HALVES_AGREE: dict[tuple, bool] = {}


class WeightGrads:
    """The weight-gradient jobs of one backward pass: handed to ``submit`` (a function that runs a job on the second
    thread and returns a Future), collected into the parameters' ``.grad`` by :meth:`collect`."""

    def __init__(self, submit: Callable[..., Future]):
        self.submit = submit
        self._jobs: list[tuple[tuple[torch.nn.Parameter, ...], Future]] = []

    def add(self, params: tuple[torch.nn.Parameter, ...], job: Callable[[], tuple[torch.Tensor, ...]]) -> None:
        """``job`` on the second thread."""
        self._jobs.append((params, self.submit(job)))

    def collect(self) -> None:
        """Wait for every job of the pass and set the gradients (the parameters' ``.grad`` are None: the update
        cleared them, and autograd accumulates none of these parameters)."""
        jobs, self._jobs = self._jobs, []
        for params, future in jobs:
            for param, grad in zip(params, future.result(), strict=True):
                param.grad = grad

    def add_first(self, layer: Conv, grad: torch.Tensor, x: torch.Tensor) -> None:
        """The first layer's weight gradients, the last job of the backward pass: half the output channels on the
        second thread and half on this one, when the halves give the whole's numbers on this machine (each output
        channel's gradient is its own sum; whether the kernels for half the channels sum it in the same order is
        checked once per shape, on the pass at hand, and the whole is used until then or if not); else all here."""
        n = layer.w.shape[0]
        key = (type(layer), tuple(grad.shape), tuple(x.shape), x.dtype, grad.dtype)
        if HALVES_AGREE.get(key):
            x = layer.weight_grad_input(x)  # (made once for both halves)
            upper = self.submit(lambda: layer.weight_grads(grad, x, slice(n // 2, n), prepared=True))
            lower = layer.weight_grads(grad, x, slice(0, n // 2), prepared=True)
            grads = tuple(torch.cat(parts) for parts in zip(lower, upper.result(), strict=True))
        else:
            grads = layer.weight_grads(grad, x)
            if key not in HALVES_AGREE:
                halves = zip(*(layer.weight_grads(grad, x, part) for part in (slice(0, n // 2), slice(n // 2, n))),
                             strict=True)
                HALVES_AGREE[key] = all(torch.equal(whole, torch.cat(parts))
                                        for whole, parts in zip(grads, halves, strict=True))
        future = Future()
        future.set_result(layer.to_params(*grads))
        self._jobs.append((layer.params, future))

    def forget(self) -> None:
        """Drop the jobs of a pass whose backward will not be collected (wait for them first: they read its
        tensors)."""
        jobs, self._jobs = self._jobs, []
        for _, future in jobs:
            future.exception()


class Layer:
    """One layer of the pass that learns: its weights as the forward pass uses them (bfloat16 casts under bf16) and
    the three products of its backward pass."""

    def __init__(self, weight: torch.nn.Parameter, bias: torch.nn.Parameter, w: torch.Tensor, b: torch.Tensor,
                 grads: WeightGrads):
        self.params, self.w, self.b, self.grads = (weight, bias), w, b, grads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def input_grad(self, grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def weight_grads(self, grad: torch.Tensor, x: torch.Tensor, channels: slice | None = None,
                     prepared: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """The weight and bias gradients, of the output ``channels`` only when given (``prepared``: ``x`` is
        :meth:`weight_grad_input`'s)."""
        raise NotImplementedError

    def weight_grad_input(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` as :meth:`weight_grads` reads it with ``prepared`` (made once for two calls)."""
        return x

    def to_params(self, grad_w: torch.Tensor, grad_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The gradients of the parameters from those of the weights the pass used: autocast's casts undone."""
        dtype = self.params[0].dtype
        return grad_w.to(dtype), grad_b.to(dtype)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return SplitLayer.apply(x, self.params[0], self)


class Conv(Layer):
    def __init__(self, conv: torch.nn.Conv2d, grads: WeightGrads, dtype: torch.dtype, scale: float | None = None):
        w = conv.weight.detach() if scale is None else conv.weight.detach() * scale
        super().__init__(conv.weight, conv.bias, w.to(dtype), conv.bias.detach().to(dtype), grads)
        self.stride, self.scale = list(conv.stride), scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.w, self.b, self.stride)

    def _backward(self, grad: torch.Tensor, x: torch.Tensor, mask: list[bool], w: torch.Tensor):
        return torch.ops.aten.convolution_backward(grad, x, w, [w.shape[0]], self.stride, [0, 0], [1, 1], False,
                                                   [0, 0], 1, mask)

    def input_grad(self, grad, x):
        return self._backward(grad, x, [True, False, False], self.w)[0]

    def weight_grads(self, grad, x, channels: slice | None = None, prepared: bool = False):
        if channels is None:
            return self._backward(grad, x, [False, True, True], self.w)[1:]
        return self._backward(grad[:, channels].contiguous(), x, [False, True, True], self.w[channels])[1:]

    def to_params(self, grad_w, grad_b):
        grad_w, grad_b = super().to_params(grad_w, grad_b)
        return (grad_w if self.scale is None else grad_w * self.scale), grad_b


class Stem(Conv):
    """The float32 first convolution: its weight gradient by space-to-depth, as :class:`qzoo.conv_ops.StemConv`."""

    def forward(self, x):
        return F.conv2d(x.float(), self.w, self.b, self.stride)

    def weight_grad_input(self, x):
        return stem_input(x)

    def weight_grads(self, grad, x, channels: slice | None = None, prepared: bool = False):
        frames, x = (None, x) if prepared else (x, None)
        if channels is None:
            return stem_weight_grad(grad, frames, self.w.shape, x)
        return stem_weight_grad(grad[:, channels], frames, self.w[channels].shape, x)


class Linear(Layer):
    def forward(self, x):
        return F.linear(x, self.w, self.b)

    def input_grad(self, grad, x):
        return grad.mm(self.w)

    def weight_grads(self, grad, x, channels=None, prepared=False):  # (only the first layer's are split)
        return grad.t().mm(x), grad.sum(0)


class SplitLayer(torch.autograd.Function):
    """``layer``'s forward pass; its backward makes the input gradient here and hands the weight gradients to the
    second thread. ``anchor`` (the layer's weight) only puts the node in the graph when ``x`` needs no gradient (the
    first layer); it gets none from here (WeightGrads.collect sets it)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, anchor: torch.Tensor, layer: Layer) -> torch.Tensor:
        ctx.layer = layer
        ctx.save_for_backward(x)
        return layer.forward(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        layer = ctx.layer
        if not ctx.needs_input_grad[0]:  # the first layer (the frames need no gradient): the last job
            layer.grads.add_first(layer, grad, x)
            return None, None, None
        layer.grads.add(layer.params, lambda: layer.to_params(*layer.weight_grads(grad, x)))
        return layer.input_grad(grad, x), None, None
