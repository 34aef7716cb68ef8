"""Stroke-based synthesis / editing (the SDEdit setting) with a trained DDGAN: an input x_0 is diffused to level k
with q(x_k | x_0), then the remaining k DDGAN steps run from x_k with different latents; small k keeps the input's
details, k = T ignores it. The command is src/edit.py."""
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from src.ddgan.data.tensors import uint8_to_model_range
from src.ddgan.module import DDGAN
from src.ddgan.sampling import randn

GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F"}


class EditError(ValueError):
    """Input that cannot be edited; the message says what is expected and how to fix it."""


def describe(height: int, width: int, channels: int) -> str:
    return f"{height}×{width}×{channels} ({'grayscale' if channels == 1 else 'RGB'})"


def load_image(path: str | Path, sample_shape: tuple[int, int, int], fit: bool = False) -> Tensor:
    """The image at `path` as a (C, H, W) float tensor in [-1, 1] with the model's (C, H, W) = sample_shape.

    An alpha channel is dropped. A size or channel mismatch raises EditError, unless `fit` (then it is
    converted, and resized to cover H×W with a centre crop).
    """
    channels, height, width = sample_shape
    try:
        image = Image.open(path)
        image.load()
    except FileNotFoundError:
        raise EditError(f"input={str(path)!r}: no such file. Give a PNG or JPEG image of {describe(height, width, channels)}.") from None
    except (UnidentifiedImageError, OSError) as error:
        raise EditError(f"input={str(path)!r} is not an image that can be read ({error}). Give a PNG or JPEG.") from None
    image_channels = 1 if image.mode in GRAY_MODES else 3
    target_mode = "L" if channels == 1 else "RGB"
    if not fit and (image.size != (width, height) or image_channels != channels):
        fixes = []
        if image.size != (width, height):
            fixes.append(f"resize it to {width}×{height} pixels")
        if image_channels != channels:
            fixes.append(f"convert it to {target_mode}")
        raise EditError(
            f"input={str(path)!r} is {describe(image.height, image.width, image_channels)} but the model expects "
            f"{describe(height, width, channels)} (H×W×C): {' and '.join(fixes)} "
            f"(e.g. PIL: Image.open(p).convert('{target_mode}').resize(({width}, {height}))), or pass fit_input=true."
        )
    image = image.convert(target_mode)
    if image.size != (width, height):
        image = ImageOps.fit(image, (width, height), Image.Resampling.LANCZOS)
    pixels = torch.from_numpy(np.array(image, dtype=np.uint8)).reshape(height, width, channels)
    return uint8_to_model_range(pixels.permute(2, 0, 1))


def validate_edit(model: DDGAN, start_step, num_variations, class_label=None) -> None:
    """EditError for a non-image model, k outside 1..T, fewer than one variation, or a class label that is not one
    of the model's classes (or given to an unconditional model)."""
    if len(model.sample_shape) != 3:
        raise EditError(f"this checkpoint's model makes {list(model.sample_shape)}-shaped points: src.edit edits images.")
    num_timesteps = model.schedule.num_timesteps
    if isinstance(start_step, bool) or not isinstance(start_step, int) or not 1 <= start_step <= num_timesteps:
        raise EditError(
            f"start_step={start_step!r} is outside 1..{num_timesteps} (this model has T={num_timesteps} steps): "
            f"1 stays closest to the input, {num_timesteps} starts from almost pure noise."
        )
    if isinstance(num_variations, bool) or not isinstance(num_variations, int) or num_variations < 1:
        raise EditError(f"num_variations={num_variations!r} is invalid: it must be an integer >= 1.")
    if class_label is not None:
        try:
            model.check_class_label(class_label)
        except ValueError as error:
            raise EditError(str(error)) from None


@torch.no_grad()
def edit(model: DDGAN, image: Tensor, *, start_step: int, num_variations: int, seed: int, diffuse_each: bool = False,
         class_label: int | None = None) -> Tensor:
    """SDEdit with DDGAN: x_k ~ q(x_k | x_0 = image), then DDGAN steps k-1 … 0 with fresh z; (n, C, H, W) in [-1, 1].
    A class-conditional model turns the input into class `class_label` (default: variation i gets class
    i mod num_classes).

    Args:
        image: (C, H, W) in [-1, 1].
        diffuse_each: draw x_k separately for every variation (default: one x_k, the variations differ by z
            and the posterior noise of the remaining steps).
    """
    validate_edit(model, start_step, num_variations, class_label)
    rng = torch.Generator(device=model.device).manual_seed(seed)
    x_0 = model.to_network_space(image.to(model.device, torch.float32)[None]).expand(num_variations, *model.network_shape)
    k = torch.full((num_variations,), start_step, device=model.device, dtype=torch.long)
    noise = randn((num_variations if diffuse_each else 1, *model.network_shape), x_0, rng).expand_as(x_0)
    x_k = model.schedule.q_sample(x_0, k, noise)  # in the networks' space; the samples come back as images
    labels = torch.full((num_variations,), class_label, dtype=torch.long) if class_label is not None else None
    return model.sample(num_variations, x_start=x_k, start_step=start_step, rng=rng, labels=labels)
