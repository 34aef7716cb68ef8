"""A compact digit CNN: logits classify grey digits, its penultimate layer gives features (FID, PR, IS, modes).

Trained on scikit-learn's digits (offline) or torchvision MNIST, at the resolution the generator samples at.
A checkpoint file holds the weights, the constructor arguments, the held-out accuracy and the data set name.
"""
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from src.ddgan.checkpoint import read_checkpoint
from src.ddgan.data.digits import load_digit_images
from src.ddgan.data.mnist import load_mnist_images

DIGIT_DATASETS = ("digits", "mnist")


def conv_bn_relu(in_channels: int, out_channels: int, *, kernel_size: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    )


class DigitClassifier(nn.Module):
    """Grey digits (N, 1, R, R) in [-1, 1] -> logits (N, 10); `features` gives the penultimate (N, feature_dim)."""

    def __init__(
        self,
        *,
        resolution: int = 32,  # input side the classifier is trained at; other sizes are resized to it
        width: int = 16,  # channels of the first conv (doubled after the second down-sampling)
        feature_dim: int = 128,  # penultimate width: the feature space of FID / precision-recall
        num_classes: int = 10,  # digits 0..9
    ) -> None:
        super().__init__()
        self.resolution = resolution
        self.num_features = feature_dim
        self.num_classes = num_classes
        self.down1 = conv_bn_relu(1, width, kernel_size=5, stride=2)  # R -> R/2
        self.down2 = conv_bn_relu(width, 2 * width, kernel_size=3, stride=2)  # R/2 -> R/4
        self.body = conv_bn_relu(2 * width, 2 * width, kernel_size=3, stride=1)  # R/4
        self.embed = nn.Sequential(
            nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Dropout(0.25), nn.Linear(2 * width * 16, feature_dim), nn.ReLU()
        )
        self.head = nn.Sequential(nn.Dropout(0.25), nn.Linear(feature_dim, num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations (N, feature_dim) of grey digits x (N, 1, H, W) in [-1, 1]."""
        if x.shape[-1] != self.resolution or x.shape[-2] != self.resolution:
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear", antialias=True)
        return self.embed(self.body(self.down2(self.down1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def config(self) -> dict[str, int]:
        return {"resolution": self.resolution, "width": self.down1[0].out_channels,
                "feature_dim": self.num_features, "num_classes": self.num_classes}


def random_affine(x: torch.Tensor, *, max_shift: float, max_degrees: float, max_scale: float,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-image random shift (pixels), rotation (degrees) and scale of x (N, 1, H, W) in [-1, 1]; background -1."""
    n, side = x.shape[0], x.shape[-1]

    def uniform(bound: float) -> torch.Tensor:
        return (torch.rand(n, generator=generator) * 2 - 1) * bound

    angle = uniform(max_degrees) * math.pi / 180
    scale = 1 + uniform(max_scale)
    shift = uniform(max_shift) * 2 / side, uniform(max_shift) * 2 / side  # normalised coordinates
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[0]], 1), torch.stack([sin, cos, shift[1]], 1)], 1)
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    return F.grid_sample(x + 1, grid, align_corners=False, padding_mode="zeros") - 1


@dataclass
class DigitSplits:
    """Train and held-out digits: images (N, 1, R, R) in [-1, 1] and labels (N,)."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    held_out_images: torch.Tensor
    held_out_labels: torch.Tensor


def load_digit_splits(dataset: str, *, resolution: int, held_out_fraction: float = 0.2, seed: int = 0,
                      data_dir: str | Path = "data/mnist", download: bool = False) -> DigitSplits:
    """scikit-learn digits split at random (seeded) into train / held-out, or MNIST's own train / test splits."""
    if dataset == "digits":
        images, labels = load_digit_images(resolution)
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
        num_held_out = round(held_out_fraction * len(images))
        held, train = order[:num_held_out], order[num_held_out:]
        return DigitSplits(images[train], labels[train], images[held], labels[held])
    if dataset == "mnist":
        train = load_mnist_images(Path(data_dir), train=True, resolution=resolution, download=download, settings="")
        test = load_mnist_images(Path(data_dir), train=False, resolution=resolution, download=download, settings="")
        return DigitSplits(*train, *test)
    raise ValueError(f"unknown digit dataset {dataset!r}; expected one of {DIGIT_DATASETS}")


@torch.no_grad()
def accuracy(classifier: DigitClassifier, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1024) -> float:
    """Fraction of `images` whose arg-max logit equals `labels` (eval mode)."""
    classifier.eval()
    device = next(classifier.parameters()).device
    correct = sum(int((classifier(x.to(device)).argmax(1).cpu() == y).sum())
                  for x, y in zip(images.split(batch_size), labels.split(batch_size)))
    return correct / len(labels)


def train_digit_classifier(
    splits: DigitSplits,
    *,
    width: int = 16,  # DigitClassifier width
    feature_dim: int = 128,  # DigitClassifier feature_dim
    epochs: int = 15,  # passes over the training split
    batch_size: int = 64,  # images per step
    lr: float = 3e-3,  # AdamW peak learning rate (one-cycle schedule)
    weight_decay: float = 1e-4,  # AdamW weight decay
    max_shift: float = 2.0,  # augmentation: random shift, pixels at the training resolution
    max_degrees: float = 10.0,  # augmentation: random rotation
    max_scale: float = 0.1,  # augmentation: random relative zoom
    seed: int = 0,  # weights, batch order and augmentation
    device: str | torch.device = "cpu",  # where to train
    num_threads: int | None = None,  # CPU threads while training (1 is fastest on a busy machine); None: unchanged
) -> tuple[DigitClassifier, float]:
    """Train a DigitClassifier with AdamW, one-cycle LR and affine augmentation; return it (eval mode) and its
    held-out accuracy."""
    previous_threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        return fit_digit_classifier(splits, width=width, feature_dim=feature_dim, epochs=epochs, batch_size=batch_size,
                                    lr=lr, weight_decay=weight_decay, max_shift=max_shift, max_degrees=max_degrees,
                                    max_scale=max_scale, seed=seed, device=device)
    finally:
        torch.set_num_threads(previous_threads)


def fit_digit_classifier(splits: DigitSplits, *, width: int, feature_dim: int, epochs: int, batch_size: int, lr: float,
                         weight_decay: float, max_shift: float, max_degrees: float, max_scale: float, seed: int,
                         device: str | torch.device) -> tuple[DigitClassifier, float]:
    """The training loop of train_digit_classifier (same arguments)."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    resolution = splits.train_images.shape[-1]
    classifier = DigitClassifier(resolution=resolution, width=width, feature_dim=feature_dim).to(device)
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(splits.train_images) / batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch)
    for _ in range(epochs):
        classifier.train()
        for index in torch.randperm(len(splits.train_images), generator=generator).split(batch_size):
            x = random_affine(splits.train_images[index], max_shift=max_shift, max_degrees=max_degrees,
                              max_scale=max_scale, generator=generator)
            loss = F.cross_entropy(classifier(x.to(device)), splits.train_labels[index].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return classifier, accuracy(classifier, splits.held_out_images, splits.held_out_labels)


def save_digit_classifier(path: str | Path, classifier: DigitClassifier, *, held_out_accuracy: float,
                          dataset: str) -> Path:
    """Write weights, constructor arguments, held-out accuracy and data set name to `path` (a .pt file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": classifier.state_dict(), "config": classifier.config(),
                "held_out_accuracy": held_out_accuracy, "dataset": dataset}, path)
    return path


def load_digit_classifier(path: str | Path, map_location: str | torch.device = "cpu") -> DigitClassifier:
    """A saved DigitClassifier in eval mode, frozen; `held_out_accuracy` and `dataset` are set as attributes."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"digit classifier not found at {path}; train one with "
                                f"`python -m src.train_classifier dataset=digits resolution=32 output={path}`")
    checkpoint = read_checkpoint(path, map_location, what="classifier_path")
    classifier = DigitClassifier(**checkpoint["config"])
    classifier.load_state_dict(checkpoint["state_dict"])
    classifier.held_out_accuracy = float(checkpoint["held_out_accuracy"])
    classifier.dataset = str(checkpoint["dataset"])
    return classifier.eval().requires_grad_(False)


def timed_training(splits: DigitSplits, **kwargs) -> tuple[DigitClassifier, float, float]:
    """train_digit_classifier plus its wall-clock seconds."""
    start = time.perf_counter()
    classifier, held_out_accuracy = train_digit_classifier(splits, **kwargs)
    return classifier, held_out_accuracy, time.perf_counter() - start
