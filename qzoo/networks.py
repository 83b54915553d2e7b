"""Q-networks: a torso (features) followed by a head (one value per action).

Torsos (MLP, Nature CNN, MinAtar CNN) and heads (plain / dueling / noisy / categorical) are separate, so every torso
composes with every head instead of being copied. ``network: auto`` is resolved by
:meth:`qzoo.config.Config.resolved_network` (mlp for flat observations, nature_cnn for images, minatar for small
grids).

Design decisions (Rainbow building blocks):
- :class:`NoisyLinear` keeps its factorised noise in two small buffers (eps_in, eps_out), not a full matrix;
  the weight noise f(eps_out) f(eps_in)^T is formed in ``forward``. The buffers are non-persistent: noise is
  not learned, so it is neither saved in nor loaded from a state dict. New noise is drawn only by
  ``reset_noise()``, never implicitly: the agent draws it once per update, in both networks, and acts with
  the noise of the last update (``acting_noise: update``) or draws new noise before each action
  (``acting_noise: fresh``, from a generator of its own).
- ``eval()`` mode uses the mean weights only, which makes evaluation deterministic.
- :func:`dueling_combine` is a pure function so it serves both scalar heads (B, A) and distributional heads
  (B, A, N): the mean is always over the action axis, dim 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from qzoo import split_grads
from qzoo.config import Config
from qzoo.conv_ops import SharedCast, StemConv, same_pads
from qzoo.precision import bf16_enabled


def mlp(in_dim: int, sizes: list[int], linear=nn.Linear) -> tuple[nn.Module, int]:
    layers: list[nn.Module] = []
    for size in sizes:
        layers += [linear(in_dim, size), nn.ReLU()]
        in_dim = size
    return nn.Sequential(*layers), in_dim


class NatureCNN(nn.Module):
    """The Nature DQN torso (Mnih et al. 2015): frames (B, C, H, W), uint8 in [0, 255], are scaled by 1/255
    inside the network (so replay keeps uint8), then conv 32 8x8 stride 4, conv 64 4x4 stride 2, conv 64 3x3
    stride 1, fully connected 512, each followed by a ReLU. ``linear`` builds the fully connected layer (a
    NoisyLinear for noisy nets, as in Rainbow).

    The 1/255 scaling is applied to the first convolution's weights, conv(x / 255; w) = conv(x; w / 255), not
    to the frames: the same function (and parameters), one pass over the input fewer. ``bf16``: the torso runs
    batches under bfloat16 autocast (convolutions and the fully connected layer; its output is float32 again); a
    single observation (acting in one env) stays float32, as casting the weights costs more than it saves there."""

    image_input = True  # QNetwork hands it (B, C, H, W) observations as they are (not flattened, not cast)

    def __init__(self, obs_shape: tuple[int, int, int], features: int = 512, linear=nn.Linear, bf16: bool = False,
                 padding: str = "valid"):
        super().__init__()
        self.bf16 = bf16
        channels, height, width = obs_shape
        self.convs = nn.Sequential(
            nn.Conv2d(channels, 32, kernel_size=8, stride=4), nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, stride=1), nn.ReLU(),
            nn.Flatten())
        # padding "same": each convolution's input zero-padded as TensorFlow's / flax's 'SAME' pads it (output side
        # ceil(side / stride); the odd pixel goes after): Dopamine's JAX networks (flax's default padding)
        self.pads = same_pads((height, width), [(8, 4), (4, 2), (3, 1)]) if padding == "same" else None
        with torch.no_grad():
            first = self.convs[0]
            x = F.conv2d(self._pad_input(torch.zeros(1, channels, height, width)), first.weight, first.bias, 4)
            conv_out = self._after_first(x).shape[1]  # 3136 for 84x84 (7744 with "same" padding)
        self.fc = linear(conv_out, features)
        self.feature_dim = features
        self._kept_cast: tuple | None = None  # ((version, address) of the fc weight(s), bfloat16 cast(s)): _fc_bf16
        # set by the agent (target_thread): the pass that learns hands its weight gradients to the second thread
        self.weight_grads: split_grads.WeightGrads | None = None

    def _pad_input(self, obs: torch.Tensor) -> torch.Tensor:
        return self._pad(obs, 0)

    def _pad(self, x: torch.Tensor, layer: int) -> torch.Tensor:
        """``x`` padded for convolution ``layer`` (0, 1, 2) under 'same' padding; as it is otherwise."""
        return x if self.pads is None else F.pad(x, self.pads[layer])

    def _after_first(self, x: torch.Tensor) -> torch.Tensor:
        """The first convolution's output through the rest of the stack, flattened: ``self.convs[1:]``'s operations
        called one by one (slicing the Sequential built a new module each call: 29 us of a ~600 us acting pass;
        bit-equal)."""
        x = self.convs[2](self._pad(F.relu(x), 1))
        return F.relu(self.convs[4](self._pad(F.relu(x), 2))).flatten(1)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        first = self.convs[0]
        obs = self._pad_input(obs)
        if (self.weight_grads is not None and torch.is_grad_enabled() and first.weight.requires_grad
                and type(self.fc) is nn.Linear and len(obs) > 1  # (weight_grads: CPU only, qzoo.agent)
                and (self.bf16 or (first.stride == (4, 4) and obs.shape[-1] % 4 == 0))):
            return self._forward_split(obs)
        if not (self.bf16 and len(obs) > 1):
            weight = first.weight * (1.0 / 255.0)
            if obs.device.type == "cpu" and weight.requires_grad and first.stride == (4, 4) and obs.shape[-1] % 4 == 0:
                x = StemConv.apply(obs, weight, first.bias)
            else:
                x = F.conv2d(obs.float(), weight, first.bias, first.stride)
            return F.relu(self.fc(self._after_first(x)))
        # (Feeding the frames as bf16 in channels-last layout, bit-equal, saved ~14% of the update of the time;
        # retried with jemalloc and the changes below, it gains nothing (0.98x) and leaks nothing: BENCHMARKS.md.)
        with torch.autocast(obs.device.type, torch.bfloat16):
            # The frames go straight to bfloat16, which holds the integers 0..255 exactly: the values autocast
            # would make of float32 frames, without the float32 copy of the batch.
            x = F.conv2d(obs.to(torch.bfloat16), first.weight * (1.0 / 255.0), first.bias, first.stride)
            return F.relu(self._fc_bf16(self._after_first(x))).float()

    def _forward_split(self, obs: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` for the pass that learns (``obs`` already padded), each layer's weight gradients made on
        the second thread (qzoo/split_grads.py): the same operations on the same values (autocast's bfloat16 casts
        made here)."""
        grads, sg = self.weight_grads, split_grads
        grads.forget()  # (the jobs of a pass whose backward never finished)
        first, conv2, conv3, fc = self.convs[0], self.convs[2], self.convs[4], self.fc
        dtype = torch.bfloat16 if self.bf16 else torch.float32
        if self.bf16:
            x = sg.Conv(first, grads, dtype, scale=1.0 / 255.0)(obs.to(dtype))  # (frames are exact in bfloat16)
            w = self._kept_fc_cast()
            w = fc.weight.detach().to(dtype) if w is None else w
        else:
            x = sg.Stem(first, grads, dtype, scale=1.0 / 255.0)(obs)
            w = fc.weight.detach()
        x = sg.Conv(conv2, grads, dtype)(self._pad(F.relu(x), 1))  # (as _after_first)
        x = sg.Conv(conv3, grads, dtype)(self._pad(F.relu(x), 2))
        x = sg.Linear(fc.weight, fc.bias, w, fc.bias.detach().to(dtype), grads)(F.relu(x).flatten(1))
        return F.relu(x).float()

    def _fc_bf16(self, x: torch.Tensor) -> torch.Tensor:
        """The fully connected layer under autocast, with its weight's bfloat16 cast kept until the weight changes
        in place. Autocast casts the 1.6M weights (4.0M with 'same' padding) on every call, ~1.3 ms on one core. A
        weight changes only in place — the optimizer's step, a target sync, a soft update, ``load_state_dict`` — and
        each bumps its version counter (qzoo's fused Adam step bumps it; torch's kernel does not), so the cast is
        kept per (version, address), made by a pass without gradients: the frozen target's for a whole sync period,
        the online net's for the rest of one update (Double DQN's no-grad pass at s_t, then the pass that learns at
        s_tm1; DrQ(eps)'s target pass, which reads the online net itself: QAgent.sync_target). The same bfloat16
        values autocast makes; the pass with gradients reads it through :class:`SharedCast`, whose backward is the
        cast's own. A pass that learns from weights no other pass has read yet is autocast's, as before."""
        fc = self.fc
        if isinstance(fc, NoisyLinear) and fc.training:
            return fc.factorised(x, *self._noisy_casts(fc))
        if type(fc) is not nn.Linear:
            return fc(x)
        learns = fc.weight.requires_grad and torch.is_grad_enabled()
        cast = self._kept_fc_cast()
        if cast is None and learns:  # the first pass on these weights learns: nothing to share it with (DQN),
            return fc(x)  # autocast's own cast
        if cast is None:
            cast = fc.weight.detach().to(torch.bfloat16)
            self._kept_cast = (self._fc_key(), cast)
        return F.linear(x, SharedCast.apply(fc.weight, cast) if learns else cast, fc.bias)

    def _fc_key(self) -> tuple[int, int]:
        return self.fc.weight._version, self.fc.weight.data_ptr()

    def _kept_fc_cast(self) -> torch.Tensor | None:
        """The fc weight's kept bfloat16 cast if it was made from the weight as it is now, else None. (Read once:
        a pass on the second thread may replace it meanwhile.)"""
        kept = self._kept_cast
        return kept[1] if kept is not None and kept[0] == self._fc_key() else None

    def __getstate__(self) -> dict:
        """Copies and pickles leave the kept casts behind (a noisy layer's trainable ones are part of an autograd
        graph, which ``copy.deepcopy`` refuses; a copy's weights live elsewhere anyway, so its key would never
        match)."""
        return {**super().__getstate__(), "_kept_cast": None, "weight_grads": None}

    def _noisy_casts(self, fc: NoisyLinear) -> tuple[torch.Tensor, torch.Tensor]:
        """bfloat16 casts of a noisy fc layer's mean and sigma weights, kept while neither changes in place (the
        key is as in :meth:`_fc_bf16`): the frozen target's for a whole sync period, the online net's for the
        update's forward passes (Double DQN's no-grad pass at s_t and the pass at s_tm1 share one cast; the
        optimizer's step bumps the versions). A trainable layer's casts are made with autograd recording, so the
        pass that needs gradients gets them; a pass under ``no_grad`` reads them detached."""
        mu, sigma = fc.weight_mu, fc.weight_sigma
        key = (mu._version, mu.data_ptr(), sigma._version, sigma.data_ptr())
        if self._kept_cast is None or self._kept_cast[0] != key:
            with torch.set_grad_enabled(mu.requires_grad):
                self._kept_cast = (key, (mu.to(torch.bfloat16), sigma.to(torch.bfloat16)))
        casts = self._kept_cast[1]
        return casts if torch.is_grad_enabled() else (casts[0].detach(), casts[1].detach())


class MinAtarCNN(nn.Module):
    """The MinAtar torso (Young & Tian 2019): grids (B, C, 10, 10) of 0/1 values (uint8 in replay, cast here),
    conv 16 3x3 stride 1, fully connected 128, each followed by a ReLU. ``linear`` builds the fully connected
    layer (a NoisyLinear for noisy nets)."""

    image_input = True

    def __init__(self, obs_shape: tuple[int, int, int], features: int = 128, linear=nn.Linear):
        super().__init__()
        channels, height, width = obs_shape
        self.convs = nn.Sequential(nn.Conv2d(channels, 16, kernel_size=3, stride=1), nn.ReLU(), nn.Flatten())
        self.fc = linear(16 * (height - 2) * (width - 2), features)  # 1024 inputs for 10x10
        self.feature_dim = features

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fc(self.convs(obs.float())))


class QNetwork(nn.Module):
    """Q(s, ·) from a torso (features) and a head, whose variants compose:

    - plain:          Q = W f(s)                                    (one output per action)
    - dueling:        Q = V(f) + A(f) - mean_a A(f)                 (Wang et al. 2016)
    - noisy:          every linear layer of the head and torso (the MLP, the CNN's fc 512) is a NoisyLinear
    - categorical:    the head gives logits over the atoms of ``support`` for each action, and
                      Q(s, a) = sum_i z_i softmax(logits(s, a))_i   (C51, Bellemare et al. 2017)

    ``forward`` always returns Q (batch, n_actions); ``logits`` returns (batch, n_actions, n_atoms) (n_atoms = 1
    without a support).
    """

    def __init__(self, torso: nn.Module, feature_dim: int, n_actions: int, *, dueling: bool = False,
                 linear=nn.Linear, support: torch.Tensor | None = None):
        super().__init__()
        self.torso = torso
        self.n_actions = n_actions
        self.n_atoms = 1 if support is None else len(support)
        self.advantage = linear(feature_dim, n_actions * self.n_atoms)
        self.value = linear(feature_dim, self.n_atoms) if dueling else None
        self.register_buffer("support", support)
        self.flat_input = not getattr(torso, "image_input", False)

    def logits(self, obs: torch.Tensor) -> torch.Tensor:
        if self.flat_input:  # an image torso casts and scales its own (uint8) input
            if obs.dtype != torch.float32:
                obs = obs.float()
            obs = obs.flatten(1) if obs.dim() > 2 else obs
        features = self.torso(obs)
        out = self.advantage(features).view(-1, self.n_actions, self.n_atoms)
        if self.value is not None:
            out = dueling_combine(self.value(features).view(-1, 1, self.n_atoms), out)
        return out

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        logits = self.logits(obs)
        if self.support is None:
            return logits.squeeze(-1)
        return (logits.softmax(dim=-1) * self.support).sum(dim=-1)

    def reset_noise(self, generator: torch.Generator | None = None) -> None:
        """New noise in every noisy layer, from ``generator`` (torch's global one when None)."""
        for module in self.modules():
            if isinstance(module, NoisyLinear):
                module.reset_noise(generator)


def build_q_network(config: Config, observation_space: gym.spaces.Space, n_actions: int) -> QNetwork:
    linear = (lambda i, o: NoisyLinear(i, o, config.noisy_sigma)) if config.noisy else nn.Linear
    support = None
    if config.distributional == "c51":
        support = torch.linspace(config.v_min, config.v_max, config.n_atoms)
    network = config.resolved_network(observation_space.shape)
    if network == "mlp":
        in_dim = int(torch.tensor(observation_space.shape).prod())
        torso, feature_dim = mlp(in_dim, list(config.net_arch), linear)
    elif network in ("nature_cnn", "minatar"):
        shape = tuple(observation_space.shape)
        torso = (NatureCNN(shape, linear=linear, bf16=bf16_enabled(config.bf16), padding=config.conv_padding)
                 if network == "nature_cnn" else MinAtarCNN(shape, linear=linear))
        feature_dim = torso.feature_dim
    else:
        raise ValueError(f"unknown network {network!r}")
    q_net = QNetwork(torso, feature_dim, n_actions, dueling=config.dueling, linear=linear, support=support)
    if config.weight_init == "xavier_uniform":  # Dopamine's JAX networks: Glorot-uniform kernels, zero biases
        for module in q_net.modules():
            if type(module) in (nn.Conv2d, nn.Linear):  # (noisy layers keep their own initialisation)
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
    return q_net


def plain_mlp_layers(q_net: QNetwork) -> tuple[list[nn.Linear], nn.Linear, nn.Linear | None] | None:
    """(torso linears, advantage head, value head or None) when ``q_net`` is a plain or dueling MLP on the CPU:
    Linear/ReLU pairs and linear heads, flat input, no noisy layers, no C51 support. None otherwise."""
    layers = list(q_net.torso) if isinstance(q_net.torso, nn.Sequential) else []
    linears = [m for m in layers if isinstance(m, nn.Linear)]
    heads = [q_net.advantage] + ([q_net.value] if q_net.value is not None else [])
    plain = [type(m) for m in layers] == [nn.Linear, nn.ReLU] * len(linears) and all(type(h) is nn.Linear
                                                                                     for h in heads)
    if not (plain and q_net.flat_input and q_net.support is None and linears) or q_net.advantage.weight.is_cuda:
        return None
    return linears, q_net.advantage, q_net.value


def numpy_forward(q_net: QNetwork) -> Callable[[np.ndarray], np.ndarray] | None:
    """Q(s, .) of a plain or dueling MLP on the CPU, computed in numpy: the same function as ``q_net.forward``
    for acting, without torch's per-call overhead (4x faster for one observation). It reads numpy *views* of
    the parameters, so it follows every in-place update (optimizer steps, ``load_state_dict``). None for other
    networks (CNN torsos, noisy layers, C51 heads, parameters off the CPU): they act through torch."""
    found = plain_mlp_layers(q_net)
    if found is None:
        return None
    linears, advantage_layer, value_layer = found
    view = lambda layer: (layer.weight.detach().numpy().T, layer.bias.detach().numpy())  # noqa: E731
    torso, advantage = [view(m) for m in linears], view(advantage_layer)
    value = view(value_layer) if value_layer is not None else None

    def forward(obs: np.ndarray) -> np.ndarray:
        x = np.asarray(obs, np.float32).reshape(len(obs), -1)
        for weight, bias in torso:
            x = np.maximum(x @ weight + bias, 0.0)
        q = x @ advantage[0] + advantage[1]
        if value is not None:  # dueling: V + A - mean_a A
            q = (x @ value[0] + value[1]) + q - q.mean(axis=1, keepdims=True)
        return q

    return forward


class MLPBackprop:
    """Q(s, .) of a plain or dueling MLP (Linear/ReLU torso, linear heads) and the backward pass written out by
    hand: the same products autograd computes (tested equal to ``loss.backward()``), without building a graph. For
    the small networks of classic control an update is a few 64x256 products, and autograd's per-node bookkeeping
    costs about a third as much again; this is the update path of MLP DQNs on the CPU. ``of`` returns None for
    any other network (noisy, C51, CNN torsos, CUDA), which trains through autograd.

        forward   h_0 = x,  h_i = relu(h_(i-1) W_i^T + b_i),  q = h_(L-1) W_L^T + b_L
        backward  g_L = dL/dq;  dW_i = g_i^T h_(i-1),  db_i = sum_batch g_i,  g_(i-1) = (g_i W_i) * [h_(i-1) > 0]

    With a dueling head (value layer V, advantage layer W_L, A actions) q = (v + a) - mean_a a, and the head's
    backward is autograd's: g_v = sum_a g_q, g_a = g_q - g_v / A (the mean's share; negation and the division by A
    are exact, so this is autograd's (-g_q summed) / A added to g_q), and g_(L-1) = (g_a W_L + g_v V) * [h > 0].
    """

    def __init__(self, layers: list[nn.Linear], value: nn.Linear | None = None):
        self.layers, self.value = layers, value
        heads = layers + ([value] if value is not None else [])  # the parameters in the network's order
        self.params = [p for layer in heads for p in (layer.weight, layer.bias)]

    @classmethod
    def of(cls, q_net: QNetwork) -> MLPBackprop | None:
        found = plain_mlp_layers(q_net)
        if found is None:
            return None
        return cls([*found[0], found[1]], found[2])

    @staticmethod
    def combine(value: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
        """:func:`dueling_combine` on (B, 1) and (B, A)."""
        return value + advantages - advantages.mean(dim=1, keepdim=True)

    @staticmethod
    def head_grads(grad_q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(dL/dA, dL/dV) of the dueling aggregation, from dL/dQ (B, A)."""
        grad_v = grad_q.sum(1, keepdim=True)
        return grad_q - grad_v / grad_q.shape[1], grad_v

    @torch.no_grad()
    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Q (B, A) and the layer inputs the backward pass needs."""
        x = obs.float() if obs.dtype != torch.float32 else obs
        inputs = [x.flatten(1) if x.dim() > 2 else x]
        for layer in self.layers[:-1]:
            inputs.append(torch.addmm(layer.bias, inputs[-1], layer.weight.t()).relu_())
        last = self.layers[-1]
        q = torch.addmm(last.bias, inputs[-1], last.weight.t())
        if self.value is not None:
            q = self.combine(torch.addmm(self.value.bias, inputs[-1], self.value.weight.t()), q)
        return q, inputs

    @torch.no_grad()
    def backward(self, grad_q: torch.Tensor, inputs: list[torch.Tensor]) -> None:
        """Set ``.grad`` of every weight and bias from dL/dQ (B, A)."""
        grad, grad_v = grad_q, None
        if self.value is not None:
            grad, grad_v = self.head_grads(grad_q)
            self.value.weight.grad = grad_v.t().mm(inputs[-1])
            self.value.bias.grad = grad_v.sum(0)
        for i in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[i]
            layer.weight.grad = grad.t().mm(inputs[i])
            layer.bias.grad = grad.sum(0)
            if i > 0:  # through the ReLU: its output inputs[i] is > 0 exactly where it passed its input on
                grad_h = grad.mm(layer.weight)
                if grad_v is not None and i == len(self.layers) - 1:
                    grad_h = grad_h + grad_v.mm(self.value.weight)
                grad = torch.ops.aten.threshold_backward(grad_h, inputs[i], 0)


def scale_noise(x: torch.Tensor) -> torch.Tensor:
    """f(x) = sgn(x) sqrt(|x|), applied to the factorised noise of :class:`NoisyLinear`."""
    return x.sign() * x.abs().sqrt()


class NoisyLinear(nn.Module):
    """Linear layer with factorised Gaussian noise (Fortunato et al. 2018, NoisyNet).

    training:  y = (mu_w + sigma_w * eps_w) x + mu_b + sigma_b * eps_b,
               eps_w = f(eps_out) f(eps_in)^T,  eps_b = f(eps_out),  eps_in ~ N(0, I_p), eps_out ~ N(0, I_q)
    eval:      y = mu_w x + mu_b
    Initialisation, p = in_features:  mu ~ U(-1/sqrt(p), 1/sqrt(p)),  sigma = sigma0 / sqrt(p).
    """

    def __init__(self, in_features: int, out_features: int, sigma0: float = 0.5):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.sigma0 = sigma0
        self.weight_mu = nn.Parameter(torch.empty(out_features, in_features))
        self.weight_sigma = nn.Parameter(torch.empty(out_features, in_features))
        self.bias_mu = nn.Parameter(torch.empty(out_features))
        self.bias_sigma = nn.Parameter(torch.empty(out_features))
        self.register_buffer("eps_in", torch.zeros(in_features), persistent=False)
        self.register_buffer("eps_out", torch.zeros(out_features), persistent=False)
        self.reset_parameters()
        self.reset_noise()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.in_features)
        with torch.no_grad():
            self.weight_mu.uniform_(-bound, bound)
            self.bias_mu.uniform_(-bound, bound)
            self.weight_sigma.fill_(self.sigma0 * bound)
            self.bias_sigma.fill_(self.sigma0 * bound)

    @torch.no_grad()
    def reset_noise(self, generator: torch.Generator | None = None) -> None:
        """Draw new eps_in, eps_out (already passed through f); ``forward`` uses them until the next call."""
        device = self.eps_in.device
        self.eps_in.copy_(scale_noise(torch.randn(self.in_features, device=device, generator=generator)))
        self.eps_out.copy_(scale_noise(torch.randn(self.out_features, device=device, generator=generator)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return F.linear(x, self.weight_mu, self.bias_mu)
        return self.factorised(x, self.weight_mu, self.weight_sigma)

    def factorised(self, x: torch.Tensor, weight_mu: torch.Tensor, weight_sigma: torch.Tensor) -> torch.Tensor:
        """The training-mode output without forming the noisy weight matrix:
        (mu_w + sigma_w * (eps_out eps_in^T)) x = mu_w x + eps_out * (sigma_w (eps_in * x)). Forming it costs three
        passes over a (out, in) matrix per call (outer product, product, sum; 1.6M entries for the Nature CNN's fc)
        and a fourth in the backward pass; this costs one more matrix product. ``weight_mu``/``weight_sigma``: the
        layer's own, or casts of them (NatureCNN's bfloat16 path keeps the frozen target's)."""
        bias = self.bias_mu + self.bias_sigma * self.eps_out
        eps_in = self.eps_in.to(x.dtype) if x.dtype == torch.bfloat16 else self.eps_in
        return F.linear(x, weight_mu, bias) + F.linear(x * eps_in, weight_sigma) * self.eps_out

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, sigma0={self.sigma0}"


def dueling_combine(value: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """Dueling aggregation (Wang et al. 2016):  Q(s, a) = V(s) + A(s, a) - mean_a' A(s, a').

    value (B, 1) and advantages (B, A) give Q (B, A); for a distributional head value (B, 1, N) and
    advantages (B, A, N) give (B, A, N) logits. The mean is over the action axis (dim 1).
    """
    return value + advantages - advantages.mean(dim=1, keepdim=True)
