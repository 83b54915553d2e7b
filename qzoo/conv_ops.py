"""Pieces of the Nature CNN's CPU path: TensorFlow's 'SAME' padding rule, space-to-depth, the first convolution's
float32 weight gradient by space-to-depth (:class:`StemConv`), and a kept bfloat16 cast with autocast's backward
(:class:`SharedCast`). Used by :class:`qzoo.networks.NatureCNN`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def same_pads(size: tuple[int, int], layers: list[tuple[int, int]]) -> list[tuple[int, int, int, int]]:
    """F.pad's (left, right, top, bottom) for each (kernel, stride) convolution in turn under TensorFlow's 'SAME'
    rule: output side ceil(n / stride), total padding max((out - 1) * stride + kernel - n, 0), the larger half
    after. 84x84 through 8/4, 4/2, 3/1: (2, 2), (1, 2), (1, 1); sides 21, 11, 11."""
    pads, (h, w) = [], size
    for kernel, stride in layers:
        sides = []
        for n in (w, h):
            out = -(-n // stride)
            total = max((out - 1) * stride + kernel - n, 0)
            sides.append((total // 2, total - total // 2, out))
        (left, right, w), (top, bottom, h) = sides
        pads.append((left, right, top, bottom))
    return pads


def space_to_depth(x: torch.Tensor, block: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C * block^2, H / block, W / block), channel c * block^2 + dy * block + dx holding
    x[:, c, block * i + dy, block * j + dx] (``F.pixel_unshuffle``'s order, which is ~5x slower on the CPU)."""
    b, c, h, w = x.shape
    return x.view(b, c, h // block, block, w // block, block).permute(0, 1, 3, 5, 2, 4).reshape(
        b, c * block * block, h // block, w // block)


class SharedCast(torch.autograd.Function):
    """``weight`` as the bfloat16 tensor ``cast`` that holds its values (its kept cast), with the backward of the
    cast itself: the gradient converted to ``weight``'s float32, as autocast's
    cast (``ToCopyBackward0``) gives it, bit for bit."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, cast: torch.Tensor) -> torch.Tensor:
        ctx.dtype = weight.dtype
        return cast.view_as(cast)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad.to(ctx.dtype), None


class StemConv(torch.autograd.Function):
    """The Nature CNN's first convolution (8x8, stride 4, on 4 frames) in float32 on the CPU, with its weight
    gradient computed as the equal convolution of the space-to-depth input: a 2x2, stride-1 convolution over
    4 * 16 = 64 channels, whose weight is the 8x8 one rearranged (tap (4a + dy, 4b + dx) of channel c is tap (a, b)
    of channel 16c + 4dy + dx). oneDNN's float32 weight gradient for 4 input channels at stride 4 is slow (~16 ms
    for a batch of 32 on one core) and for 64 channels at stride 1 is not (~6 ms, the same products summed in
    another order). The forward pass is the plain convolution; no gradient for the frames."""

    @staticmethod
    def forward(ctx, obs: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(obs)
        ctx.weight_shape = weight.shape
        return F.conv2d(obs.float(), weight, bias, 4)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (obs,) = ctx.saved_tensors
        return None, *stem_weight_grad(grad_out, obs, ctx.weight_shape)


def stem_input(obs: torch.Tensor) -> torch.Tensor:
    """The frames as :func:`stem_weight_grad` convolves them: space-to-depth, float32."""
    return space_to_depth(obs, 4).float()


def stem_weight_grad(grad_out: torch.Tensor, obs: torch.Tensor, weight_shape,
                     x: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """:class:`StemConv`'s weight and bias gradients from the output gradient and the frames (``x``: their
    :func:`stem_input`, when already made)."""
    out_ch, in_ch, k, _ = weight_shape
    x = stem_input(obs) if x is None else x
    kernel = k // 4
    shape_only = x.new_empty(out_ch, in_ch * 16, kernel, kernel)  # (the weight's shape; no input gradient)
    grad_weight, grad_bias = torch.ops.aten.convolution_backward(
        grad_out.contiguous(), x, shape_only, [grad_out.shape[1]], [1, 1], [0, 0], [1, 1], False, [0, 0], 1,
        [False, True, True])[1:]
    # (out, 16 in_ch, a, b) -> (out, in_ch, dy, dx, a, b) -> (out, in_ch, a, dy, b, dx) = (out, in_ch, 8, 8)
    grad_weight = grad_weight.view(out_ch, in_ch, 4, 4, kernel, kernel).permute(0, 1, 4, 2, 5, 3).reshape(
        out_ch, in_ch, k, k)
    return grad_weight, grad_bias
