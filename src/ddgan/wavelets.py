"""The orthonormal 2-D Haar transform: an image <-> its four subbands at half resolution (WaveDiff's space).

For every 2x2 block [[a, b], [c, d]] of each channel, with s = 1/2 (the separable Haar filters 1/sqrt 2 [1, +-1]):

    LL = s (a + b + c + d)          the local average, times 2
    V  = s (a + b - c - d)          high-pass along the height (top row minus bottom row)
    H  = s (a - b + c - d)          high-pass along the width  (left column minus right column)
    HH = s (a - b - c + d)          high-pass along both

The transform is orthonormal, so the inverse is its transpose and exact to float precision. The two released
WaveDiff transforms agree on LL and HH and name V and H the other way round; `subband_order` says which:

    "dwt_idwt"          WaveDiff's own DWT_IDWT layer (CelebA-HQ 256/512/1024 runs; always inside its networks):
                        (LL, LH, HL, HH) = (LL, H, V, HH)
    "pytorch_wavelets"  pytorch_wavelets' DWTForward (runs with --use_pytorch_wavelet: CIFAR-10, STL-10, LSUN):
                        (LL, LH, HL, HH) = (LL, V, H, HH)

WaveDiff's data space is `to_wavelet_space(x) = cat(LL, LH, HL, HH) / 2`: 4 C channels in [-1, 1] for x in [-1, 1].
"""
from __future__ import annotations

import torch

SUBBAND_ORDERS = ("dwt_idwt", "pytorch_wavelets")
NETWORK_SUBBAND_ORDER = "dwt_idwt"        # the order of the transforms inside the released wavelet generator


def check_subband_order(subband_order: str) -> str:
    """`subband_order` if it is one of SUBBAND_ORDERS; else ValueError naming the choices."""
    if subband_order not in SUBBAND_ORDERS:
        raise ValueError(f"subband_order={subband_order!r} is not a Haar subband order; "
                         f"use one of {', '.join(SUBBAND_ORDERS)}")
    return subband_order


def haar_dwt(x: torch.Tensor, subband_order: str = NETWORK_SUBBAND_ORDER) -> tuple[torch.Tensor, ...]:
    """x: (N, C, H, W), H and W even -> (LL, LH, HL, HH), each (N, C, H/2, W/2), in `subband_order`."""
    check_subband_order(subband_order)
    height, width = x.shape[-2:]
    if height % 2 or width % 2:
        raise ValueError(f"the Haar transform needs an even height and width, got {height}x{width}: "
                         "resize or crop the images to an even size (e.g. data.resize)")
    a, b = x[..., 0::2, 0::2], x[..., 0::2, 1::2]
    c, d = x[..., 1::2, 0::2], x[..., 1::2, 1::2]
    ll = (a + b + c + d) / 2
    v = (a + b - c - d) / 2
    h = (a - b + c - d) / 2
    hh = (a - b - c + d) / 2
    return (ll, h, v, hh) if subband_order == "dwt_idwt" else (ll, v, h, hh)


def haar_idwt(ll: torch.Tensor, lh: torch.Tensor, hl: torch.Tensor, hh: torch.Tensor,
              subband_order: str = NETWORK_SUBBAND_ORDER) -> torch.Tensor:
    """The inverse of `haar_dwt`: four (N, C, h, w) subbands in `subband_order` -> (N, C, 2h, 2w)."""
    check_subband_order(subband_order)
    h, v = (lh, hl) if subband_order == "dwt_idwt" else (hl, lh)
    a = (ll + v + h + hh) / 2
    b = (ll + v - h - hh) / 2
    c = (ll - v + h - hh) / 2
    d = (ll - v - h + hh) / 2
    top = torch.stack([a, b], dim=-1).flatten(-2)              # (..., h, 2w): a b a b ...
    bottom = torch.stack([c, d], dim=-1).flatten(-2)
    return torch.stack([top, bottom], dim=-2).flatten(-3, -2)  # (..., 2h, 2w): rows top, bottom, ...


def to_wavelet_space(x: torch.Tensor, subband_order: str) -> torch.Tensor:
    """Image (N, C, H, W) -> WaveDiff's data cat(LL, LH, HL, HH) / 2: (N, 4 C, H/2, W/2)."""
    return torch.cat(haar_dwt(x, subband_order), dim=1) / 2


def from_wavelet_space(w: torch.Tensor, subband_order: str) -> torch.Tensor:
    """The inverse of `to_wavelet_space`: (N, 4 C, h, w) -> image (N, C, 2h, 2w)."""
    if w.shape[1] % 4:
        raise ValueError(f"wavelet data needs 4 x C channels (LL, LH, HL, HH of C image channels), got {w.shape[1]}")
    return haar_idwt(*(2 * w).chunk(4, dim=1), subband_order=subband_order)


SPACES = ("pixel", "wavelet")  # model.space: the networks see images, or WaveDiff's Haar subbands of them


def network_shape(sample_shape, space: str) -> list[int]:
    """The shape the networks see for data points of `sample_shape` in `space` (model.network_shape): the data's own in
    pixel space; (4 C, H/2, W/2) in wavelet space. ValueError naming the setting for an unknown space or a bad shape."""
    shape = [int(d) for d in sample_shape]
    if space not in SPACES:
        raise ValueError(f"model.space={space!r} is not a data space; use one of {', '.join(SPACES)}")
    if space == "pixel":
        return shape
    if len(shape) != 3:
        raise ValueError(f"model.space=wavelet needs (C, H, W) images, but the data points have shape {shape}: "
                         "use model.space=pixel for flat data")
    channels, height, width = shape
    if height % 2 or width % 2:
        raise ValueError(f"model.space=wavelet needs an even height and width, the data is {height}x{width}: "
                         "resize or crop the images to an even size (data.image_size), or use model.space=pixel")
    return [4 * channels, height // 2, width // 2]
