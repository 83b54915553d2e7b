"""NoisyLinear (factorised Gaussian noise) and the dueling aggregation."""

import math

import torch
import torch.nn.functional as F

from qzoo.networks import NoisyLinear, dueling_combine, scale_noise


def test_scale_noise_is_signed_square_root():
    # sgn(x) sqrt|x|: 4 -> 2, -9 -> -3, 0 -> 0, 0.25 -> 0.5
    torch.testing.assert_close(scale_noise(torch.tensor([4.0, -9.0, 0.0, 0.25])), torch.tensor([2.0, -3.0, 0.0, 0.5]))


def test_initialisation():
    torch.manual_seed(0)
    layer = NoisyLinear(16, 8, sigma0=0.5)
    # p = 16: mu in U(-1/4, 1/4), sigma = 0.5 / 4 = 0.125
    assert layer.weight_mu.abs().max() <= 0.25 and layer.bias_mu.abs().max() <= 0.25
    assert layer.weight_mu.abs().max() > 0.2  # spread over the range, not all zero
    assert torch.all(layer.weight_sigma == 0.125) and torch.all(layer.bias_sigma == 0.125)
    assert set(layer.state_dict()) == {"weight_mu", "weight_sigma", "bias_mu", "bias_sigma"}  # noise not saved


def test_noise_is_fixed_until_reset_noise():
    torch.manual_seed(0)
    layer = NoisyLinear(4, 3).train()
    x = torch.randn(5, 4)
    y1, y2 = layer(x), layer(x)
    torch.testing.assert_close(y1, y2)  # same noise for every forward pass
    assert not torch.allclose(y1, F.linear(x, layer.weight_mu, layer.bias_mu))  # and it is there
    layer.reset_noise()
    y3 = layer(x)
    assert not torch.allclose(y1, y3)
    torch.testing.assert_close(y3, layer(x))


def test_eval_mode_is_deterministic_and_uses_the_mean_weights():
    torch.manual_seed(0)
    layer = NoisyLinear(4, 3).eval()
    x = torch.randn(5, 4)
    y = layer(x)
    torch.testing.assert_close(y, F.linear(x, layer.weight_mu, layer.bias_mu))
    layer.reset_noise()
    torch.testing.assert_close(layer(x), y)


def test_noise_is_factorised():
    torch.manual_seed(0)
    layer = NoisyLinear(5, 3).train()
    with torch.no_grad():  # mu = 0, sigma = 1: the layer outputs its noise alone
        layer.weight_mu.zero_(), layer.bias_mu.zero_(), layer.weight_sigma.fill_(1.0), layer.bias_sigma.fill_(1.0)
    bias_noise = layer(torch.zeros(1, 5))[0]  # = eps_b = f(eps_out)
    weight_noise = (layer(torch.eye(5)) - bias_noise).T  # row i = eps_w[i, :] = f(eps_out)_i f(eps_in)
    assert torch.linalg.matrix_rank(weight_noise) == 1
    # dividing row i by eps_b[i] leaves the same f(eps_in) in every row: bias and weight share f(eps_out)
    f_in = weight_noise / bias_noise[:, None]
    torch.testing.assert_close(f_in, f_in[:1].expand(3, 5))


def test_noise_passes_through_f():
    # mu = 0, sigma = 1. For e ~ N(0, 1): E[f(e)^2] = E|e| = sqrt(2/pi) = 0.7979, whereas unscaled noise would give
    # E[e^2] = 1. 20000 draws each: std of the mean ~ 0.6 / 141 = 0.004
    def noise_only(layer):
        with torch.no_grad():
            layer.weight_mu.zero_(), layer.bias_mu.zero_(), layer.weight_sigma.fill_(1.0), layer.bias_sigma.fill_(1.0)
        layer.reset_noise(torch.Generator().manual_seed(0))
        return layer.train()

    wide_out = noise_only(NoisyLinear(1, 20_000))
    f_out = wide_out(torch.zeros(1, 1))[0]  # bias noise = f(eps_out), 20000 values
    assert abs(f_out.pow(2).mean().item() - math.sqrt(2 / math.pi)) < 0.03

    wide_in = noise_only(NoisyLinear(20_000, 1))
    x = torch.zeros(1, 20_000, requires_grad=True)
    bias_noise = wide_in(x)[0, 0]  # f(eps_out), one value
    bias_noise.backward()  # d out / d x = the (noisy) weight row f(eps_out) f(eps_in)
    f_in = x.grad[0] / bias_noise.detach()
    assert abs(f_in.pow(2).mean().item() - math.sqrt(2 / math.pi)) < 0.03


def test_reset_noise_with_a_seeded_generator_is_reproducible():
    a, b = NoisyLinear(3, 2), NoisyLinear(3, 2)
    b.load_state_dict(a.state_dict())
    a.reset_noise(torch.Generator().manual_seed(5))
    b.reset_noise(torch.Generator().manual_seed(5))
    x = torch.randn(4, 3)
    torch.testing.assert_close(a(x), b(x))


def test_gradients_reach_mean_and_sigma():
    torch.manual_seed(0)
    layer = NoisyLinear(3, 2).train()
    layer(torch.randn(4, 3)).sum().backward()
    assert layer.weight_mu.grad.abs().sum() > 0 and layer.weight_sigma.grad.abs().sum() > 0
    assert layer.bias_sigma.grad.abs().sum() > 0


def test_dueling_combine_hand_computed():
    value = torch.tensor([[1.0], [2.0]])
    advantages = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 6.0]])
    # mean A = 2 and 2: row 0: 1 + [1, 2, 3] - 2 = [0, 1, 2]; row 1: 2 + [0, 0, 6] - 2 = [0, 0, 6]
    q = dueling_combine(value, advantages)
    torch.testing.assert_close(q, torch.tensor([[0.0, 1.0, 2.0], [0.0, 0.0, 6.0]]))
    torch.testing.assert_close(q.mean(dim=1, keepdim=True), value)  # mean over actions recovers V


def test_dueling_combine_distributional_shapes():
    value = torch.tensor([[[1.0, 10.0]]])  # (B=1, 1, N=2)
    advantages = torch.tensor([[[1.0, 0.0], [3.0, 4.0]]])  # (B=1, A=2, N=2): mean over actions = [2, 2]
    # action 0: [1 + 1 - 2, 10 + 0 - 2] = [0, 8]; action 1: [1 + 3 - 2, 10 + 4 - 2] = [2, 12]
    torch.testing.assert_close(dueling_combine(value, advantages), torch.tensor([[[0.0, 8.0], [2.0, 12.0]]]))


def test_factorised_forward_and_gradients_equal_the_formed_noisy_weight():
    """The layer never forms mu_w + sigma_w * (eps_out eps_in^T); what it computes instead is the same function:
    outputs and the gradients of all four parameters equal those of the formed matrix (to float rounding)."""
    torch.manual_seed(0)
    layer = NoisyLinear(7, 5, sigma0=0.5).train()
    x = torch.randn(4, 7)
    weights = torch.randn(4, 5)
    (layer(x) * weights).sum().backward()
    factorised = [p.grad.clone() for p in layer.parameters()]
    layer.zero_grad()
    formed = layer.weight_mu + layer.weight_sigma * torch.outer(layer.eps_out, layer.eps_in)
    y = F.linear(x, formed, layer.bias_mu + layer.bias_sigma * layer.eps_out)
    torch.testing.assert_close(layer(x), y)
    (y * weights).sum().backward()
    for a, (name, p) in zip(factorised, layer.named_parameters(), strict=True):
        torch.testing.assert_close(a, p.grad, msg=name)
