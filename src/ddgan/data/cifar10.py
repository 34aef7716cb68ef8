"""CIFAR-10 train split (50k 32x32 RGB images, 10 classes) from torchvision."""
from pathlib import Path
from typing import Unpack

import torch
from torchvision.datasets import CIFAR10

from .datamodule import ImageDataModule, ImageSettings
from .errors import DataError
from .tensors import UInt8ImageDataset


def load_cifar10_train(data_dir: Path, *, download: bool) -> CIFAR10:
    """torchvision's CIFAR-10 train split under `data_dir`; DataError (one line, with the fix) if absent."""
    try:
        return CIFAR10(root=str(data_dir), train=True, download=download)
    except RuntimeError as error:  # torchvision: "Dataset not found or corrupted"
        raise DataError(
            f"CIFAR-10 not found or corrupted under {data_dir} (expected {data_dir / 'cifar-10-batches-py'}); "
            f"set data.download=true to download it, or point data.data_dir at a folder holding it"
        ) from error
    except OSError as error:  # network failures while downloading (URLError is an OSError)
        raise DataError(
            f"could not download CIFAR-10 to {data_dir} ({error}); download cifar-10-python.tar.gz "
            f"elsewhere, extract it into {data_dir} and set data.download=false"
        ) from error


class CIFAR10DataModule(ImageDataModule):
    """CIFAR-10 train split (50,000 images, 32x32 RGB, class labels 0..9); random h-flip as in the paper."""

    def __init__(
        self,
        *,
        data_dir: str,  # root holding (or receiving) cifar-10-batches-py/
        download: bool = True,  # download into data_dir in prepare_data() when missing
        **settings: Unpack[ImageSettings],  # sample_shape, loader settings, hflip (paper: yes), seed
    ) -> None:
        super().__init__(image_size=32, **settings)
        self.data_dir = Path(data_dir)
        self.download = download

    def prepare_data(self) -> None:
        """Download once per node (or fail at once with the fix when download=false and the data is absent)."""
        load_cifar10_train(self.data_dir, download=self.download)

    def build_train_dataset(self) -> UInt8ImageDataset:
        cifar = load_cifar10_train(self.data_dir, download=False)
        images = torch.from_numpy(cifar.data).permute(0, 3, 1, 2).contiguous()  # (50000, 3, 32, 32) uint8
        return UInt8ImageDataset(images, torch.tensor(cifar.targets))

    def dataset_classes(self) -> int:
        return 10
