"""STL-10 from torchvision: the 100,000 unlabelled 96x96 images (WaveDiff's STL-10 run, resized to 64 px), or the
labelled train split (5,000 images, 10 classes)."""
from pathlib import Path
from typing import Unpack

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from torchvision.datasets import STL10

from .datamodule import ImageDataModule, ImageSettings
from .errors import DataError
from .tensors import uint8_to_model_range

SPLITS = ("unlabeled", "train", "train+unlabeled")


def load_stl10(data_dir: Path, split: str, *, download: bool) -> STL10:
    """torchvision's STL-10 `split` under `data_dir`; DataError (one line, with the fix) if absent."""
    if split not in SPLITS:
        raise DataError(f"data.split={split!r} is not an STL-10 split: choose one of {', '.join(SPLITS)}")
    try:
        return STL10(root=str(data_dir), split=split, download=download)
    except RuntimeError as error:  # torchvision: "Dataset not found or corrupted"
        raise DataError(f"STL-10 not found or corrupted under {data_dir} (expected {data_dir / 'stl10_binary'}); set "
                        "data.download=true to download it, or point data.data_dir at a folder holding it") from error
    except OSError as error:  # network failures while downloading
        raise DataError(f"could not download STL-10 to {data_dir} ({error}); download stl10_binary.tar.gz elsewhere, "
                        f"extract it into {data_dir} and set data.download=false") from error


class ResizedUInt8Images(Dataset):
    """Items (image (C, S, S) float32 in [-1, 1], int label) from uint8 images (N, C, H, W), each resized to S per item
    (bilinear with antialiasing, as torchvision's Resize of a PIL image)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, image_size: int) -> None:
        self.images, self.labels, self.image_size = images, labels, image_size

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = uint8_to_model_range(self.images[index])
        if image.shape[-1] != self.image_size:
            image = F.interpolate(image[None], size=(self.image_size, self.image_size), mode="bilinear",
                                  antialias=True, align_corners=False)[0].clamp(-1, 1)
        return image, int(self.labels[index])


class STL10DataModule(ImageDataModule):
    """STL-10 at image_size (default 64, from 96); `split` unlabeled (WaveDiff), train (labelled) or both."""

    def __init__(
        self,
        *,
        data_dir: str,  # root holding (or receiving) stl10_binary/
        download: bool = True,  # download into data_dir in prepare_data() when missing
        split: str = "unlabeled",  # unlabeled (100k, labels -1) | train (5k, 10 classes) | train+unlabeled
        image_size: int = 64,  # the 96 px images are resized to this
        **settings: Unpack[ImageSettings],  # sample_shape, loader settings, hflip (WaveDiff: yes), seed
    ) -> None:
        super().__init__(image_size=image_size, **settings)
        self.data_dir, self.download, self.split = Path(data_dir), download, split

    def prepare_data(self) -> None:
        load_stl10(self.data_dir, self.split, download=self.download)

    def build_train_dataset(self) -> ResizedUInt8Images:
        stl10 = load_stl10(self.data_dir, self.split, download=False)
        return ResizedUInt8Images(torch.from_numpy(stl10.data), torch.from_numpy(stl10.labels), self.image_size)

    def dataset_classes(self) -> int | None:
        return 10 if self.split == "train" else None  # the unlabelled images carry -1
