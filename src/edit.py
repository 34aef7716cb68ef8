"""Stroke-based synthesis / editing (the SDEdit setting) with a trained DDGAN:

    python -m src.edit ckpt_path=RUN/checkpoints/last.ckpt input=strokes.png start_step=k num_variations=n output_dir=D seed=S

The input x_0 (PNG or JPEG of the model's H×W×C, scaled to [-1, 1]) is diffused to level k with q(x_k | x_0),
then the remaining k DDGAN steps run from x_k with n different latents: small k keeps the input's details,
k = T ignores it. A class-conditional model takes class_label=c: the variations become class c. Writes D/grid.png (the input, then the variations, in one row) and D/variations/{i:03d}.png.
Bad input (missing file, wrong size or channels, k outside 1..T) ends with one line on stderr and exit status 2.
"""
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig
from torch import Tensor

from src.ddgan.checkpoint import load_ddgan
from src.ddgan.cli import fail, pick_device
from src.ddgan.editing import EditError, edit, load_image, validate_edit
from src.ddgan.images import save_grid, save_png, to_uint8


def write_edits(image: Tensor, variations: Tensor, output_dir: Path) -> Path:
    """D/grid.png (input, then variations) and D/variations/{i:03d}.png; returns the grid's path."""
    (output_dir / "variations").mkdir(parents=True, exist_ok=True)
    for index, pixels in enumerate(to_uint8(variations)):  # at the model's size; the grid is upscaled for reading
        save_png(pixels, output_dir / "variations" / f"{index:03d}.png")
    grid = output_dir / "grid.png"
    save_grid(torch.cat([image[None].cpu(), variations.cpu()]), grid, nrow=len(variations) + 1)
    return grid


def run(cfg: DictConfig) -> Path:
    """Load, check, edit, write: the command without its exit handling."""
    if not Path(cfg.input).is_file():
        raise EditError(f"input={str(cfg.input)!r}: no such file. Give a PNG or JPEG image.")
    try:
        model = load_ddgan(cfg.ckpt_path)
    except (FileNotFoundError, ValueError) as error:
        raise EditError(str(error)) from None
    model = model.to(pick_device(cfg.device))
    validate_edit(model, cfg.start_step, cfg.num_variations, cfg.class_label)
    image = load_image(cfg.input, model.sample_shape, fit=cfg.fit_input)
    variations = edit(model, image, start_step=cfg.start_step, num_variations=cfg.num_variations, seed=cfg.seed,
                      diffuse_each=cfg.diffuse_each, class_label=cfg.class_label)
    return write_edits(image, variations.cpu(), Path(cfg.output_dir))


@hydra.main(version_base="1.3", config_path="../conf", config_name="edit")
def main(cfg: DictConfig) -> None:
    try:
        grid = run(cfg)
    except EditError as error:
        fail(str(error))
    print(f"{cfg.num_variations} variations from level {cfg.start_step} -> {grid} and {grid.parent / 'variations'}/")


if __name__ == "__main__":
    main()
