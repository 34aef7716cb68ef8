"""Layers shared by the DDGAN generator (NCSN++) and discriminators.

Initialisation follows the released code: uniform variance scaling, Var[w] = scale / fan with
fan = (fan_in + fan_out) / 2 ("fan_avg", generator convolutions and time MLP) or fan_out (the released
`dense`/`conv2d` helpers, used by the discriminators, AdaGN and the mapping network); scale 0 means 1e-10
(near-zero residual branches at init). Biases start at zero.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from src.ddgan.nets.resample import FIR_TAPS, FIRDownsample, FIRUpsample

# ----------------------------------------------------------------------------- initialisation

def variance_scaling_(weight: torch.Tensor, scale: float = 1.0, fan: str = "fan_avg") -> torch.Tensor:
    """In place: w ~ U(-b, b), b = sqrt(3 scale / fan), fan in {"fan_avg", "fan_in", "fan_out"}."""
    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(weight)
    n = {"fan_avg": (fan_in + fan_out) / 2, "fan_in": fan_in, "fan_out": fan_out}[fan]
    bound = math.sqrt(3 * (scale or 1e-10) / max(1.0, n))
    with torch.no_grad():
        return weight.uniform_(-bound, bound)


def linear(in_features: int, out_features: int, *, init_scale: float = 1.0, fan: str = "fan_avg") -> nn.Linear:
    """nn.Linear with variance-scaling weights and zero bias."""
    layer = nn.Linear(in_features, out_features)
    variance_scaling_(layer.weight, init_scale, fan)
    nn.init.zeros_(layer.bias)
    return layer


def conv2d(in_channels: int, out_channels: int, kernel_size: int = 3, *, bias: bool = True,
           init_scale: float = 1.0, fan: str = "fan_avg") -> nn.Conv2d:
    """'Same'-padded square nn.Conv2d (odd kernel) with variance-scaling weights and zero bias."""
    layer = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)
    variance_scaling_(layer.weight, init_scale, fan)
    if bias:
        nn.init.zeros_(layer.bias)
    return layer


def skip_sum(x: torch.Tensor, h: torch.Tensor, rescale: bool = True) -> torch.Tensor:
    """x + h, divided by sqrt 2 when `rescale` (keeps unit variance for independent unit-variance terms)."""
    return (x + h) / math.sqrt(2.0) if rescale else x + h


def num_groups(channels: int) -> int:
    """GroupNorm groups used throughout NCSN++: min(C / 4, 32)."""
    return min(channels // 4, 32)


# ----------------------------------------------------------------------------- time and latent embeddings

class PositionalEmbedding(nn.Module):
    """Transformer sinusoidal embedding of the step t: [sin(t w_i), cos(t w_i)], w_i = 10000^(-i / (d/2 - 1))."""

    def __init__(self, dim: int, max_positions: int = 10000):
        super().__init__()
        half = dim // 2
        freqs = torch.exp(torch.arange(half, dtype=torch.float32) * -(math.log(max_positions) / (half - 1)))
        self.register_buffer("freqs", freqs, persistent=False)
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """t: (N,) -> (N, dim); an odd dim gets a trailing zero."""
        arg = t.float()[:, None] * self.freqs[None, :]
        emb = torch.cat([torch.sin(arg), torch.cos(arg)], dim=1)
        return F.pad(emb, (0, self.dim % 2))


class FourierEmbedding(nn.Module):
    """Gaussian Fourier features of log t: [sin(2 pi W log t), cos(2 pi W log t)], W ~ N(0, scale^2), fixed.

    The released code embeds log(t) of the integer step, which is -inf (NaN features) at t = 0. We embed
    log(max(t, min_time)) with min_time = 1/2: step 0 lands one octave below step 1 on the log scale,
    and every step t >= 1 is embedded exactly as released (so released weights load unchanged).
    """

    def __init__(self, num_frequencies: int, scale: float = 16.0, min_time: float = 0.5):
        super().__init__()
        # A parameter, as released (counted in n_params, stored in state dicts), but never trained.
        self.frequencies = nn.Parameter(torch.randn(num_frequencies) * scale, requires_grad=False)
        self.min_time = min_time

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """t: (N,) -> (N, 2 num_frequencies)."""
        log_t = torch.log(t.float().clamp(min=self.min_time))
        arg = log_t[:, None] * self.frequencies[None, :] * 2 * math.pi
        return torch.cat([torch.sin(arg), torch.cos(arg)], dim=1)


class TimeEmbedding(nn.Module):
    """t -> fc1(act(fc0(features(t)))): positional or Fourier features, then a 2-layer MLP.

    The caller applies `act` once more to the result before the per-block projections (as released),
    so that nonlinearity is computed once per forward, not once per block.
    """

    def __init__(self, *, kind: str, features_dim: int, hidden_dim: int, out_dim: int, act: nn.Module,
                 fourier_scale: float = 16.0, fan: str = "fan_avg"):
        super().__init__()
        if kind == "positional":
            self.features = PositionalEmbedding(features_dim)
        elif kind == "fourier":
            self.features = FourierEmbedding(features_dim // 2, scale=fourier_scale)
        else:
            raise ValueError(f"time embedding must be 'positional' or 'fourier', got {kind!r}")
        self.fc0 = linear(features_dim, hidden_dim, fan=fan)
        self.act = act
        self.fc1 = linear(hidden_dim, out_dim, fan=fan)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """t: (N,) step index -> (N, out_dim); the features are cast to the dtype of the MLP weights."""
        return self.fc1(self.act(self.fc0(self.features(t).to(self.fc0.weight.dtype))))


class PixelNorm(nn.Module):
    """z / sqrt(mean_c z_c^2 + 1e-8): projects the latent onto the sphere of radius sqrt(nz)."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z / torch.sqrt(torch.mean(z ** 2, dim=1, keepdim=True) + 1e-8)


def check_labels(y: torch.Tensor | None, num_classes: int, network: str) -> None:
    """ValueError unless a conditional network (num_classes > 0) gets labels y and an unconditional one gets none."""
    if num_classes and y is None:
        raise ValueError(f"{network} is class-conditional (num_classes={num_classes}): give it class labels y")
    if not num_classes and y is not None:
        raise ValueError(f"{network} is unconditional (num_classes=0): it takes no class labels")


class MappingNetwork(nn.Module):
    """StyleGAN-like mapping z -> w: PixelNorm, then 1 + n_mlp Linear-SiLU layers of width z_emb_dim.

    Class-conditional (num_classes > 0), as StyleGAN2-ADA's mapping: a learned embedding of the label y (nz wide) is
    PixelNormed like z and concatenated with it, so the first layer sees [z, embed(y)] (2 nz) and the class reaches
    every AdaGN through w. With num_classes = 0 the network and its parameters are the unconditional ones."""

    def __init__(self, nz: int, z_emb_dim: int, n_mlp: int, num_classes: int = 0):
        super().__init__()
        self.norm = PixelNorm()
        self.num_classes = num_classes
        if num_classes:
            self.class_embed = nn.Embedding(num_classes, nz)
        dims = [nz * (2 if num_classes else 1)] + [z_emb_dim] * (n_mlp + 1)
        self.layers = nn.ModuleList(linear(i, o, fan="fan_out") for i, o in itertools.pairwise(dims))

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """z: (N, nz), y: (N,) long class labels (conditional only) -> (N, z_emb_dim)."""
        check_labels(y, self.num_classes, "the generator")
        h = self.norm(z)
        if y is not None:
            h = torch.cat([h, self.norm(self.class_embed(y))], dim=1)
        for layer in self.layers:
            h = F.silu(layer(h))
        return h


# ----------------------------------------------------------------------------- normalisation and attention

class AdaptiveGroupNorm(nn.Module):
    """AdaGN(h, w) = gamma(w) * GroupNorm(h) + beta(w), GroupNorm without affine, (gamma, beta) = Linear(w)."""

    def __init__(self, channels: int, style_dim: int):
        super().__init__()
        self.norm = nn.GroupNorm(num_groups(channels), channels, eps=1e-6, affine=False)
        self.scale_shift = linear(style_dim, 2 * channels, fan="fan_out")
        with torch.no_grad():
            self.scale_shift.bias[:channels] = 1.0                      # gamma = 1, beta = 0 at init

    def forward(self, h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.scale_shift(w)[:, :, None, None].chunk(2, dim=1)
        return gamma * self.norm(h) + beta


class AttentionBlock(nn.Module):
    """Single-head self-attention over the H x W positions, GroupNorm pre-norm, residual (scaled by 1/sqrt 2)."""

    def __init__(self, channels: int, skip_rescale: bool = True):
        super().__init__()
        self.norm = nn.GroupNorm(num_groups(channels), channels, eps=1e-6)
        self.qkv = nn.Linear(channels, 3 * channels)                    # q, k, v stacked on the output dim
        self.proj = nn.Linear(channels, channels)
        for w in self.qkv.weight.chunk(3):
            variance_scaling_(w, 0.1)
        variance_scaling_(self.proj.weight, 0.0)
        nn.init.zeros_(self.qkv.bias)
        nn.init.zeros_(self.proj.bias)
        self.skip_rescale = skip_rescale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, height, width = x.shape
        tokens = self.norm(x).permute(0, 2, 3, 1).reshape(n, height * width, c)    # a view if channels_last
        q, k, v = self.qkv(tokens).chunk(3, dim=-1)
        h = F.scaled_dot_product_attention(q, k, v)                     # softmax(q k^T / sqrt C) v
        h = self.proj(h).reshape(n, height, width, c).permute(0, 3, 1, 2)
        return skip_sum(x, h, self.skip_rescale)


# ----------------------------------------------------------------------------- residual blocks

class ResBlock(nn.Module):
    """BigGAN residual block with AdaGN (z) and a per-channel time bias, optional FIR up/down-sampling.

    h = conv1(act(AdaGN(conv0(resample(act(AdaGN(x, w)))) + Dense(t_emb), w)))
    out = (skip(resample(x)) + h) / sqrt(2), skip a 1x1 conv when channels change or when resampling.
    """

    def __init__(self, in_channels: int, out_channels: int | None = None, *,
                 t_emb_dim: int,                                        # width of the time embedding
                 z_emb_dim: int,                                        # width of the mapped latent w
                 resample: str | None = None,                           # None, "up" or "down"
                 dropout: float = 0.0,
                 skip_rescale: bool = True,                             # divide the residual sum by sqrt 2
                 fir_taps: Sequence[int] = FIR_TAPS):
        super().__init__()
        out_channels = out_channels or in_channels
        self.norm0 = AdaptiveGroupNorm(in_channels, z_emb_dim)
        self.conv0 = conv2d(in_channels, out_channels, 3)
        self.time_proj = linear(t_emb_dim, out_channels)
        self.norm1 = AdaptiveGroupNorm(out_channels, z_emb_dim)
        self.dropout = nn.Dropout(dropout)
        self.conv1 = conv2d(out_channels, out_channels, 3, init_scale=0.0)
        if resample == "up":
            self.resample = FIRUpsample(fir_taps)
        elif resample == "down":
            self.resample = FIRDownsample(fir_taps)
        elif resample is None:
            self.resample = nn.Identity()
        else:
            raise ValueError(f"resample must be None, 'up' or 'down', got {resample!r}")
        needs_skip = in_channels != out_channels or resample is not None
        self.skip = conv2d(in_channels, out_channels, 1) if needs_skip else nn.Identity()
        self.skip_rescale = skip_rescale

    def forward(self, x: torch.Tensor, t_emb: torch.Tensor, z_emb: torch.Tensor) -> torch.Tensor:
        """x: (N, C_in, H, W); t_emb: (N, t_emb_dim), already passed through SiLU; z_emb: (N, z_emb_dim)."""
        h = self.resample(F.silu(self.norm0(x, z_emb)))
        h = self.conv0(h) + self.time_proj(t_emb)[:, :, None, None]
        h = self.conv1(self.dropout(F.silu(self.norm1(h, z_emb))))
        return skip_sum(self.skip(self.resample(x)), h, self.skip_rescale)
