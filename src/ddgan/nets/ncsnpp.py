"""NCSN++ generator of DDGAN: x0_pred = G(x_{t+1}, t, z).

A U-Net of BigGAN residual blocks (FIR resampling, skip sums scaled by 1/sqrt 2) conditioned on
  - the step t: sinusoidal (or Fourier) embedding -> MLP -> a per-channel bias in every block;
  - the latent z: PixelNorm -> mapping MLP -> AdaGN scale and shift in every block;
  - class-conditional (num_classes > 0): the label y's learned embedding joins z at the mapping MLP's input
    (layers.MappingNetwork), so it drives AdaGN too;
with self-attention at `attn_resolutions` and in the middle, an input pyramid (the image, FIR-downsampled
and convolved, added after every downsampling block) and a tanh output predicting x_0.

Submodules are named by resolution: `enc["16x16_block0"]`, `enc["16x16_attn0"]`, `enc["8x8_down"]`
(a block that downsamples *to* 8x8), `enc["8x8_pyramid"]`, `dec["16x16_block2"]`, `dec["32x32_up"]`.
Encoder and decoder entries are registered in the released network's module order, which
`official.py` relies on to map released weights.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from src.ddgan.nets.layers import AttentionBlock, MappingNetwork, ResBlock, TimeEmbedding, conv2d, num_groups, skip_sum
from src.ddgan.nets.resample import FIR_TAPS, FIRDownsampleConv2d


class NCSNpp(nn.Module):
    """NCSN++ U-Net with AdaGN latent conditioning (DDGAN generator). Defaults: the CIFAR-10 paper network."""

    def __init__(
        self,
        *,
        image_size: int = 32,                       # H = W of x_{t+1}; level i works at image_size / 2^i
        image_channels: int = 3,                    # C of x_{t+1} and of the output
        base_channels: int = 128,                   # nf (released num_channels_dae)
        channel_mult: Sequence[int] = (1, 2, 2, 2),  # level i has nf * channel_mult[i] channels
        num_res_blocks: int = 2,                    # residual blocks per level in the encoder (+1 in the decoder)
        attn_resolutions: Sequence[int] = (16,),    # resolutions with self-attention after each block
        dropout: float = 0.0,                       # dropout inside residual blocks
        time_embedding: str = "positional",         # "positional" (sinusoidal of t) or "fourier" (of log t)
        fourier_scale: float = 16.0,                # std of the Fourier frequencies (time_embedding="fourier")
        nz: int = 100,                              # latent z dimension
        z_emb_dim: int = 256,                       # width of the mapping network and of its output w
        n_mlp: int = 4,                             # mapping layers after the first nz -> z_emb_dim layer
        input_pyramid: bool = True,                 # add the downsampled image after each down block
        skip_rescale: bool = True,                  # scale residual and pyramid sums by 1/sqrt 2
        fir_taps: Sequence[int] = FIR_TAPS,         # 1-D FIR resampling filter
        final_tanh: bool = True,                    # squash the x_0 prediction into [-1, 1]
        centered: bool = True,                      # x_{t+1} is on the [-1, 1] data scale; False: input is
                                                    # on a [0, 1] scale and is mapped by 2x - 1 first
        patch_size: int = 1,                        # > 1: the U-Net works on p x p patches as channels
                                                    # (pixel_unshuffle in, pixel_shuffle out; p^2 less area)
        num_classes: int = 0,                       # > 0: class-conditional G(x, t, z, y), y in 0..num_classes-1
    ):
        super().__init__()
        if patch_size < 1 or image_size % patch_size:
            raise ValueError(f"patch_size={patch_size!r} must be >= 1 and divide image_size={image_size}")
        self.nz = nz
        self.num_classes = num_classes
        self.patch_size = patch_size
        image_size, image_channels = image_size // patch_size, image_channels * patch_size**2
        self.resolutions = tuple(image_size // 2 ** i for i in range(len(channel_mult)))
        self.attn_resolutions = frozenset(int(r) for r in attn_resolutions)
        self.num_res_blocks = num_res_blocks
        self.input_pyramid = input_pyramid
        self.skip_rescale = skip_rescale
        self.final_tanh = final_tanh
        self.centered = centered

        nf = base_channels
        t_emb_dim = 4 * nf
        features_dim = {"positional": nf, "fourier": 2 * nf}.get(time_embedding)
        if features_dim is None:
            raise ValueError(f"time_embedding must be 'positional' or 'fourier', got {time_embedding!r}")
        self.time_embed = TimeEmbedding(kind=time_embedding, features_dim=features_dim, hidden_dim=t_emb_dim,
                                        out_dim=t_emb_dim, act=nn.SiLU(), fourier_scale=fourier_scale)
        block = functools.partial(ResBlock, t_emb_dim=t_emb_dim, z_emb_dim=z_emb_dim, dropout=dropout,
                                  skip_rescale=skip_rescale, fir_taps=fir_taps)
        attention = functools.partial(AttentionBlock, skip_rescale=skip_rescale)

        self.conv_in = conv2d(image_channels, nf, 3)
        self.enc = nn.ModuleDict()
        skip_channels, ch, pyramid_ch = [nf], nf, image_channels
        for level, res in enumerate(self.resolutions):
            for i in range(num_res_blocks):
                self.enc[f"{res}x{res}_block{i}"] = block(ch, nf * channel_mult[level])
                ch = nf * channel_mult[level]
                if res in self.attn_resolutions:
                    self.enc[f"{res}x{res}_attn{i}"] = attention(ch)
                skip_channels.append(ch)
            if level < len(self.resolutions) - 1:
                low = res // 2
                self.enc[f"{low}x{low}_down"] = block(ch, resample="down")
                if input_pyramid:
                    self.enc[f"{low}x{low}_pyramid"] = FIRDownsampleConv2d(pyramid_ch, ch, 3, fir_taps)
                    pyramid_ch = ch
                skip_channels.append(ch)

        self.mid_block0 = block(ch)
        self.mid_attn = attention(ch)
        self.mid_block1 = block(ch)

        self.dec = nn.ModuleDict()
        for level, res in reversed(list(enumerate(self.resolutions))):
            for i in range(num_res_blocks + 1):
                self.dec[f"{res}x{res}_block{i}"] = block(ch + skip_channels.pop(), nf * channel_mult[level])
                ch = nf * channel_mult[level]
            if res in self.attn_resolutions:
                self.dec[f"{res}x{res}_attn"] = attention(ch)
            if level > 0:
                self.dec[f"{2 * res}x{2 * res}_up"] = block(ch, resample="up")

        self.norm_out = nn.GroupNorm(num_groups(ch), ch, eps=1e-6)
        self.conv_out = conv2d(ch, image_channels, 3, init_scale=0.0)
        self.mapping = MappingNetwork(nz, z_emb_dim, n_mlp, num_classes)

    def forward(self, x_tp1: torch.Tensor, t: torch.Tensor, z: torch.Tensor,
                y: torch.Tensor | None = None) -> torch.Tensor:
        """x_tp1: (N, C, H, W) noisy image at level t+1; t: (N,) long pair index; z: (N, nz); y: (N,) long class
        labels (conditional networks only) -> x0_pred (N, C, H, W)."""
        z_emb = self.mapping(z, y)
        t_emb = F.silu(self.time_embed(t))                 # SiLU once here instead of inside every block
        x = x_tp1 if self.centered else 2 * x_tp1 - 1
        if self.patch_size > 1:
            x = F.pixel_unshuffle(x, self.patch_size)

        h = self.conv_in(x)
        skips, pyramid, carried = [h], x, []
        for level, res in enumerate(self.resolutions):
            for i in range(self.num_res_blocks):
                h = self.enc[f"{res}x{res}_block{i}"](h, t_emb, z_emb)
                if res in self.attn_resolutions:
                    h = self.enc[f"{res}x{res}_attn{i}"](h)
                skips.append(h)
            if level < len(self.resolutions) - 1:
                low = res // 2
                h = self.down_block(self.enc[f"{low}x{low}_down"], h, t_emb, z_emb, carried)
                if self.input_pyramid:
                    h = pyramid = skip_sum(self.enc[f"{low}x{low}_pyramid"](pyramid), h, self.skip_rescale)
                skips.append(h)

        h = self.bottleneck(h, t_emb, z_emb)

        for level, res in reversed(list(enumerate(self.resolutions))):
            for i in range(self.num_res_blocks + 1):
                h = self.dec[f"{res}x{res}_block{i}"](torch.cat([h, skips.pop()], dim=1), t_emb, z_emb)
            if res in self.attn_resolutions:
                h = self.dec[f"{res}x{res}_attn"](h)
            if level > 0:
                h = self.up_block(self.dec[f"{2 * res}x{2 * res}_up"], h, t_emb, z_emb, carried)

        h = self.conv_out(F.silu(self.norm_out(h)))
        if self.patch_size > 1:
            h = F.pixel_shuffle(h, self.patch_size)
        return torch.tanh(h) if self.final_tanh else h

    # The steps a variant changes (the wavelet generator: wavelet_ncsnpp.py). `carried` is a stack that a down
    # block may push onto and the up block of the same level pops (unused here).
    def down_block(self, block: nn.Module, h: torch.Tensor, t_emb: torch.Tensor, z_emb: torch.Tensor,
                   carried: list) -> torch.Tensor:
        """The encoder's downsampling block: h (N, C, H, W) -> (N, C, H/2, W/2)."""
        return block(h, t_emb, z_emb)

    def bottleneck(self, h: torch.Tensor, t_emb: torch.Tensor, z_emb: torch.Tensor) -> torch.Tensor:
        """The bottleneck: residual block, attention, residual block."""
        return self.mid_block1(self.mid_attn(self.mid_block0(h, t_emb, z_emb)), t_emb, z_emb)

    def up_block(self, block: nn.Module, h: torch.Tensor, t_emb: torch.Tensor, z_emb: torch.Tensor,
                 carried: list) -> torch.Tensor:
        """The decoder's upsampling block: h (N, C, H, W) -> (N, C, 2H, 2W)."""
        return block(h, t_emb, z_emb)
