"""A grid of EMA-generator samples every N epochs, saved as PNG and sent to the active logger."""
from pathlib import Path

import lightning as L
import torch

from src.ddgan.callbacks.visualization import log_image_file
from src.ddgan.images import save_grid


class SampleGrid(L.Callback):
    """Writes `<output_dir>/samples/epoch{E}.png` from fixed noise, so epochs are comparable (a class-conditional
    model's: sample i of class i mod num_classes, one row per class)."""

    def __init__(self, output_dir: str, every_n_epochs: int = 1, num_samples: int = 64, seed: int = 1234):
        self.output_dir = Path(output_dir) / "samples"
        self.every_n_epochs, self.num_samples, self.seed = every_n_epochs, num_samples, seed

    def on_train_epoch_end(self, trainer: L.Trainer, module) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs or not trainer.is_global_zero:
            return
        rng = torch.Generator(device=module.device).manual_seed(self.seed)
        labels = module.default_labels(self.num_samples, None)
        images = module.sample(self.num_samples, rng=rng, labels=labels)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        path = self.output_dir / f"epoch{trainer.current_epoch + 1:04d}.png"
        save_grid(images, path, labels=labels)
        log_image_file(trainer, "samples", path)
