"""FIR up/down-sampling by a factor of 2 (StyleGAN2 / NCSN++ style), in pure PyTorch.

The filter is the separable, normalised outer product of `taps` (default [1, 3, 3, 1] / 8 per axis).
Pixels outside the image are zeros. Every op below is one grouped (depthwise) convolution, or one
transposed one for up-sampling, so it runs on any device, supports channels_last, double backward
(R1 penalty) and torch.compile; plain down/up-sampling are a linear operator A and 4 Aᵀ whose gradients are
each other (no filter gradient is ever computed). For a 4-tap filter, with an N x N image:

    downsample:       conv2d(x, f, stride 2, pad 1)                       N -> N/2
    upsample:         conv_transpose2d(x, 4 f, stride 2, pad 1)           N -> 2N
    conv then down:   blur(x, f, pad 2), then conv2d(w, stride 2)         N -> N/2   (fused "Conv2d(down=True)")
    up then conv:     conv_transpose2d(x, w, stride 2), then blur(4 f)    N -> 2N    (fused "Conv2d(up=True)")

The fused variants are the released `Conv2d(up/down=True)`: padding is applied once, not between
the resampling and the 3x3 convolution. tests/test_nets.py checks all four against a literal
upsample / pad / FIR / decimate reference.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

FIR_TAPS = (1, 3, 3, 1)


def fir_kernel(taps: Sequence[float] = FIR_TAPS) -> torch.Tensor:
    """2-D FIR filter (k, k) from 1-D taps: outer(taps, taps) / sum, so a constant image keeps its value."""
    k = torch.as_tensor(list(taps), dtype=torch.float32)
    k = torch.outer(k, k)
    return k / k.sum()


def _depthwise(kernel: torch.Tensor, channels: int) -> torch.Tensor:
    """(1, 1, k, k) filter -> (C, 1, k, k) weight for a grouped convolution (a view, no copy)."""
    return kernel.expand(channels, 1, -1, -1)


def _decimate(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """A x: FIR filter then keep every second pixel (one grouped convolution, stride 2)."""
    k = kernel.shape[-1]
    return F.conv2d(x, _depthwise(kernel.to(x.dtype), x.shape[1]), stride=2, padding=(k - 2) // 2, groups=x.shape[1])


def _decimate_adjoint(y: torch.Tensor, kernel: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Aᵀ y: zero insertion then FIR filter, back to spatial `size` (the matching transposed convolution)."""
    k, pad = kernel.shape[-1], (kernel.shape[-1] - 2) // 2
    output_padding = [s - ((n - 1) * 2 - 2 * pad + k) for s, n in zip(size, y.shape[-2:])]
    # CPU: the grouped transposed convolution is 3-20x faster in channels_last and in fp32 than in bf16
    work = y.float() if y.dtype in (torch.float16, torch.bfloat16) else y
    if y.device.type == "cpu":
        work = work.contiguous(memory_format=torch.channels_last)
    with torch.autocast(y.device.type, enabled=False):  # autocast would cast it back to bf16
        out = F.conv_transpose2d(work, _depthwise(kernel.to(work.dtype), y.shape[1]), stride=2, padding=pad,
                                 output_padding=output_padding, groups=y.shape[1])
    return out.to(y.dtype).contiguous(memory_format=_memory_format(y))


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    """channels_last for a (non-trivially) channels_last 4-D tensor, else contiguous."""
    channels_last = x.ndim == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return torch.channels_last if channels_last else torch.contiguous_format


class _Decimate(torch.autograd.Function):
    """x -> A x with the backward Aᵀ, itself differentiable (and so on, to any order).

    PyTorch's own double backward of a grouped convolution computes the (unneeded) gradient of the fixed filter
    with one convolution per channel: thousands of tiny calls per R1 step through D. A linear operator
    needs none of that: the gradient of A is Aᵀ and the gradient of Aᵀ is A.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(kernel)
        ctx.size = tuple(x.shape[-2:])
        return _decimate(x, kernel)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (kernel,) = ctx.saved_tensors
        return _DecimateAdjoint.apply(grad, kernel, ctx.size), None


class _DecimateAdjoint(torch.autograd.Function):
    """y -> Aᵀ y with the backward A."""

    @staticmethod
    def forward(ctx, y: torch.Tensor, kernel: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        ctx.save_for_backward(kernel)
        return _decimate_adjoint(y, kernel, size)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (kernel,) = ctx.saved_tensors
        return _Decimate.apply(grad, kernel), None, None


def downsample_2d(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """FIR filter then keep every second pixel: (N, C, H, W) -> (N, C, H/2, W/2). kernel: (1, 1, k, k)."""
    return _Decimate.apply(x, kernel)


def upsample_2d(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Zero-insert then FIR filter with gain 4: (N, C, H, W) -> (N, C, 2H, 2W). kernel: (1, 1, k, k).
    This is 4 Aᵀ, A the downsampling operator."""
    return _DecimateAdjoint.apply(x, kernel * 4, (2 * x.shape[-2], 2 * x.shape[-1]))


def blur_2d(x: torch.Tensor, kernel: torch.Tensor, padding: int) -> torch.Tensor:
    """FIR filter at full resolution with zero padding `padding` on every side."""
    return F.conv2d(x, _depthwise(kernel, x.shape[1]), padding=padding, groups=x.shape[1])


class _FIR(nn.Module):
    """Holds the FIR filter as a non-persistent buffer: follows .to(device/dtype), absent from state dicts."""

    def __init__(self, taps: Sequence[float] = FIR_TAPS):
        super().__init__()
        if len(taps) % 2:
            raise ValueError(f"FIR taps must have even length for factor-2 resampling, got {list(taps)}")
        self.register_buffer("kernel", fir_kernel(taps)[None, None], persistent=False)


class FIRDownsample(_FIR):
    """x -> downsample_2d(x): FIR anti-aliasing filter and stride 2."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return downsample_2d(x, self.kernel)


class FIRUpsample(_FIR):
    """x -> upsample_2d(x): zero insertion and FIR interpolation filter."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upsample_2d(x, self.kernel)


class _ResampleConv2d(_FIR):
    """Square k x k convolution (weight (out, in, k, k), bias (out,)) fused with FIR resampling."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 taps: Sequence[float] = FIR_TAPS, bias: bool = True):
        super().__init__(taps)
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        nn.init.xavier_uniform_(self.weight)       # = the released default (uniform, Var = 1 / fan_avg)


class FIRDownsampleConv2d(_ResampleConv2d):
    """Convolution followed by FIR downsampling, padded once: N -> N/2 (released `Conv2d(down=True)`).

    Computed as blur(pad = (taps - 2 + kernel_size - 1) / 2) then a stride-2 valid convolution, which costs
    a depthwise pass at full resolution plus a k x k convolution at half resolution.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = (self.kernel.shape[-1] - 2 + self.weight.shape[-1] - 1) // 2
        return F.conv2d(blur_2d(x, self.kernel, pad), self.weight, self.bias, stride=2)


class FIRUpsampleConv2d(_ResampleConv2d):
    """FIR upsampling followed by convolution, padded once: N -> 2N (released `Conv2d(up=True)`).

    Computed as a stride-2 transposed convolution with the spatially flipped kernel (zero insertion and a
    k x k correlation with `weight`) then the FIR interpolation filter with gain 4.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.flip(2, 3).transpose(0, 1)                     # (in, out, k, k) for conv_transpose
        h = F.conv_transpose2d(x, w, stride=2)                          # 2N + k - 2
        pad = (self.kernel.shape[-1] - 2 - (self.weight.shape[-1] - 1)) // 2 + 1
        h = blur_2d(h, self.kernel * 4, pad)                            # 2N
        return h if self.bias is None else h + self.bias[:, None, None]
