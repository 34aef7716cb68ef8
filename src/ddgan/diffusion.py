"""The discrete variance-preserving schedule of DDGAN: forward pairs and the Gaussian posterior.

Level convention (used everywhere in this package):
    Levels k = 0..T, level 0 is the data x_0 and level T is (almost) pure noise.
    A *pair index* t ∈ {0, …, T-1} names the pair (x_t, x_{t+1}). The generator sees x_{t+1}
    and t, predicts x_0, and x_t is drawn from the posterior q(x_t | x_{t+1}, x_0).
    So `t` is always the index of the *lower* level of a step.

The schedule discretises the VP SDE (beta_min, beta_max) at times
    τ_k = (k / T)(1 - eps) + eps,          ᾱ(τ) = exp(-½ τ² (β_max - β_min) - τ β_min),
    β_k = 1 - ᾱ(τ_k) / ᾱ(τ_{k-1})  for k ≥ 1,  and β_0 = 1e-8 (so level 0 is the data).
Coefficients are computed once in float64 and kept as float32 buffers.
"""
import warnings

import torch
from torch import Tensor, nn

MAX_PAPER_TIMESTEPS = 8


def vp_betas(num_timesteps: int, beta_min: float = 0.1, beta_max: float = 20.0, eps: float = 1e-3) -> Tensor:
    """Per-step β_k for k = 0..T (float64), with β_0 = 1e-8."""
    tau = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps * (1 - eps) + eps
    log_alpha_bar = -0.5 * tau**2 * (beta_max - beta_min) - tau * beta_min
    betas = 1 - torch.exp(log_alpha_bar[1:] - log_alpha_bar[:-1])
    return torch.cat([torch.tensor([1e-8], dtype=torch.float64), betas])


def validate_schedule(num_timesteps: int, beta_min: float, beta_max: float, eps: float) -> None:
    """Raise a one-line ValueError for a schedule outside what the method allows."""
    if not isinstance(num_timesteps, int) or num_timesteps < 1:
        raise ValueError(
            f"diffusion.num_timesteps={num_timesteps!r} is invalid: it must be an integer >= 1 "
            "(the paper uses 1, 2, 4 or 8)."
        )
    if not 0 < beta_min < beta_max:
        raise ValueError(f"diffusion.beta_min={beta_min} and beta_max={beta_max}: need 0 < beta_min < beta_max.")
    if not 0 < eps < 1:
        raise ValueError(f"diffusion.eps={eps} is invalid: it must lie in (0, 1).")
    if num_timesteps > MAX_PAPER_TIMESTEPS:
        warnings.warn(
            f"diffusion.num_timesteps={num_timesteps} is outside the paper's regime (T <= {MAX_PAPER_TIMESTEPS}); "
            "small steps make the denoising distribution nearly Gaussian and the GAN has little to model.",
            stacklevel=2,
        )


def extract(coefficients: Tensor, t: Tensor, ndim: int) -> Tensor:
    """coefficients[t] reshaped to (N, 1, …, 1) so it broadcasts over a batch of `ndim` dims."""
    return coefficients[t].reshape(-1, *([1] * (ndim - 1)))


class VPSchedule(nn.Module):
    """Discrete VP diffusion with T steps: q(x_{k} | x_{k-1}), q(x_k | x_0) and q(x_t | x_{t+1}, x_0).

    Buffers (float32), index = level k unless noted:
        sqrt_alpha_bar[k], sigma_bar[k]        q(x_k | x_0) = N(sqrt_alpha_bar x_0, sigma_bar² I)
        sqrt_alpha[k], sqrt_beta[k]            q(x_k | x_{k-1}) = N(sqrt_alpha x_{k-1}, β_k I)
        posterior_coef_x0[t], posterior_coef_xtp1[t], posterior_variance[t], posterior_log_variance[t]
                                               q(x_t | x_{t+1}, x_0), indexed by pair index t
    """

    def __init__(
        self,
        num_timesteps: int = 4,  # T, number of denoising steps
        beta_min: float = 0.1,  # VP SDE β(τ) at τ = 0
        beta_max: float = 20.0,  # VP SDE β(τ) at τ = 1
        eps: float = 1e-3,  # smallest diffusion time
    ):
        super().__init__()
        validate_schedule(num_timesteps, beta_min, beta_max, eps)
        self.num_timesteps = num_timesteps
        # β and 1 - β are rounded to float32 as in the released code: this keeps its exact numbers
        # (1 - β_k is tiny for large steps) and makes level 0 the data exactly (1 - 1e-8 → 1).
        betas = vp_betas(num_timesteps, beta_min, beta_max, eps).float().double()  # levels 0..T
        alphas = (1 - betas).float().double()
        alpha_bar = torch.cumprod(alphas, dim=0)

        # Posterior over the T steps k = 1..T, indexed by pair index t = k - 1.
        step_betas = betas[1:]
        step_alpha_bar = torch.cumprod(alphas[1:], dim=0)  # ᾱ at levels 1..T (without β_0)
        step_alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), step_alpha_bar[:-1]])
        posterior_variance = step_betas * (1 - step_alpha_bar_prev) / (1 - step_alpha_bar)

        coefficients = {
            "sqrt_alpha_bar": alpha_bar.sqrt(),
            "sigma_bar": (1 - alpha_bar).sqrt(),
            "sqrt_alpha": alphas.sqrt(),
            "sqrt_beta": betas.sqrt(),
            "posterior_coef_x0": step_betas * step_alpha_bar_prev.sqrt() / (1 - step_alpha_bar),
            "posterior_coef_xtp1": (1 - step_alpha_bar_prev) * alphas[1:].sqrt() / (1 - step_alpha_bar),
            "posterior_variance": posterior_variance,
            "posterior_log_variance": posterior_variance.clamp(min=1e-20).log(),
        }
        for name, value in coefficients.items():
            self.register_buffer(name, value.float(), persistent=False)

    def q_sample(self, x_0: Tensor, k: Tensor, noise: Tensor | None = None) -> Tensor:
        """x_k ~ q(x_k | x_0) for levels k (N,)."""
        noise = torch.randn_like(x_0) if noise is None else noise
        return extract(self.sqrt_alpha_bar, k, x_0.ndim) * x_0 + extract(self.sigma_bar, k, x_0.ndim) * noise

    def q_sample_pair(self, x_0: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """A training pair (x_t, x_{t+1}): x_t ~ q(x_t | x_0), then one forward step to x_{t+1}."""
        x_t = self.q_sample(x_0, t)
        x_tp1 = extract(self.sqrt_alpha, t + 1, x_0.ndim) * x_t + extract(self.sqrt_beta, t + 1, x_0.ndim) * torch.randn_like(x_t)
        return x_t, x_tp1

    def posterior_mean_variance(self, x_0: Tensor, x_tp1: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Mean, variance and clipped log-variance of q(x_t | x_{t+1}, x_0)."""
        mean = extract(self.posterior_coef_x0, t, x_0.ndim) * x_0 + extract(self.posterior_coef_xtp1, t, x_0.ndim) * x_tp1
        return mean, extract(self.posterior_variance, t, x_0.ndim), extract(self.posterior_log_variance, t, x_0.ndim)

    def sample_posterior(self, x_0: Tensor, x_tp1: Tensor, t: Tensor, noise: Tensor | None = None) -> Tensor:
        """x_t ~ q(x_t | x_{t+1}, x_0); the step to level 0 (t = 0) adds no noise."""
        mean, _, log_variance = self.posterior_mean_variance(x_0, x_tp1, t)
        noise = torch.randn_like(x_0) if noise is None else noise
        nonzero = (t > 0).to(x_0.dtype).reshape(-1, *([1] * (x_0.ndim - 1)))
        return mean + nonzero * torch.exp(0.5 * log_variance) * noise

    def extra_repr(self) -> str:
        return f"num_timesteps={self.num_timesteps}"


def sample_timesteps(batch_size: int, num_timesteps: int, device: torch.device | str, generator: torch.Generator | None = None) -> Tensor:
    """Pair indices t ~ Uniform{0, …, T-1}."""
    return torch.randint(0, num_timesteps, (batch_size,), device=device, generator=generator)

