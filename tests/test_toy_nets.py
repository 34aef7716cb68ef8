"""The toy MLPs: Fourier features and the generator's linear-denoiser skip."""
import math

import torch

from src.ddgan.diffusion import VPSchedule
from src.ddgan.nets.toy import FourierFeatures, ToyGenerator, linear_denoiser_coefficients


def test_fourier_features_use_octaves_of_the_base_frequency():
    features = FourierFeatures(3, base_frequency=0.3)
    x = torch.tensor([[0.5, -1.0]])
    out = features(x)
    assert out.shape == (1, features.output_dim(2)) == (1, 14)
    angles = torch.tensor([2 * math.pi * 0.3 * 2**j * v for v in (0.5, -1.0) for j in range(3)])
    torch.testing.assert_close(out[0], torch.cat([x[0], angles.sin(), angles.cos()]))


def test_skip_starts_at_the_least_squares_linear_denoiser():
    """c_t minimises E(x_0 - c x_{t+1})² for x_0 of std data_std (Monte Carlo: 0.02 is ~4 standard errors)."""
    schedule, data_std = VPSchedule(num_timesteps=4), 2.0
    coefficients = linear_denoiser_coefficients(schedule, data_std)
    generator = torch.Generator().manual_seed(0)
    x_0 = data_std * torch.randn(200_000, 1, generator=generator)
    for t in range(4):
        level = torch.full((x_0.shape[0],), t + 1)
        x_tp1 = schedule.q_sample(x_0, level, noise=torch.randn(x_0.shape, generator=generator))
        least_squares = float((x_0 * x_tp1).sum() / (x_tp1 * x_tp1).sum())
        assert abs(least_squares - float(coefficients[t])) < 0.02, (t, least_squares, coefficients)
    net = ToyGenerator(num_timesteps=4, hidden_dim=8, schedule=schedule, data_std=data_std)
    torch.testing.assert_close(net.skip.detach(), coefficients)
    assert net.skip.requires_grad
