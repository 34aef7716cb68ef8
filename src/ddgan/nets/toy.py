"""MLP generator and discriminator for 2-D toy data (the paper's 25-Gaussians experiment)."""
import math

import torch
from torch import Tensor, nn


class FourierFeatures(nn.Module):
    """x ↦ [x, sin(2^j π x), cos(2^j π x)] for j = 0..num_frequencies-1 (per coordinate)."""

    def __init__(self, num_frequencies: int):
        super().__init__()
        self.register_buffer("frequencies", math.pi * 2.0 ** torch.arange(num_frequencies), persistent=False)

    def output_dim(self, input_dim: int) -> int:
        return input_dim * (1 + 2 * len(self.frequencies))

    def forward(self, x: Tensor) -> Tensor:
        angles = (x.unsqueeze(-1) * self.frequencies).flatten(1)
        return torch.cat([x, angles.sin(), angles.cos()], dim=1)


def mlp(input_dim: int, hidden_dim: int, num_hidden_layers: int, output_dim: int, activation: type[nn.Module]) -> nn.Sequential:
    """num_hidden_layers Linear+activation layers of width hidden_dim, then a linear output."""
    layers, width = [], input_dim
    for _ in range(num_hidden_layers):
        layers += [nn.Linear(width, hidden_dim), activation()]
        width = hidden_dim
    return nn.Sequential(*layers, nn.Linear(width, output_dim))


class ToyGenerator(nn.Module):
    """G(x_{t+1}, t, z) -> x_0 prediction, an MLP on [features(x_{t+1}), embedding(t), z]."""

    def __init__(
        self,
        data_dim: int = 2,  # dimension of a data point
        nz: int = 2,  # latent z dimension
        num_timesteps: int = 4,  # T, size of the time-embedding table
        hidden_dim: int = 512,  # width of the hidden layers
        num_hidden_layers: int = 3,  # depth of the MLP
        time_embedding_dim: int = 32,  # learned embedding of the pair index t
        num_fourier_frequencies: int = 0,  # Fourier features of x_{t+1}; 0 = raw coordinates
    ):
        super().__init__()
        self.nz = nz
        self.features = FourierFeatures(num_fourier_frequencies)
        self.time_embedding = nn.Embedding(num_timesteps, time_embedding_dim)
        self.net = mlp(self.features.output_dim(data_dim) + time_embedding_dim + nz, hidden_dim, num_hidden_layers, data_dim, nn.SiLU)

    def forward(self, x_tp1: Tensor, t: Tensor, z: Tensor) -> Tensor:
        return self.net(torch.cat([self.features(x_tp1), self.time_embedding(t), z], dim=1))


class ToyDiscriminator(nn.Module):
    """D(x_t, t, x_{t+1}) -> logits (N, 1), an MLP on [features(x_t), features(x_{t+1}), embedding(t)]."""

    def __init__(
        self,
        data_dim: int = 2,  # dimension of a data point
        num_timesteps: int = 4,  # T, size of the time-embedding table
        hidden_dim: int = 512,  # width of the hidden layers
        num_hidden_layers: int = 3,  # depth of the MLP
        time_embedding_dim: int = 32,  # learned embedding of the pair index t
        num_fourier_frequencies: int = 0,  # Fourier features of x_t and x_{t+1}; 0 = raw coordinates
    ):
        super().__init__()
        self.features = FourierFeatures(num_fourier_frequencies)
        self.time_embedding = nn.Embedding(num_timesteps, time_embedding_dim)
        input_dim = 2 * self.features.output_dim(data_dim) + time_embedding_dim
        self.net = mlp(input_dim, hidden_dim, num_hidden_layers, 1, lambda: nn.LeakyReLU(0.2))

    def forward(self, x_t: Tensor, t: Tensor, x_tp1: Tensor) -> Tensor:
        return self.net(torch.cat([self.features(x_t), self.features(x_tp1), self.time_embedding(t)], dim=1))
