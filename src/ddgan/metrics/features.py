"""The feature-extractor interface that every extractor implements (inception.py, vgg.py, extractors.DigitFeatures):
images (N, C, H, W), uint8 in [0, 255] or float in [-1, 1], to features (N, D) for FID / precision-recall, plus
class logits (N, K) for the Inception Score. Concrete extractors import this module; extractors.py (the registry of
extractors by name) imports them, so no two modules import each other.
"""
from collections.abc import Iterable

import torch
from torch import nn

from src.ddgan.data.tensors import model_range_to_uint8, uint8_to_model_range


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """uint8 images as they are; float images in [-1, 1] quantised to uint8 (as saving a PNG would)."""
    return images if images.dtype == torch.uint8 else model_range_to_uint8(images)


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 images scaled to float32 in [-1, 1]; float images as they are."""
    return uint8_to_model_range(images) if images.dtype == torch.uint8 else images.float()


class FeatureExtractor(nn.Module):
    """Images (N, C, H, W), uint8 or float in [-1, 1] -> features (N, num_features); logits optional.

    `name` identifies the extractor (weights included) in reference-statistics cache keys. forward() returns
    only the features, so an instance also serves as torchmetrics' custom `feature` module.
    """

    name: str
    num_features: int
    num_classes: int | None  # width of the logits, None when the extractor has none

    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features_and_logits(images)[0]


@torch.no_grad()
def extract_features(
    extractor: FeatureExtractor,
    images: torch.Tensor | Iterable,
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Features (N, D) and logits (N, K) or None, on the CPU, of an image tensor or of an iterable of batches
    (a DataLoader; tuples are taken as (images, labels, ...))."""
    device = device if device is not None else next(extractor.parameters()).device
    batches = images.split(batch_size) if isinstance(images, torch.Tensor) else images
    features, logits = [], []
    for batch in batches:
        batch = batch[0] if isinstance(batch, (tuple, list)) else batch
        batch_features, batch_logits = extractor.features_and_logits(batch.to(device))
        features.append(batch_features.float().cpu())
        if batch_logits is not None:
            logits.append(batch_logits.float().cpu())
    return torch.cat(features), (torch.cat(logits) if logits else None)
