"""Pixels to model tensors in [-1, 1], and a dataset over an in-memory uint8 image tensor."""
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

NO_LABEL = -1  # label of datasets without classes


def uint8_to_model_range(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 pixels in [0, 255] to float32 in [-1, 1]."""
    return pixels.to(torch.float32) / 127.5 - 1.0


def model_range_to_uint8(images: torch.Tensor) -> torch.Tensor:
    """The inverse: float in [-1, 1] to uint8 pixels, rounding to nearest (as saving a PNG does), same layout."""
    return ((images.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


def pil_to_model_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image to a (3, H, W) float32 tensor in [-1, 1]."""
    return uint8_to_model_range(torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1))


class UInt8ImageDataset(Dataset):
    """Items (image (C, H, W) float32 in [-1, 1], int label) from uint8 images (N, C, H, W) and labels (N,).

    The whole set stays in memory as uint8 (CIFAR-10's 50k images: 150 MB) and is scaled per item.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or len(images) != len(labels):
            raise ValueError(f"expected uint8 images (N, C, H, W) and N labels, got {images.dtype} "
                             f"{tuple(images.shape)} and {tuple(labels.shape)}")
        self.images = images
        self.labels = labels.long()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return uint8_to_model_range(self.images[index]), int(self.labels[index])
