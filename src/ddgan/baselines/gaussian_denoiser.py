"""The Gaussian-denoiser baseline of the trilemma figure: a DDPM (ε-prediction, Gaussian reverse steps).

It is trained on a fine discretisation (K = 1000 levels by default) of the same VP schedule family as DDGAN
(`VPSchedule(K)`: level k sits at diffusion time τ_k = (k/K)(1 - eps) + eps) and sampled with S ≤ K steps
by striding over the levels k_S = K > … > k_0 = 0. With K a multiple of T, the S = T levels are exactly
DDGAN's T levels, so both models take the same jumps; the baseline models each jump as a Gaussian
q(x_s | x_k, x̂_0) around its denoised mean, which is only accurate for small jumps.

ε_θ is the toy generator's MLP on points (EpsilonMLP) or, on images, a DDGAN generator network itself
(EpsilonGenerator: the same NCSN++, given the level k as its step and a zero latent).
"""
import copy
import itertools
import math
import warnings
from collections.abc import Callable

import torch
from torch import Tensor, nn

from src.ddgan.diffusion import VPSchedule
from src.ddgan.nets.toy import FourierFeatures, mlp
from src.ddgan.sampling import RandomSource, randn


def fine_schedule(num_levels: int = 1000, **vp_kwargs) -> VPSchedule:
    """VPSchedule with many small steps (its 'outside the paper's regime' warning is expected here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return VPSchedule(num_levels, **vp_kwargs)


def sinusoidal_embedding(k: Tensor, dim: int) -> Tensor:
    """Transformer-style embedding of (N,) levels: [sin(k ω_i), cos(k ω_i)], ω_i = 10000^(-i / (dim/2))."""
    half = dim // 2
    omega = torch.exp(-math.log(10_000) * torch.arange(half, device=k.device, dtype=torch.float32) / half)
    angles = k.float()[:, None] * omega
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class EpsilonMLP(nn.Module):
    """ε_θ(x_k, k): the toy generator's MLP on [features(x_k), sinusoidal embedding(k)], predicting the noise."""

    def __init__(
        self,
        data_dim: int = 2,  # dimension of a data point
        hidden_dim: int = 512,  # width of the hidden layers (as the DDGAN toy generator)
        num_hidden_layers: int = 3,  # depth of the MLP (as the DDGAN toy generator)
        time_embedding_dim: int = 32,  # sinusoidal embedding of the level k
        num_fourier_frequencies: int = 0,  # Fourier features of x_k; 0 = raw coordinates
    ):
        super().__init__()
        self.time_embedding_dim = time_embedding_dim
        self.features = FourierFeatures(num_fourier_frequencies)
        self.net = mlp(self.features.output_dim(data_dim) + time_embedding_dim, hidden_dim, num_hidden_layers, data_dim, nn.SiLU)

    def forward(self, x_k: Tensor, k: Tensor) -> Tensor:
        return self.net(torch.cat([self.features(x_k), sinusoidal_embedding(k, self.time_embedding_dim)], dim=1))


class EpsilonGenerator(nn.Module):
    """ε_θ(x_k, k) = G(x_k, k, z = 0): a DDGAN generator network (e.g. NCSN++) as the noise predictor, the level k
    in place of its step t and a zero latent, so the architecture is the DDGAN runs' own."""

    def __init__(self, generator: nn.Module):
        super().__init__()
        if getattr(generator, "final_tanh", False):
            raise ValueError("the generator squashes its output into [-1, 1] (final_tanh=True), but ε ~ N(0, I) is "
                             "unbounded: build it with final_tanh=False")
        self.generator = generator

    def forward(self, x_k: Tensor, k: Tensor) -> Tensor:
        return self.generator(x_k, k, x_k.new_zeros(x_k.shape[0], self.generator.nz))


def ddpm_loss(model: nn.Module, schedule: VPSchedule, x_0: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """E_{k, ε} ||ε - ε_θ(x_k, k)||² over x_0 (N, ...), x_k = √ᾱ_k x_0 + σ_k ε, k ~ U{1..K} (k and ε drawn from `generator`)."""
    k = torch.randint(1, schedule.num_timesteps + 1, (x_0.shape[0],), device=x_0.device, generator=generator)
    noise = torch.randn(x_0.shape, device=x_0.device, dtype=x_0.dtype, generator=generator)
    return (noise - model(schedule.q_sample(x_0, k, noise), k)).square().flatten(1).sum(dim=1).mean()


def strided_levels(num_levels: int, num_steps: int) -> list[int]:
    """S + 1 levels from K down to 0, evenly spaced (rounded): the levels a S-step sampler visits."""
    if not 1 <= num_steps <= num_levels:
        raise ValueError(f"num_steps={num_steps} must lie in 1..{num_levels} (the levels the baseline was trained on).")
    return [round(num_levels * (num_steps - i) / num_steps) for i in range(num_steps + 1)]


@torch.no_grad()
def sample_gaussian(model: nn.Module, schedule: VPSchedule, x_T: Tensor, num_steps: int, rng: RandomSource = None) -> Tensor:
    """DDPM ancestral sampling over strided levels: x_s ~ q(x_s | x_k, x̂_0), x̂_0 = (x_k - σ_k ε_θ(x_k, k)) / √ᾱ_k."""
    alpha_bar = schedule.sqrt_alpha_bar.to(x_T.device) ** 2
    levels = strided_levels(schedule.num_timesteps, num_steps)
    x = x_T
    for k, s in itertools.pairwise(levels):  # x is at level k, the step goes to level s < k
        k_batch = torch.full((x.shape[0],), k, device=x.device, dtype=torch.long)
        x0_pred = (x - (1 - alpha_bar[k]).sqrt() * model(x, k_batch)) / alpha_bar[k].sqrt()
        alpha_step = alpha_bar[k] / alpha_bar[s]  # ᾱ_{k|s}
        mean = (alpha_bar[s].sqrt() * (1 - alpha_step) * x0_pred + alpha_step.sqrt() * (1 - alpha_bar[s]) * x) / (1 - alpha_bar[k])
        variance = (1 - alpha_step) * (1 - alpha_bar[s]) / (1 - alpha_bar[k])
        x = mean + (variance.sqrt() * randn(x.shape, x, rng) if s > 0 else 0)
    return x


def train_denoiser(
    model: nn.Module,
    schedule: VPSchedule,
    data: Callable[[int, torch.Generator], Tensor],  # data(batch_size, generator) -> (batch_size, ...) training data
    *,
    iterations: int,  # optimizer steps
    batch_size: int,  # points (or images) per step
    seed: int = 0,  # one generator draws the data, the levels and the noise, in turn
    lr: float = 1e-3,  # Adam peak learning rate, cosine decay to lr_min
    lr_min: float = 1e-5,
    ema_decay: float = 0.999,  # EMA of the weights, used for sampling
    log_every: int = 0,  # print the loss every N steps (0: never)
) -> nn.Module:
    """Adam on the DDPM loss; returns the EMA copy of the model (eval mode).

    All the randomness of training comes from one generator, so no two streams can coincide (with separately
    seeded generators for data and noise, equal seeds would make the noise equal the data's own offsets from
    the mode centres, and the task degenerate).
    """
    rng = torch.Generator().manual_seed(seed)
    ema = copy.deepcopy(model).requires_grad_(False).eval()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=iterations, eta_min=lr_min)
    for step in range(1, iterations + 1):
        loss = ddpm_loss(model, schedule, data(batch_size, rng), generator=rng)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        with torch.no_grad():
            torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - ema_decay)
        if log_every and step % log_every == 0:
            print(f"gaussian denoiser: step {step}/{iterations}, loss {loss.item():.4f}", flush=True)
    return ema
