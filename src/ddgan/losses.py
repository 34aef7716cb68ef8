"""DDGAN's losses: non-saturating logistic GAN losses, the R1 penalty and WaveDiff's reconstruction term."""
import torch
import torch.nn.functional as F
from torch import Tensor


def d_loss_real(logits_real: Tensor) -> Tensor:
    """E[softplus(-D(x_t, t, x_{t+1}))] on real pairs."""
    return F.softplus(-logits_real).mean()


def d_loss_fake(logits_fake: Tensor) -> Tensor:
    """E[softplus(D(x'_t, t, x_{t+1}))] on generated pairs."""
    return F.softplus(logits_fake).mean()


def g_loss(logits_fake: Tensor) -> Tensor:
    """Non-saturating generator loss E[softplus(-D(x'_t, t, x_{t+1}))]."""
    return F.softplus(-logits_fake).mean()


def r1_penalty(logits_real: Tensor, x_t: Tensor) -> Tensor:
    """E ||∇_{x_t} D(x_t, t, x_{t+1})||² on real x_t (x_t must require grad); differentiable."""
    (grad,) = torch.autograd.grad(logits_real.sum(), x_t, create_graph=True)
    return grad.square().flatten(1).sum(1).mean()


def l1_per_pair(x0_pred: Tensor, x_0: Tensor) -> Tensor:
    """Each pair's mean |x̂_0 - x_0| over its elements: (N,)."""
    return (x0_pred - x_0).abs().flatten(1).mean(1)


def reconstruction_loss(x0_pred: Tensor, x_0: Tensor, weights: Tensor | None = None) -> Tensor:
    """E|G(x_{t+1}, t, z) - x_0|, the L1 reconstruction term WaveDiff adds to the G loss (mean over elements);
    with per-pair `weights` (N,), the batch mean of weight × each pair's mean |x̂_0 - x_0|."""
    if weights is None:
        return (x0_pred - x_0).abs().mean()
    return (weights * l1_per_pair(x0_pred, x_0)).mean()
