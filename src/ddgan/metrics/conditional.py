"""Metrics of a class-conditional generator: conditional accuracy and intra-class FID.

conditional accuracy: the share of samples generated for class c that the data set's classifier assigns to c.
intra-class FID: the mean over classes of the FID between the generated and the real images of one class, in the
classifier's features (as in the conditional-GAN literature, e.g. Miyato & Koyama 2018); classes with fewer than two
images on either side are left out, and data sets of more than MAX_INTRA_CLASSES classes get none (too few samples
per class for a covariance).
"""
import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from .frechet import GaussianStatistics, frechet_distance, gaussian_statistics

MAX_INTRA_CLASSES = 100


def class_statistics(features: torch.Tensor, labels: torch.Tensor) -> dict[int, GaussianStatistics]:
    """Gaussian statistics of the features (N, D) of each label with at least two images."""
    return {int(c): gaussian_statistics(features[labels == c]) for c in labels.unique() if (labels == c).sum() >= 2}


def intra_class_fid(real: dict[int, GaussianStatistics], features: torch.Tensor, labels: torch.Tensor) -> float | None:
    """Mean FID over the classes present on both sides (None when there are none)."""
    generated = class_statistics(features, labels)
    distances = [frechet_distance(real[c], generated[c]) for c in sorted(generated) if c in real]
    return sum(distances) / len(distances) if distances else None


class ConditionalScores(Metric):
    """update(features (N, D), predicted classes (N,), asked classes (N,)); compute() gives
    {"conditional_accuracy", "intra_class_fid"} (the FID None without a real class reference or with more than
    MAX_INTRA_CLASSES classes). Synced over DDP ranks."""

    is_differentiable = False
    full_state_update = False

    def __init__(self, *, num_classes: int, real_classes: dict[int, GaussianStatistics] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.real_classes = real_classes if num_classes <= MAX_INTRA_CLASSES else None
        self.add_state("correct", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("features", [], dist_reduce_fx="cat")
        self.add_state("labels", [], dist_reduce_fx="cat")

    def update(self, features: torch.Tensor, predicted: torch.Tensor, labels: torch.Tensor) -> None:
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(f"class labels must lie in [0, {self.num_classes}), got "
                             f"[{int(labels.min())}, {int(labels.max())}]")
        self.correct += (predicted.to(labels.device) == labels).sum()
        self.total += labels.numel()
        if self.real_classes is not None:
            self.features.append(features.double())
            self.labels.append(labels)

    def compute(self) -> dict[str, float | None]:
        if not self.total:
            raise ValueError("conditional metrics of no samples")
        fid = None
        if self.real_classes is not None and self.labels:
            fid = intra_class_fid(self.real_classes, dim_zero_cat(self.features), dim_zero_cat(self.labels))
        return {"conditional_accuracy": float(self.correct) / float(self.total), "intra_class_fid": fid}
