"""Image conversions and grids: [-1, 1] float tensors to uint8 arrays and PNG files (grids of small images upscaled)."""
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.utils import make_grid

from src.ddgan.data.tensors import model_range_to_uint8


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> (N, H, W, C) uint8 numpy, for PNG files and sample archives."""
    return model_range_to_uint8(images).permute(0, 2, 3, 1).cpu().numpy()


def save_png(image: np.ndarray, path: Path) -> None:
    """Save an (H, W, C) uint8 array (C = 1 or 3) as PNG."""
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(path)


def grid_scale(image_size: int) -> int:
    """Nearest-neighbour upscale of a grid of image_size-px images: tiles of at least 128 px, so >= 2x for 64 px or
    less (32 px: 4x); larger images stay 1x."""
    return max(2, math.ceil(128 / image_size)) if image_size <= 64 else 1


def save_grid_image(grid: torch.Tensor, path: Path, image_size: int) -> None:
    """A (C, H', W') grid in [-1, 1] of image_size-px tiles as PNG, upscaled (nearest) by grid_scale(image_size)."""
    scale = grid_scale(image_size)
    save_png(to_uint8(grid[None])[0].repeat(scale, axis=0).repeat(scale, axis=1), path)


def save_grid(images: torch.Tensor, path: Path, nrow: int | None = None, labels: torch.Tensor | None = None) -> None:
    """(N, C, H, W) in [-1, 1] as one PNG grid, nrow images per row (default: square), upscaled for reading; with
    the images' class labels (N,): one row per class (save_class_grid)."""
    if labels is not None:
        return save_class_grid(images, labels, path)
    nrow = nrow or math.ceil(math.sqrt(images.shape[0]))
    grid = make_grid(images.float().clamp(-1, 1), nrow=nrow, normalize=True, value_range=(-1, 1), padding=2)
    save_grid_image(grid * 2 - 1, path, max(images.shape[-2:]))


def class_rows(labels: torch.Tensor, per_row: int = 16, max_rows: int = 32) -> torch.Tensor:
    """Indices of a grid with one row per class: the first `per_row` samples of each of the first `max_rows` classes
    (in order of label), rows padded with -1 where a class has fewer samples."""
    rows = []
    for label in labels.unique()[:max_rows]:
        picked = (labels == label).nonzero().flatten()[:per_row]
        rows.append(torch.cat([picked, picked.new_full((per_row - len(picked),), -1)]))
    return torch.stack(rows)


def save_class_grid(images: torch.Tensor, labels: torch.Tensor, path: Path, per_row: int = 16) -> None:
    """(N, C, H, W) in [-1, 1] with their classes (N,) as one PNG grid of one row per class (empty tiles black)."""
    labels = labels.cpu()
    rows = class_rows(labels, min(per_row, int(torch.bincount(labels).max())))
    blank = -torch.ones_like(images[:1])
    tiles = torch.cat([images, blank])[rows.flatten().to(images.device)]  # index -1: the blank tile
    save_grid(tiles, path, nrow=rows.shape[1])
