"""What other FID tools exchange and how the released DDGAN code scored: pytorch-fid statistics files (`.npz` with
`mu`, `sigma`), a JPEG encode/decode of the samples (the released test_ddgan.py saved them as .jpg at PIL's default
quality 75) and the released Inception Score protocol.

Inception Score protocols (metrics.json `is_protocol`):
- "salimans" (default): softmax over the 1008 logits without the final layer's bias, as the original TF code of
  Salimans et al. 2016; mean and std over `is_splits` (10) consecutive chunks.
- "released": the released DDGAN code (pytorch_fid/inception_score.py, via tfgan's TF-hub Inception): the biased
  logits' first 1000 classes, softmax over those, one split (its __main__), so no std.
"""
import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .frechet import GaussianStatistics

IS_PROTOCOLS = {"salimans": ("unbiased", None), "released": ("released", 1)}  # name -> (logits, splits: None = is_splits)


def validate_jpeg_quality(quality) -> int | None:
    """None (lossless), or the JPEG quality as an int in 1..100; ValueError otherwise."""
    if quality is None:
        return None
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ValueError(f"jpeg_quality={quality!r} is invalid: expected an integer in 1..100 (75: PIL's default, "
                         "as the released code saved its samples) or null for lossless")
    return quality


def validate_is_protocol(protocol: str) -> str:
    if protocol not in IS_PROTOCOLS:
        raise ValueError(f"is_protocol={protocol!r} is invalid: choose one of {list(IS_PROTOCOLS)}")
    return protocol


def jpeg_roundtrip(images: torch.Tensor, quality: int) -> torch.Tensor:
    """uint8 images (N, C, H, W), C = 1 or 3, after a PIL JPEG encode (`quality`, PIL's default 4:2:0 chroma
    subsampling) and decode, as saving them to .jpg and reading them back would."""
    out = []
    for image in images.cpu():
        array = image.permute(1, 2, 0).numpy()
        buffer = io.BytesIO()
        Image.fromarray(array[..., 0] if array.shape[2] == 1 else array).save(buffer, format="JPEG", quality=quality)
        decoded = np.asarray(Image.open(buffer))
        out.append(torch.from_numpy(decoded.reshape(array.shape).copy()).permute(2, 0, 1))
    return torch.stack(out).to(images.device)


def save_statistics(path: str | Path, statistics: GaussianStatistics) -> Path:
    """Write FID statistics as pytorch-fid does (np.savez_compressed with float64 `mu` (D,), `sigma` (D, D)), plus
    `num_samples`, which pytorch-fid ignores."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as file:  # np.savez would append .npz to a name without it
        np.savez_compressed(file, mu=statistics.mu.cpu().double().numpy(), sigma=statistics.sigma.cpu().double().numpy(),
                            num_samples=np.int64(statistics.num_samples))
    return path


def load_statistics(path: str | Path, num_features: int, *, what: str = "reference") -> GaussianStatistics:
    """FID statistics of a pytorch-fid style `.npz` (mu (D,), sigma (D, D); num_samples if we wrote it, else 0),
    checked against the extractor's `num_features`; ValueError naming the file and the key otherwise."""
    with np.load(path) as archive:
        missing = [key for key in ("mu", "sigma") if key not in archive]
        if missing:
            raise ValueError(f"{what}={path}: no {' or '.join(missing)} array (expected pytorch-fid statistics: mu, "
                             f"sigma; or images under arr_0), found {sorted(archive.files)}")
        mu, sigma = archive["mu"], archive["sigma"]
        num_samples = int(archive["num_samples"]) if "num_samples" in archive else 0
    if mu.shape != (num_features,):
        raise ValueError(f"{what}={path}: mu has shape {mu.shape}, expected ({num_features},) for these features")
    if sigma.shape != (num_features, num_features):
        raise ValueError(f"{what}={path}: sigma has shape {sigma.shape}, expected ({num_features}, {num_features})")
    return GaussianStatistics(torch.from_numpy(mu).double(), torch.from_numpy(sigma).double(), num_samples)
