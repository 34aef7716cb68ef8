"""Stacked digits, 1000 modes: three independently drawn digits as the R, G, B channels.

StackedMNIST (the paper's mode-coverage benchmark) stacks MNIST training digits padded 28 -> 32;
stacked_digits stacks scikit-learn's bundled 8x8 digits upsampled, an offline stand-in.
Item i is the digits (a_i, b_i, c_i) drawn once from a seeded torch.Generator, composed lazily per item;
its label is 100 * label(a_i) + 10 * label(b_i) + label(c_i).
"""
from pathlib import Path
from typing import Unpack

import torch
from torch.utils.data import Dataset, TensorDataset

from .datamodule import ImageDataModule, ImageSettings
from .digits import load_digit_images
from .mnist import load_mnist
from .tensors import uint8_to_model_range

MODE_WEIGHTS = torch.tensor([100, 10, 1])  # label = 100a + 10b + c over the (R, G, B) digit labels
NUM_STACKED_CLASSES = 1000  # the labels 100a + 10b + c


def draw_digit_triples(num_digits: int, num_images: int, seed: int) -> torch.Tensor:
    """(num_images, 3) long indices into a digit set, drawn uniformly with replacement; fixed by `seed`."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, num_digits, (num_images, 3), generator=generator)


class StackedDigitsDataset(Dataset):
    """Items (image (3, H, W) float32 in [-1, 1], label 100a + 10b + c) stacking three digits as RGB.

    Args:
        digits: (M, H, W) uint8 in [0, 255] or float in [-1, 1]; one grey digit per row.
        digit_labels: (M,) long in 0..9.
        num_images: dataset length.
        seed: seeds the digit triples; the same seed gives the same images.
    """

    def __init__(self, digits: torch.Tensor, digit_labels: torch.Tensor, *, num_images: int, seed: int) -> None:
        if digits.ndim != 3 or len(digits) != len(digit_labels):
            raise ValueError(f"expected digits (M, H, W) and M labels, got {tuple(digits.shape)}, "
                             f"{tuple(digit_labels.shape)}")
        self.digits = digits
        self.digit_labels = digit_labels.long()
        self.triples = draw_digit_triples(len(digits), num_images, seed)  # (num_images, 3)

    def __len__(self) -> int:
        return len(self.triples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        triple = self.triples[index]  # (3,) digit indices for R, G, B
        channels = self.digits[triple]  # (3, H, W)
        image = uint8_to_model_range(channels) if channels.dtype == torch.uint8 else channels.float()
        return image, int((self.digit_labels[triple] * MODE_WEIGHTS).sum())


class StackedMNISTDataModule(ImageDataModule):
    """StackedMNIST: 32x32 RGB images of three MNIST training digits, 1000 modes (label 100a + 10b + c)."""

    def __init__(
        self,
        *,
        data_dir: str,  # root holding (or receiving) torchvision's MNIST/
        download: bool = True,  # download into data_dir in prepare_data() when missing
        num_images: int = 120_000,  # dataset length (paper: 120k)
        **settings: Unpack[ImageSettings],  # sample_shape, loader settings, hflip (digits: no), seed (also the triples)
    ) -> None:
        super().__init__(image_size=32, **settings)
        self.data_dir = Path(data_dir)
        self.download = download
        self.num_images = num_images

    def prepare_data(self) -> None:
        """Download once per node (or fail at once with the fix when download=false and the data is absent)."""
        load_mnist(self.data_dir, download=self.download)

    def build_train_dataset(self) -> StackedDigitsDataset:
        digits, labels = load_mnist(self.data_dir, download=False)
        return StackedDigitsDataset(digits, labels, num_images=self.num_images, seed=self.seed)

    def dataset_classes(self) -> int:
        return NUM_STACKED_CLASSES


class StackedDigitsDataModule(ImageDataModule):
    """Offline 1000-mode set: three scikit-learn digits as RGB, upsampled to image_size; no download, no data_dir."""

    def __init__(
        self,
        *,
        image_size: int = 32,  # digits are upsampled (bilinear) from 8x8 to this
        num_images: int = 60_000,  # dataset length
        **settings: Unpack[ImageSettings],  # sample_shape, loader settings, hflip (digits: no), seed (also the triples)
    ) -> None:
        super().__init__(image_size=image_size, **settings)
        self.num_images = num_images

    def build_train_dataset(self) -> StackedDigitsDataset:
        digits, labels = load_digit_images(self.image_size)  # (1797, 1, R, R) in [-1, 1]
        return StackedDigitsDataset(digits[:, 0], labels, num_images=self.num_images, seed=self.seed)

    def dataset_classes(self) -> int:
        return NUM_STACKED_CLASSES


class DigitsDataModule(ImageDataModule):
    """Offline 10-class set: scikit-learn's 1,797 digits (labels 0..9), upsampled to image_size, grey (num_channels
    1) or repeated as RGB (3); no download, no data_dir."""

    def __init__(
        self,
        *,
        image_size: int = 32,  # digits are upsampled (bilinear) from 8x8 to this
        **settings: Unpack[ImageSettings],  # num_channels (1 grey, 3 RGB), sample_shape, loader settings, seed
    ) -> None:
        super().__init__(image_size=image_size, **settings)

    def build_train_dataset(self) -> TensorDataset:
        digits, labels = load_digit_images(self.image_size)  # (1797, 1, R, R) in [-1, 1]
        return TensorDataset(digits.expand(-1, self.sample_shape[0], -1, -1).contiguous(), labels)

    def dataset_classes(self) -> int:
        return 10
