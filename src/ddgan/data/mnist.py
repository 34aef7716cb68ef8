"""torchvision's MNIST, padded 28 -> 32 with black: the digits of StackedMNIST and of the MNIST digit classifier."""
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.datasets import MNIST

from .errors import DataError
from .tensors import uint8_to_model_range


def load_mnist(data_dir: Path, *, train: bool = True, download: bool,
               settings: str = "data.") -> tuple[torch.Tensor, torch.Tensor]:
    """One MNIST split padded 28 -> 32: uint8 (N, 32, 32) and labels (N,) long. DataError (one line, with the fix)
    when it is absent or cannot be downloaded; `settings` prefixes the setting names in it (download, data_dir)."""
    try:
        mnist = MNIST(root=str(data_dir), train=train, download=download)
    except RuntimeError as error:  # torchvision: "Dataset not found"
        raise DataError(
            f"MNIST not found under {data_dir} (expected {data_dir / 'MNIST' / 'raw'}); "
            f"set {settings}download=true to download it, or point {settings}data_dir at a folder holding it"
        ) from error
    except OSError as error:  # network failures while downloading
        raise DataError(f"could not download MNIST to {data_dir} ({error}); copy MNIST/raw/ there "
                        f"from a machine with internet and set {settings}download=false") from error
    return F.pad(mnist.data, (2, 2, 2, 2)), mnist.targets.long()


def load_mnist_images(data_dir: Path, *, train: bool, resolution: int, download: bool,
                      settings: str = "data.") -> tuple[torch.Tensor, torch.Tensor]:
    """One MNIST split (see load_mnist) as float (N, 1, resolution, resolution) in [-1, 1] and labels (N,)."""
    digits, labels = load_mnist(data_dir, train=train, download=download, settings=settings)
    images = uint8_to_model_range(digits).unsqueeze(1)  # (N, 1, 32, 32)
    if resolution != 32:
        images = F.interpolate(images, size=(resolution, resolution), mode="bilinear", antialias=True)
    return images, labels
