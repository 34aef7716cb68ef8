"""Gaussian mixtures in 2-D (the 25-Gaussians benchmark) and their quality / mode-coverage metrics."""
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

GRID_25 = [[float(x), float(y)] for x, y in itertools.product((-4, -2, 0, 2, 4), repeat=2)]


def validate_centers(centers) -> Tensor:
    """Centers as a (M, 2) float tensor; a one-line ValueError for anything that is not a list of pairs."""
    try:
        tensor = torch.as_tensor([[float(c) for c in pair] for pair in centers], dtype=torch.float32)
    except (TypeError, ValueError):
        tensor = None
    if tensor is None or tensor.ndim != 2 or tensor.shape[0] < 1 or tensor.shape[1] != 2:
        raise ValueError(
            f"data.centers={centers!r} is invalid: give a non-empty list of [x, y] pairs, "
            "e.g. data.centers='[[0,0],[2,2]]'."
        )
    return tensor


def sample_mixture(centers: Tensor, std: float, num_samples: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """num_samples points from the equal-weight mixture of N(center, std² I); returns (points, mode index)."""
    modes = torch.randint(0, centers.shape[0], (num_samples,), generator=generator)
    return centers[modes] + std * torch.randn(num_samples, centers.shape[1], generator=generator), modes


@dataclass(frozen=True)
class Mixture:
    """An equal-weight mixture of N(center, std² I) as training data, in its own units; the networks see points × scale.

    The one place where `scale` is applied (to_network: data, mode centers) or undone (from_network: samples, before
    metrics and plots, which are in the mixture's units).
    """

    centers: Tensor  # (M, 2) mode centers
    std: float  # standard deviation of every mode
    scale: float = 1.0  # networks' units per mixture unit

    @classmethod
    def from_config(cls, data: Mapping) -> "Mixture | None":
        """The mixture of a data config (data/gaussians25.yaml's keys; centers null: the 5×5 grid); None for other data."""
        if "centers" not in data:
            return None
        centers = data["centers"]
        return cls(validate_centers(GRID_25 if centers is None else centers), float(data["std"]), float(data.get("scale", 1.0)))

    def sample(self, num_samples: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """(points in the networks' units, mode index) of num_samples draws."""
        points, modes = sample_mixture(self.centers, self.std, num_samples, generator=generator)
        return self.to_network(points), modes

    def to_network(self, points: Tensor) -> Tensor:
        return points * self.scale

    def from_network(self, samples: Tensor) -> Tensor:
        return samples / self.scale

    def network_centers(self) -> Tensor:
        return self.to_network(self.centers)

    def coordinate_std(self) -> float:
        """Per-coordinate std of the points in the mixture's units (the root mean of both coordinates' variances)."""
        variance = self.centers.double().var(dim=0, unbiased=False).mean() + self.std**2
        return math.sqrt(float(variance))


def to_data_units(samples: Tensor, mixture: Mixture | None) -> Tensor:
    """Samples in the networks' units back in the data's: a mixture's from_network; other data's as they are."""
    return mixture.from_network(samples) if mixture is not None else samples


def mixture_metrics(samples: Tensor, centers: Tensor, std: float, quality_radius_std: float = 3.0, coverage_share: float = 0.25,
                    labels: Tensor | None = None) -> dict[str, float]:
    """Quality and coverage of 2-D samples (in the benchmark's units) against a Gaussian mixture.

    A sample is *high quality* when it lies within `quality_radius_std` std of its nearest center;
    a mode is *covered* when it receives at least `coverage_share` of its uniform share of the
    high-quality samples; `mode_kl` is KL(p_modes || uniform) of every sample's nearest mode. With the mode indices
    `labels` a class-conditional model was asked for: `conditional_accuracy`, the share whose nearest mode is theirs.
    """
    distances = torch.cdist(samples.double(), centers.double())
    nearest_distance, nearest = distances.min(dim=1)
    high_quality = nearest_distance <= quality_radius_std * std
    num_modes = centers.shape[0]
    counts = torch.bincount(nearest[high_quality], minlength=num_modes).double()
    num_high_quality = int(counts.sum())
    covered = counts >= coverage_share * num_high_quality / num_modes if num_high_quality else torch.zeros(num_modes, dtype=torch.bool)
    p = torch.bincount(nearest, minlength=num_modes).double() / samples.shape[0]
    p = p[p > 0]
    kl = float((p * (p * num_modes).log()).sum())
    return {
        "modes_covered": int(covered.sum()),
        "num_modes": num_modes,
        "high_quality_fraction": num_high_quality / samples.shape[0],
        "mode_kl": kl,
    } | ({"conditional_accuracy": float((nearest == labels.to(nearest.device)).double().mean())} if labels is not None else {})
