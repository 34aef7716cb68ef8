"""StackedMNIST mode coverage: each RGB channel classified as a digit, mode = 100a + 10b + c (1000 modes).

Reported as in the paper's table: the number of modes with at least one sample, and
KL(p_generated || uniform) = sum_m p_m log(p_m / (1/1000)) in nats, where p is the histogram of generated modes.
Empty bins contribute 0 (0 log 0 = 0), so the KL is always finite (0 for a perfectly even histogram, log 1000 at
most, when every sample falls in one mode); the reverse direction KL(uniform || p) would be infinite as soon as
one mode is missed.
"""
import math
from typing import NamedTuple

import torch
from torchmetrics import Metric

from src.ddgan.data.stacked import MODE_WEIGHTS

from .digit_classifier import DigitClassifier
from .features import to_model_range

NUM_STACKED_MODES = 1000


class ModeCoverageResult(NamedTuple):
    modes_covered: int  # modes with at least one generated sample
    kl_to_uniform: float  # KL(p_generated || uniform over the modes), nats


@torch.no_grad()
def predict_stacked_modes(classifier: DigitClassifier, images: torch.Tensor, *, batch_size: int = 1024) -> torch.Tensor:
    """Modes (N,) = 100a + 10b + c of stacked digits images (N, 3, H, W) (uint8 or [-1, 1]), a, b, c the
    classifier's arg-max digits of the R, G, B channels. (DigitFeatures' joint logits give the same by arg-max.)"""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected RGB images (N, 3, H, W), got {tuple(images.shape)}")
    classifier.eval()
    device = next(classifier.parameters()).device
    modes = []
    for batch in images.split(batch_size):
        n, c, h, w = batch.shape
        grey = to_model_range(batch.to(device)).reshape(n * c, 1, h, w)
        digits = classifier(grey).argmax(dim=1).reshape(n, c).cpu()  # (n, 3) channel digits
        modes.append((digits * MODE_WEIGHTS).sum(dim=1))
    return torch.cat(modes)


def mode_histogram(modes: torch.Tensor, num_modes: int = NUM_STACKED_MODES) -> torch.Tensor:
    """Counts (num_modes,) of each mode index in modes (N,)."""
    return torch.bincount(modes.long().flatten().cpu(), minlength=num_modes)


def mode_coverage(histogram: torch.Tensor) -> ModeCoverageResult:
    """Modes covered and KL(p || uniform) of a mode histogram (num_modes,); empty bins contribute 0."""
    counts = histogram.double()
    if counts.sum() <= 0:
        raise ValueError("mode coverage of an empty histogram")
    p = counts / counts.sum()
    nonzero = p[p > 0]
    kl = (nonzero * (nonzero.log() + math.log(len(p)))).sum()
    return ModeCoverageResult(int((counts > 0).sum()), float(kl))


class ModeCoverage(Metric):
    """Mode histogram streamed in batches (update(modes (N,))), summed across DDP ranks; compute() gives
    {"modes_covered", "kl_to_uniform"}."""

    is_differentiable = False
    full_state_update = False

    def __init__(self, *, num_modes: int = NUM_STACKED_MODES, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_modes = num_modes
        self.add_state("histogram", torch.zeros(num_modes, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, modes: torch.Tensor) -> None:
        if modes.numel() and (modes.min() < 0 or modes.max() >= self.num_modes):
            raise ValueError(f"modes must lie in [0, {self.num_modes}), got [{int(modes.min())}, {int(modes.max())}]")
        self.histogram += torch.bincount(modes.long().flatten(), minlength=self.num_modes).to(self.histogram.device)

    def compute(self) -> dict[str, torch.Tensor]:
        result = mode_coverage(self.histogram)
        return {"modes_covered": torch.tensor(result.modes_covered),
                "kl_to_uniform": torch.tensor(result.kl_to_uniform, dtype=torch.float64)}
