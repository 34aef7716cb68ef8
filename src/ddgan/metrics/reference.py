"""Real-data reference features and FID statistics, computed once per (data set, extractor) and cached on disk.

The cache file is <cache_dir>/<dataset_name>__<extractor.name>.pt; the extractor name carries a weights digest
where weights can change (DigitFeatures), so a retrained classifier never reuses stale statistics.
Files are written to a temporary name and renamed, so concurrent ranks never read a half-written file.
"""
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from src.ddgan.checkpoint import read_checkpoint
from src.ddgan.files import atomic_torch_save

from .features import FeatureExtractor, extract_features
from .frechet import GaussianStatistics, gaussian_statistics


@dataclass
class ReferenceSet:
    """Real features (N, D) float32 (None when not stored) and their Gaussian statistics."""

    statistics: GaussianStatistics
    features: torch.Tensor | None = None


def reference_path(cache_dir: str | Path, dataset_name: str, extractor_name: str) -> Path:
    """<cache_dir>/<dataset_name>__<extractor_name>.pt with characters other than [A-Za-z0-9._-] replaced by '_'."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", f"{dataset_name}__{extractor_name}")
    return Path(cache_dir) / f"{safe}.pt"


def save_reference(path: str | Path, reference: ReferenceSet) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"mu": reference.statistics.mu.cpu(), "sigma": reference.statistics.sigma.cpu(),
               "num_samples": reference.statistics.num_samples,
               "features": None if reference.features is None else reference.features.cpu()}
    return atomic_torch_save(payload, path)


def load_reference(path: str | Path) -> ReferenceSet:
    payload = read_checkpoint(path, what="reference cache")
    statistics = GaussianStatistics(payload["mu"], payload["sigma"], int(payload["num_samples"]))
    return ReferenceSet(statistics, payload["features"])


def load_or_compute_reference(
    cache_dir: str | Path,
    dataset_name: str,
    extractor: FeatureExtractor,
    real_images: Callable[[], torch.Tensor | Iterable],
    *,
    store_features: bool = True,  # keep the (N, D) features too (precision / recall need them)
    batch_size: int = 256,  # images per extractor call when real_images() is a tensor
    device: str | torch.device | None = None,  # where the extractor runs (default: where its weights are)
) -> ReferenceSet:
    """The cached reference of `dataset_name` under `extractor`, or computed from real_images() and cached.

    real_images is called only on a cache miss; it returns an image tensor (N, C, H, W) or an iterable of batches
    (a DataLoader). Under DDP, call it on rank zero first (then barrier) to compute the features once.
    """
    path = reference_path(cache_dir, dataset_name, extractor.name)
    if path.is_file():
        reference = load_reference(path)
        if reference.features is not None or not store_features:
            return reference
    features, _ = extract_features(extractor, real_images(), batch_size=batch_size, device=device)
    reference = ReferenceSet(gaussian_statistics(features), features if store_features else None)
    save_reference(path, reference)
    return reference
