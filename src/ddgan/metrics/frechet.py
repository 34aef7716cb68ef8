"""Fréchet distance between Gaussians fitted to two feature sets (FID, Heusel et al. 2017).

FID = ||mu_r - mu_g||^2 + tr(Sigma_r) + tr(Sigma_g) - 2 tr((Sigma_r Sigma_g)^{1/2}), all in float64.
tr((Sigma_r Sigma_g)^{1/2}) is the sum of square roots of the eigenvalues of the symmetric PSD matrix
Sigma_r^{1/2} Sigma_g Sigma_r^{1/2} (same spectrum as Sigma_r Sigma_g), so two `eigh` calls replace a general,
complex-valued sqrtm and no imaginary part can appear; round-off negatives are clamped to zero.
"""
from dataclasses import dataclass

import torch
from torchmetrics import Metric


@dataclass
class GaussianStatistics:
    """Mean mu (D,) and unbiased covariance sigma (D, D), float64, of `num_samples` feature vectors."""

    mu: torch.Tensor
    sigma: torch.Tensor
    num_samples: int

    def to(self, device: torch.device | str) -> "GaussianStatistics":
        return GaussianStatistics(self.mu.to(device, torch.float64), self.sigma.to(device, torch.float64),
                                  self.num_samples)


def statistics_from_sums(feature_sum: torch.Tensor, outer_sum: torch.Tensor, num_samples: int) -> GaussianStatistics:
    """Gaussian fit from sum_i f_i (D,), sum_i f_i f_i^T (D, D) and the count N (needs N >= 2)."""
    if num_samples < 2:
        raise ValueError(f"a covariance needs at least 2 feature vectors, got {num_samples}")
    mu = feature_sum.double() / num_samples
    sigma = (outer_sum.double() - num_samples * torch.outer(mu, mu)) / (num_samples - 1)
    return GaussianStatistics(mu, sigma, num_samples)


def gaussian_statistics(features: torch.Tensor) -> GaussianStatistics:
    """Gaussian fit (mean, unbiased covariance, as numpy.cov) of features (N, D)."""
    features = features.double()
    return statistics_from_sums(features.sum(0), features.T @ features, len(features))


def psd_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of a symmetric PSD matrix; eigenvalues below zero (round-off) are clamped."""
    eigenvalues, eigenvectors = torch.linalg.eigh(matrix)
    return (eigenvectors * eigenvalues.clamp(min=0).sqrt()) @ eigenvectors.T


def trace_sqrt_product(sigma_1: torch.Tensor, sigma_2: torch.Tensor) -> torch.Tensor:
    """tr((sigma_1 sigma_2)^{1/2}) = sum_i sqrt(lambda_i(sigma_1^{1/2} sigma_2 sigma_1^{1/2}))."""
    root_1 = psd_sqrt(sigma_1)
    middle = root_1 @ sigma_2 @ root_1
    return torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()


def frechet_distance(real: GaussianStatistics, fake: GaussianStatistics) -> float:
    """||mu_r - mu_g||^2 + tr(Sigma_r + Sigma_g) - 2 tr((Sigma_r Sigma_g)^{1/2}), in float64."""
    fake = fake.to(real.mu.device)
    mu_r, mu_g, sigma_r, sigma_g = real.mu.double(), fake.mu, real.sigma.double(), fake.sigma
    distance = (mu_r - mu_g).square().sum() + sigma_r.trace() + sigma_g.trace()
    return float(distance - 2 * trace_sqrt_product(sigma_r, sigma_g))


class FrechetDistance(Metric):
    """FID over features streamed in batches: update(features (N, D), real=...) then compute().

    States are per-split sums of f, f f^T (float64) and counts, reduced by `sum` across DDP ranks.
    With `real_statistics` (e.g. from a reference cache) the real side is fixed and real updates are refused;
    those statistics are a plain attribute, not a state, so DDP sync never multiplies them.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, num_features: int, *, real_statistics: GaussianStatistics | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_features = num_features
        for split in ("real", "fake"):
            self.add_state(f"{split}_sum", torch.zeros(num_features, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{split}_outer", torch.zeros(num_features, num_features, dtype=torch.float64),
                           dist_reduce_fx="sum")
            self.add_state(f"{split}_count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.real_statistics = None
        if real_statistics is not None:
            self.set_real_statistics(real_statistics)

    def set_real_statistics(self, statistics: GaussianStatistics) -> None:
        """Fix the real side to precomputed statistics (cached reference)."""
        if statistics.mu.shape != (self.num_features,):
            raise ValueError(f"real statistics have {statistics.mu.shape[0]} features, metric has {self.num_features}")
        self.real_statistics = statistics

    def update(self, features: torch.Tensor, real: bool) -> None:
        if features.ndim != 2 or features.shape[1] != self.num_features:
            raise ValueError(f"expected features (N, {self.num_features}), got {tuple(features.shape)}")
        if real and self.real_statistics is not None:
            raise RuntimeError("real statistics are fixed (set_real_statistics); update only with real=False")
        split = "real" if real else "fake"
        features = features.detach().to(self.fake_sum.device, torch.float64)
        setattr(self, f"{split}_sum", getattr(self, f"{split}_sum") + features.sum(0))
        setattr(self, f"{split}_outer", getattr(self, f"{split}_outer") + features.T @ features)
        setattr(self, f"{split}_count", getattr(self, f"{split}_count") + len(features))

    def split_statistics(self, split: str) -> GaussianStatistics:
        """Gaussian fit of the accumulated (and, after compute's sync, all-rank) features of 'real' or 'fake'."""
        return statistics_from_sums(getattr(self, f"{split}_sum"), getattr(self, f"{split}_outer"),
                                    int(getattr(self, f"{split}_count")))

    def compute(self) -> torch.Tensor:
        real = self.real_statistics if self.real_statistics is not None else self.split_statistics("real")
        fake = self.split_statistics("fake")
        return torch.tensor(frechet_distance(real.to(self.fake_sum.device), fake), dtype=torch.float64)
