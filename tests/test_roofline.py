"""The FLOP counter behind benchmarks/roofline.py: forward, backward and double backward, on the meta device."""
import torch

from benchmarks.roofline import FlopCount


def test_flop_count_of_a_matmul_its_backward_and_double_backward():
    x = torch.randn(8, 16, requires_grad=True)
    w = torch.randn(16, 32, requires_grad=True)
    matmul = 2 * 8 * 16 * 32
    with FlopCount() as forward:
        y = x @ w
    assert forward.flops == matmul
    with FlopCount() as backward:
        (gx,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)  # dL/dx only: one matmul
    assert backward.flops == matmul
    with FlopCount() as double:
        gx.square().sum().backward()  # through y = x w and gx = 2 y wᵀ
    assert double.flops >= 2 * matmul


def test_flop_count_of_a_convolution_on_the_meta_device():
    x = torch.empty(2, 4, 8, 8, device="meta")
    w = torch.empty(6, 4, 3, 3, device="meta")
    with FlopCount() as count:
        torch.nn.functional.conv2d(x, w, padding=1)
    assert count.flops == 2 * 2 * 8 * 8 * 6 * 4 * 9
