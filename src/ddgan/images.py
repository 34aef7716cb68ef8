"""Image conversions and grids: [-1, 1] float tensors to uint8 arrays and PNG files."""
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.utils import make_grid


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> (N, H, W, C) uint8, rounding to nearest."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def save_png(image: np.ndarray, path: Path) -> None:
    """Save an (H, W, C) uint8 array (C = 1 or 3) as PNG."""
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(path)


def save_grid(images: torch.Tensor, path: Path, nrow: int | None = None) -> None:
    """(N, C, H, W) in [-1, 1] as one PNG grid, nrow images per row (default: square)."""
    nrow = nrow or math.ceil(math.sqrt(images.shape[0]))
    grid = make_grid(images.float().clamp(-1, 1), nrow=nrow, normalize=True, value_range=(-1, 1), padding=2)
    save_png(to_uint8(grid[None] * 2 - 1)[0], path)
