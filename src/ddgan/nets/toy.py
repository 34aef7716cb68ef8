"""MLP generator and discriminator for 2-D toy data (the paper's 25-Gaussians experiment)."""
import math

import torch
from torch import Tensor, nn

from src.ddgan.diffusion import VPSchedule
from src.ddgan.nets.discriminator import projection
from src.ddgan.nets.layers import check_labels


class FourierFeatures(nn.Module):
    """x ↦ [x, sin(ω_j x), cos(ω_j x)], ω_j = 2π f_0 2^j for j = 0..num_frequencies-1 (per coordinate).

    Sharp modes need high frequencies (an MLP on raw coordinates learns them slowly). f_0 is best
    incommensurate with the data's spacing: on the 25-Gaussians grid (spacing 2) f_0 = 1/2 gives every
    mode center the same features, which hides the mode identity from D and costs modes (measured).
    """

    def __init__(self, num_frequencies: int, base_frequency: float = 0.3):  # f_0 in cycles per unit of x
        super().__init__()
        frequencies = 2 * math.pi * base_frequency * 2.0 ** torch.arange(num_frequencies)
        self.register_buffer("frequencies", frequencies, persistent=False)

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


def linear_denoiser_coefficients(schedule: VPSchedule, data_std: float) -> Tensor:
    """c_t = √ᾱ_{t+1} v / (ᾱ_{t+1} v + σ²_{t+1}), v = data_std²: the best linear estimate of x_0 from x_{t+1}
    (per coordinate, for data of variance v), for each pair index t."""
    sqrt_alpha_bar, sigma = schedule.sqrt_alpha_bar[1:].double(), schedule.sigma_bar[1:].double()
    variance = data_std**2
    return (sqrt_alpha_bar * variance / (sqrt_alpha_bar**2 * variance + sigma**2)).float()


class ToyGenerator(nn.Module):
    """G(x_{t+1}, t, z) = c_t x_{t+1} + MLP([features(x_{t+1}), embedding(t), z]) -> x_0 prediction.

    The skip c_t x_{t+1} (learned, one scalar per t) starts at the best linear denoiser when `schedule` and
    `data_std` are given (the MLP then only learns the non-linear residual, as in EDM's preconditioning);
    otherwise it starts at 0. Class-conditional (num_classes > 0): a learned embedding of the label y (the mixture's
    mode index) joins the MLP's input.
    """

    def __init__(
        self,
        data_dim: int = 2,  # dimension of a data point
        nz: int = 2,  # latent z dimension
        num_timesteps: int = 4,  # T, size of the time-embedding table
        hidden_dim: int = 512,  # width of the hidden layers
        num_hidden_layers: int = 3,  # depth of the MLP
        time_embedding_dim: int = 32,  # learned embedding of the pair index t
        num_fourier_frequencies: int = 0,  # Fourier features of x_{t+1}; 0 = raw coordinates
        fourier_base_frequency: float = 0.3,  # f_0 of the Fourier features (cycles per unit)
        schedule: VPSchedule | None = None,  # with data_std: the skip starts at the best linear denoiser
        data_std: float | None = None,  # per-coordinate std of the data the networks see
        num_classes: int = 0,  # > 0: class-conditional G(x, t, z, y), y in 0..num_classes-1
    ):
        super().__init__()
        self.nz = nz
        self.num_classes = num_classes
        self.features = FourierFeatures(num_fourier_frequencies, fourier_base_frequency)
        self.time_embedding = nn.Embedding(num_timesteps, time_embedding_dim)
        if num_classes:
            self.class_embedding = nn.Embedding(num_classes, time_embedding_dim)
        input_dim = self.features.output_dim(data_dim) + time_embedding_dim * (2 if num_classes else 1) + nz
        self.net = mlp(input_dim, hidden_dim, num_hidden_layers, data_dim, nn.SiLU)
        if schedule is not None and data_std is not None:
            if schedule.num_timesteps != num_timesteps:
                raise ValueError(f"generator num_timesteps={num_timesteps} differs from the schedule's T={schedule.num_timesteps}.")
            skip = linear_denoiser_coefficients(schedule, data_std)
        else:
            skip = torch.zeros(num_timesteps)
        self.skip = nn.Parameter(skip)

    def forward(self, x_tp1: Tensor, t: Tensor, z: Tensor, y: Tensor | None = None) -> Tensor:
        check_labels(y, self.num_classes, "the generator")
        labels = [] if y is None else [self.class_embedding(y)]
        residual = self.net(torch.cat([self.features(x_tp1), self.time_embedding(t), *labels, z], dim=1))
        return self.skip[t].unsqueeze(1) * x_tp1 + residual


class ToyDiscriminator(nn.Module):
    """D(x_t, t, x_{t+1}) -> logits (N, 1), an MLP on [features(x_t), features(x_{t+1}), embedding(t)].

    Class-conditional (num_classes > 0): a projection discriminator on the last hidden layer's features,
    logits += ⟨embed(y), φ⟩ (y: the mixture's mode index)."""

    def __init__(
        self,
        data_dim: int = 2,  # dimension of a data point
        num_timesteps: int = 4,  # T, size of the time-embedding table
        hidden_dim: int = 512,  # width of the hidden layers
        num_hidden_layers: int = 3,  # depth of the MLP
        time_embedding_dim: int = 32,  # learned embedding of the pair index t
        num_fourier_frequencies: int = 0,  # Fourier features of x_t and x_{t+1}; 0 = raw coordinates
        fourier_base_frequency: float = 0.3,  # f_0 of the Fourier features (cycles per unit)
        num_classes: int = 0,  # > 0: projection D(x_t, t, x_{t+1}, y), y in 0..num_classes-1
    ):
        super().__init__()
        self.num_classes = num_classes
        self.features = FourierFeatures(num_fourier_frequencies, fourier_base_frequency)
        self.time_embedding = nn.Embedding(num_timesteps, time_embedding_dim)
        input_dim = 2 * self.features.output_dim(data_dim) + time_embedding_dim
        self.net = mlp(input_dim, hidden_dim, num_hidden_layers, 1, lambda: nn.LeakyReLU(0.2))
        if num_classes:
            self.class_projection = nn.Embedding(num_classes, hidden_dim)
            nn.init.normal_(self.class_projection.weight, std=hidden_dim ** -0.5)

    def forward(self, x_t: Tensor, t: Tensor, x_tp1: Tensor, y: Tensor | None = None) -> Tensor:
        check_labels(y, self.num_classes, "the discriminator")
        inputs = torch.cat([self.features(x_t), self.features(x_tp1), self.time_embedding(t)], dim=1)
        if y is None:
            return self.net(inputs)
        hidden = self.net[:-1](inputs)  # φ: the last hidden layer's activations
        return self.net[-1](hidden) + projection(self.class_projection(y), hidden)
