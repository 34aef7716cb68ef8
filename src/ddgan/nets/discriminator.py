"""Time-conditioned DDGAN discriminators: logits = D(x_t, t, x_{t+1}).

The pair is concatenated on channels, a 1x1 stem lifts it to 2 ngf channels, residual down blocks
(LeakyReLU, the step embedding added after the first 3x3 conv of every block, FIR downsampling) reduce
it to 4x4, then minibatch standard deviation, a 3x3 conv, sum pooling over positions and a linear head.

SmallDiscriminator: 32 px (CIFAR-10, StackedMNIST); one full-resolution block then three down blocks.
LargeDiscriminator: 256 px (CelebA-HQ, LSUN); six down blocks.
Class-conditional (num_classes > 0): a projection discriminator (Miyato & Koyama 2018), logits = head(φ) + ⟨embed(y), φ⟩
with φ the sum-pooled features; with num_classes = 0 the network is the unconditional one.
`num_layers` (WaveDiff's depth option) keeps only the first blocks: WaveDiff's CIFAR-10 D has 3, its CelebA-HQ 256 D 5.
Blocks are named by the resolution they output: `blocks["32x32"]`, `blocks["16x16_down"]`, ...
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from src.ddgan.nets.layers import TimeEmbedding, check_labels, conv2d, linear, skip_sum
from src.ddgan.nets.resample import FIR_TAPS, FIRDownsample


class DownBlock(nn.Module):
    """h = conv1(down(act(conv0(act(x)) + Dense(t_emb)))); out = (skip(down(x)) + h) / sqrt 2, skip a 1x1 conv."""

    def __init__(self, in_channels: int, out_channels: int, *,
                 t_emb_dim: int,                                         # width of the time embedding
                 downsample: bool,                                       # FIR-downsample by 2
                 negative_slope: float = 0.2,                            # LeakyReLU slope
                 fir_taps: Sequence[int] = FIR_TAPS):
        super().__init__()
        self.conv0 = conv2d(in_channels, out_channels, 3, fan="fan_out")
        self.time_proj = linear(t_emb_dim, out_channels, fan="fan_out")
        self.conv1 = conv2d(out_channels, out_channels, 3, init_scale=0.0, fan="fan_out")
        self.skip = conv2d(in_channels, out_channels, 1, bias=False, fan="fan_out")
        self.down = FIRDownsample(fir_taps) if downsample else nn.Identity()
        self.negative_slope = negative_slope

    def forward(self, x: torch.Tensor, t_emb: torch.Tensor) -> torch.Tensor:
        """x: (N, C_in, H, W); t_emb: (N, t_emb_dim), already activated."""
        h = self.conv0(F.leaky_relu(x, self.negative_slope)) + self.time_proj(t_emb)[:, :, None, None]
        h = self.conv1(self.down(F.leaky_relu(h, self.negative_slope)))
        return skip_sum(self.skip(self.down(x)), h)


def minibatch_stddev(h: torch.Tensor, group_size: int = 4) -> torch.Tensor:
    """Append one channel: the std over a group of samples, averaged over channels and positions.

    Groups are strided as released: with G = min(N, group_size), sample n is grouped with n +- k N / G.
    N must be smaller than group_size or divisible by it.
    """
    n, c, height, width = h.shape
    g = min(n, group_size)
    if n % g:
        raise ValueError(f"minibatch stddev needs a batch size < {group_size} or divisible by {group_size}, got {n}")
    std = torch.sqrt(h.reshape(g, n // g, c, height, width).var(dim=0, unbiased=False) + 1e-8)
    std = std.mean(dim=(1, 2, 3)).repeat(g)                             # (N,)
    return torch.cat([h, std[:, None, None, None].expand(n, 1, height, width)], dim=1)


class Discriminator(nn.Module):
    """Shared body of the small and large discriminators; `stage_mult` fixes the layout.

    Channels: stem -> ngf * stage_mult[0], block i -> ngf * stage_mult[i + 1]. Block i downsamples unless
    it is the first block and `first_block_downsamples` is False.
    """

    def __init__(self, *, image_size: int, image_channels: int, base_channels: int, t_emb_dim: int,
                 stage_mult: Sequence[int], first_block_downsamples: bool, final_conv_init_scale: float,
                 negative_slope: float, stddev_group: int, fir_taps: Sequence[int], patch_size: int = 1,
                 num_classes: int = 0):
        super().__init__()
        if patch_size < 1 or image_size % patch_size:
            raise ValueError(f"patch_size={patch_size!r} must be >= 1 and divide image_size={image_size}")
        self.patch_size = patch_size
        image_size, image_channels = image_size // patch_size, image_channels * patch_size**2
        self.negative_slope = negative_slope
        self.stddev_group = stddev_group
        act = nn.LeakyReLU(negative_slope)
        self.time_embed = TimeEmbedding(kind="positional", features_dim=t_emb_dim, hidden_dim=t_emb_dim,
                                        out_dim=t_emb_dim, act=act, fan="fan_out")
        channels = [base_channels * m for m in stage_mult]
        self.stem = conv2d(2 * image_channels, channels[0], 1, fan="fan_out")
        self.blocks = nn.ModuleDict()
        res = image_size
        for i, (c_in, c_out) in enumerate(itertools.pairwise(channels)):
            downsample = i > 0 or first_block_downsamples
            res = res // 2 if downsample else res
            name = f"{res}x{res}_down" if downsample else f"{res}x{res}"
            self.blocks[name] = DownBlock(c_in, c_out, t_emb_dim=t_emb_dim, downsample=downsample,
                                          negative_slope=negative_slope, fir_taps=fir_taps)
        self.final_conv = conv2d(channels[-1] + 1, channels[-1], 3, init_scale=final_conv_init_scale, fan="fan_out")
        self.head = linear(channels[-1], 1, fan="fan_out")
        self.num_classes = num_classes
        if num_classes:  # one vector per class, of the linear head's scale
            self.class_projection = nn.Embedding(num_classes, channels[-1])
            nn.init.normal_(self.class_projection.weight, std=channels[-1] ** -0.5)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, x_tp1: torch.Tensor,
                y: torch.Tensor | None = None) -> torch.Tensor:
        """x_t, x_tp1: (N, C, H, W) the pair at levels t and t+1; t: (N,) long; y: (N,) long class labels
        (conditional networks only) -> logits (N, 1)."""
        check_labels(y, self.num_classes, "the discriminator")
        t_emb = F.leaky_relu(self.time_embed(t), self.negative_slope)
        pair = torch.cat([x_t, x_tp1], dim=1)
        if self.patch_size > 1:  # each image's p x p patches as channels, then the two images side by side
            pair = torch.cat([F.pixel_unshuffle(x, self.patch_size) for x in (x_t, x_tp1)], dim=1)
        h = self.stem(pair)
        for block in self.blocks.values():
            h = block(h, t_emb)
        h = minibatch_stddev(h, self.stddev_group)
        pooled = F.leaky_relu(self.final_conv(h), self.negative_slope).sum(dim=(2, 3))
        logits = self.head(pooled)
        return logits if y is None else logits + projection(self.class_projection(y), pooled)


def projection(class_vectors: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """The projection discriminator's class term ⟨embed(y), φ(x)⟩ per sample: (N, F), (N, F) -> (N, 1)."""
    return (class_vectors * features).sum(dim=1, keepdim=True)


def _stages(stage_mult: Sequence[int], num_layers: int, *, min_layers: int) -> tuple[int, ...]:
    """The stem's and the first `num_layers` blocks' channel multipliers (ValueError outside min_layers..all)."""
    max_layers = len(stage_mult) - 1
    if not min_layers <= num_layers <= max_layers:
        raise ValueError(f"num_layers={num_layers!r} must be between {min_layers} and {max_layers}")
    return tuple(stage_mult[:num_layers + 1])


class SmallDiscriminator(Discriminator):
    """32 px discriminator (CIFAR-10, StackedMNIST): a 32x32 block, then down to 16, 8, 4 (released D_small)."""

    def __init__(
        self,
        *,
        image_size: int = 32,              # input resolution (names the blocks; the net is fully convolutional)
        image_channels: int = 3,           # C of x_t and of x_{t+1} (the stem sees 2 C)
        base_channels: int = 64,           # ngf; blocks have 2, 2, 4, 8, 8 x ngf channels
        t_emb_dim: int = 256,              # width of the step embedding
        negative_slope: float = 0.2,       # LeakyReLU slope
        stddev_group: int = 4,             # minibatch-stddev group size (batch < group or divisible by it)
        fir_taps: Sequence[int] = FIR_TAPS,  # 1-D FIR downsampling filter
        patch_size: int = 1,               # > 1: p x p patches as channels (pixel_unshuffle; p^2 less area)
        num_layers: int = 4,               # residual blocks, 3 or 4 (WaveDiff's --num_disc_layers; 3 drops 8 -> 4)
        num_classes: int = 0,              # > 0: projection D(x_t, t, x_{t+1}, y), y in 0..num_classes-1
    ):
        super().__init__(image_size=image_size, image_channels=image_channels, base_channels=base_channels,
                         t_emb_dim=t_emb_dim, stage_mult=_stages((2, 2, 4, 8, 8), num_layers, min_layers=3),
                         first_block_downsamples=False, final_conv_init_scale=0.0, negative_slope=negative_slope,
                         stddev_group=stddev_group, fir_taps=fir_taps, patch_size=patch_size, num_classes=num_classes)


class LargeDiscriminator(Discriminator):
    """256 px discriminator (CelebA-HQ, LSUN): six down blocks, 256 -> 4 (released Discriminator_large)."""

    def __init__(
        self,
        *,
        image_size: int = 256,             # input resolution (names the blocks; the net is fully convolutional)
        image_channels: int = 3,           # C of x_t and of x_{t+1} (the stem sees 2 C)
        base_channels: int = 64,           # ngf; blocks have 2, 4, 8, 8, 8, 8, 8 x ngf channels
        t_emb_dim: int = 256,              # width of the step embedding
        negative_slope: float = 0.2,       # LeakyReLU slope
        stddev_group: int = 4,             # minibatch-stddev group size (batch < group or divisible by it)
        fir_taps: Sequence[int] = FIR_TAPS,  # 1-D FIR downsampling filter
        patch_size: int = 1,               # > 1: p x p patches as channels (pixel_unshuffle; p^2 less area)
        num_layers: int = 6,               # down blocks, 3 to 6 (WaveDiff's --num_disc_layers; the last ones go)
        num_classes: int = 0,              # > 0: projection D(x_t, t, x_{t+1}, y), y in 0..num_classes-1
    ):
        super().__init__(image_size=image_size, image_channels=image_channels, base_channels=base_channels,
                         t_emb_dim=t_emb_dim, stage_mult=_stages((2, 4, 8, 8, 8, 8, 8), num_layers, min_layers=3),
                         first_block_downsamples=True, final_conv_init_scale=1.0, negative_slope=negative_slope,
                         stddev_group=stddev_group, fir_taps=fir_taps, patch_size=patch_size, num_classes=num_classes)
