"""The denoising chain and a latent interpolation every N epochs: files in the run directory, images to the loggers."""
from pathlib import Path

import lightning as L
import numpy as np
from PIL import Image

from src.ddgan.visualization import visualize


def log_image_file(trainer: L.Trainer, key: str, path: Path) -> None:
    """Send a PNG to every logger that takes images: wandb (`log_image`) and TensorBoard (`add_image`)."""
    for logger in trainer.loggers:
        if hasattr(logger, "log_image"):  # wandb
            logger.log_image(key=key, images=[str(path)], step=trainer.global_step)
        elif hasattr(getattr(logger, "experiment", None), "add_image"):  # tensorboard
            pixels = np.asarray(Image.open(path).convert("RGB"))
            logger.experiment.add_image(key, pixels, trainer.global_step, dataformats="HWC")


class DenoisingVisualization(L.Callback):
    """Every `every_n_epochs` epochs (and after the last one) on rank zero, from the EMA generator:
    `<output_dir>/visualizations/epoch{E:04d}_chain.png`, `..._chain.gif` and `..._interpolation.png`
    (see src.ddgan.visualization), and the two PNGs to the loggers as `visualization/chain` and
    `visualization/interpolation`. A fixed seed makes epochs comparable. 2-D models get scatter plots
    over the datamodule's mode centers.
    """

    def __init__(
        self,
        output_dir: str,  # the run directory
        every_n_epochs: int = 5,  # after every N-th epoch (0: only after the last)
        num_samples: int | None = None,  # chain samples (null: 8 images or 2000 points)
        num_rows: int = 4,  # interpolation rows, each its own x_T
        num_steps: int = 8,  # interpolation points per row
        seed: int = 1234,  # fixes x_T, z and the posterior noise
        shared_z: bool = False,  # interpolate one z used at every step instead of per-step z
        gif: bool = True,  # also write the chain as an animated GIF
    ):
        self.output_dir = Path(output_dir) / "visualizations"
        self.every_n_epochs = every_n_epochs
        self.options = {"num_samples": num_samples, "num_rows": num_rows, "num_steps": num_steps, "seed": seed,
                        "shared_z": shared_z, "gif": gif}
        self.last_visualized_epoch: int | None = None

    def visualize(self, trainer: L.Trainer, module, epochs_done: int) -> None:
        self.last_visualized_epoch = epochs_done
        if not trainer.is_global_zero:
            return
        data = trainer.datamodule
        centers = data.mixture.network_centers() if hasattr(data, "mixture") else None
        files = visualize(module, self.output_dir, prefix=f"epoch{epochs_done:04d}_", centers=centers, **self.options)
        for name in ("chain", "interpolation"):
            log_image_file(trainer, f"visualization/{name}", files[name])

    def on_train_epoch_end(self, trainer: L.Trainer, module) -> None:
        epochs_done = trainer.current_epoch + 1
        if self.every_n_epochs > 0 and epochs_done % self.every_n_epochs == 0 and not trainer.sanity_checking:
            self.visualize(trainer, module, epochs_done)

    def on_fit_end(self, trainer: L.Trainer, module) -> None:
        if trainer.current_epoch > 0 and self.last_visualized_epoch != trainer.current_epoch:
            self.visualize(trainer, module, trainer.current_epoch)
