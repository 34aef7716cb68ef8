"""scikit-learn's bundled 8×8 digits as images: the offline stand-in for MNIST."""
import torch
import torch.nn.functional as F


def load_digit_images(resolution: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 scikit-learn digits, bilinearly upsampled.

    Returns:
        images: (1797, 1, resolution, resolution) float32 in [-1, 1].
        labels: (1797,) long in 0..9.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # [0, 1]
    if resolution != 8:
        images = F.interpolate(images, size=(resolution, resolution), mode="bilinear", align_corners=False)
    return (images.clamp(0, 1) * 2 - 1).contiguous(), torch.tensor(digits.target, dtype=torch.long)
