"""WaveDiff's wavelet generator (Phung, Dao, Tran, CVPR 2023): NCSN++ with Haar resampling, x0_pred = G(x_{t+1}, t, z).

The plain NCSN++ (ncsnpp.py) with three changes, each a switch (all on as released; all off is exactly NCSNpp):
  - wavelet_pyramid: the input pyramid downsamples by the Haar transform: the four subbands / 2, then a 3x3 conv
    (released WaveletDownsample) instead of FIR downsampling and a conv;
  - wavelet_resblocks: the encoder's down blocks keep LL / 2 of the Haar transform and hand their residual
    branch's high-frequency subbands (LH, HL, HH) to the decoder's up block at the same level, which maps them
    with a grouped 3x3 conv (one group per subband) and upsamples by the inverse transform;
  - frequency_bottleneck: the middle residual blocks work on LL / 2 of their input, with the high subbands put
    back by the inverse transform (the second one runs once on the full features and once on their LL, with
    the same weights, as released).
The transforms inside the network use the released DWT_IDWT subband order (wavelets.NETWORK_SUBBAND_ORDER);
the order of the data space is a separate setting (wavelets.py).

Submodules keep NCSNpp's names: `enc["8x8_down"]` is a WaveletResBlock, `enc["8x8_pyramid"]` a
WaveletDownsample, `dec["16x16_up"]` a WaveletResBlock with a `high_conv`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from src.ddgan.nets.layers import ResBlock, conv2d, skip_sum, variance_scaling_
from src.ddgan.nets.ncsnpp import NCSNpp
from src.ddgan.wavelets import haar_dwt, haar_idwt

Subbands = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class WaveletDownsample(nn.Conv2d):
    """Input pyramid step: x (N, C, H, W) -> conv3x3(cat(LL, LH, HL, HH) / 2): (N, C_out, H/2, W/2)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(4 * in_channels, out_channels, 3, padding=1)
        variance_scaling_(self.weight)
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(torch.cat(haar_dwt(x), dim=1) / 2)


class WaveletResBlock(ResBlock):
    """BigGAN residual block (AdaGN, time bias) that resamples by the Haar transform (released WaveletResnetBlock).

    down: h = conv0(act(AdaGN(x))); (LL, LH, HL, HH) = dwt(h); h = LL / 2, x = LL(skip(x)) / 2, then the time
          bias, conv1 and the residual sum; returns (out, (LH, HL, HH)).
    up:   (LH, HL, HH) = 2 high_conv(cat(high) / 2); h = idwt(2 conv0(act(AdaGN(x))), LH, HL, HH) and
          x = idwt(2 skip(x), LH, HL, HH) (the same high subbands), then as above; returns out.
    """

    def __init__(self, channels: int, *,
                 resample: str,                                         # "down" or "up"
                 high_channels: int | None = None,                      # up: channels of each carried subband
                 t_emb_dim: int,                                        # width of the time embedding
                 z_emb_dim: int,                                        # width of the mapped latent w
                 dropout: float = 0.0,
                 skip_rescale: bool = True):                            # divide the residual sum by sqrt 2
        super().__init__(channels, channels, t_emb_dim=t_emb_dim, z_emb_dim=z_emb_dim, dropout=dropout,
                         skip_rescale=skip_rescale)
        if resample not in ("down", "up"):
            raise ValueError(f"resample must be 'down' or 'up', got {resample!r}")
        self.direction = resample
        self.skip = conv2d(channels, channels, 1)                       # resampling blocks always have one
        if resample == "up":
            if high_channels is None:
                raise ValueError("an up WaveletResBlock needs high_channels (the carried subbands' channels)")
            self.high_conv = nn.Conv2d(3 * high_channels, 3 * channels, 3, padding=1, groups=3)
            variance_scaling_(self.high_conv.weight)
            nn.init.zeros_(self.high_conv.bias)

    def forward(self, x: torch.Tensor, t_emb: torch.Tensor, z_emb: torch.Tensor,
                high: Subbands | None = None) -> torch.Tensor | tuple[torch.Tensor, Subbands]:
        """x: (N, C, H, W); t_emb: (N, t_emb_dim), already activated; z_emb: (N, z_emb_dim); high: up only."""
        h = self.conv0(F.silu(self.norm0(x, z_emb)))
        x = self.skip(x)
        if self.direction == "down":
            h, *high = haar_dwt(h)
            h, x = h / 2, F.avg_pool2d(x, 2)                            # LL / 2 is the mean of each 2x2 block
        else:
            lh, hl, hh = (self.high_conv(torch.cat(high, dim=1) / 2) * 2).chunk(3, dim=1)
            h, x = haar_idwt(2 * h, lh, hl, hh), haar_idwt(2 * x, lh, hl, hh)
        h = h + self.time_proj(t_emb)[:, :, None, None]
        h = self.conv1(self.dropout(F.silu(self.norm1(h, z_emb))))
        out = skip_sum(x, h, self.skip_rescale)
        return (out, tuple(high)) if self.direction == "down" else out


def _wavelet_block_like(block: ResBlock, resample: str, high_channels: int | None = None) -> WaveletResBlock:
    """A WaveletResBlock with the channels and options of the FIR resampling `block` it replaces."""
    return WaveletResBlock(block.conv0.in_channels, resample=resample, high_channels=high_channels,
                           t_emb_dim=block.time_proj.in_features, z_emb_dim=block.norm0.scale_shift.in_features,
                           dropout=block.dropout.p, skip_rescale=block.skip_rescale)


class WaveletNCSNpp(NCSNpp):
    """WaveDiff's WaveletNCSNpp. Keyword arguments: NCSNpp's, plus the three switches of the module docstring.

    For WaveDiff's data give image_channels = 4 x the image's channels and image_size = half the image's size
    (the released `--num_channels 12 --current_resolution`). Every level's resolution must be even.
    """

    def __init__(
        self,
        *,
        wavelet_pyramid: bool = True,              # Haar input pyramid (released: not --no_use_residual)
        wavelet_resblocks: bool = True,            # Haar down / up residual blocks (released: not --no_use_freq)
        frequency_bottleneck: bool = True,         # middle blocks on LL (released: not --no_use_fbn)
        **ncsnpp_kwargs,                           # NCSNpp's arguments (image_size, base_channels, ...)
    ):
        super().__init__(**ncsnpp_kwargs)
        self.wavelet_resblocks = wavelet_resblocks
        self.frequency_bottleneck = frequency_bottleneck
        odd = [r for r in self.resolutions[:-1 if not frequency_bottleneck else None] if r % 2]
        if odd and (wavelet_pyramid or wavelet_resblocks or frequency_bottleneck):
            image_size = self.resolutions[0] * self.patch_size
            raise ValueError(f"image_size={image_size} gives an odd resolution {odd[0]} where the wavelet generator "
                             f"takes a Haar transform; use an image_size divisible by "
                             f"{2 ** len(self.resolutions) * self.patch_size} or fewer channel_mult levels")
        for level, res in enumerate(self.resolutions[1:]):
            down, pyramid = self.enc[f"{res}x{res}_down"], f"{res}x{res}_pyramid"
            if wavelet_resblocks:
                self.enc[f"{res}x{res}_down"] = _wavelet_block_like(down, "down")
                self.dec[f"{self.resolutions[level]}x{self.resolutions[level]}_up"] = _wavelet_block_like(
                    self.dec[f"{self.resolutions[level]}x{self.resolutions[level]}_up"], "up",
                    high_channels=down.conv0.out_channels)
            if wavelet_pyramid and pyramid in self.enc:
                out_channels, in_channels = self.enc[pyramid].weight.shape[:2]
                self.enc[pyramid] = WaveletDownsample(in_channels, out_channels)

    def down_block(self, block: nn.Module, h: torch.Tensor, t_emb: torch.Tensor, z_emb: torch.Tensor,
                   carried: list) -> torch.Tensor:
        """A Haar down block pushes its high subbands for the up block of the same level."""
        if not self.wavelet_resblocks:
            return block(h, t_emb, z_emb)
        h, high = block(h, t_emb, z_emb)
        carried.append(high)
        return h

    def up_block(self, block: nn.Module, h: torch.Tensor, t_emb: torch.Tensor, z_emb: torch.Tensor,
                 carried: list) -> torch.Tensor:
        """A Haar up block restores the high subbands its level's down block pushed."""
        return block(h, t_emb, z_emb, carried.pop()) if self.wavelet_resblocks else block(h, t_emb, z_emb)

    def bottleneck(self, h: torch.Tensor, t_emb: torch.Tensor, z_emb: torch.Tensor) -> torch.Tensor:
        """Frequency bottleneck: each middle block on LL / 2, the high subbands put back (the second block twice)."""
        if not self.frequency_bottleneck:
            return super().bottleneck(h, t_emb, z_emb)

        def on_low_band(block: nn.Module, h: torch.Tensor) -> torch.Tensor:
            ll, *high = haar_dwt(h)
            return haar_idwt(2 * block(ll / 2, t_emb, z_emb), *high)

        h = self.mid_attn(on_low_band(self.mid_block0, h))
        return on_low_band(self.mid_block1, self.mid_block1(h, t_emb, z_emb))
