"""Draw samples from a trained DDGAN: python -m src.sample ckpt_path=... num_samples=N batch_size=B output_dir=D seed=S.

Writes D/samples.npz (uint8 N×H×W×C under `arr_0`; a class-conditional model's labels (N,) under `labels`), D/grid.png,
D/timing.json and, with save_individual=true, D/images/{index:06d}.png. Sample i depends only on (seed, i).
Class-conditional models: class_labels=[3,7] draws num_samples of each listed class (grid: one row per class);
without it sample i has class i mod num_classes. precision=bf16 runs the generator under bf16 autocast. Bad input ends
with one line on stderr and exit status 2.
"""
import json
import logging
import time
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig

from src.ddgan.checkpoint import load_ddgan
from src.ddgan.cli import fail, pick_device
from src.ddgan.files import atomic_write
from src.ddgan.images import save_grid, save_png, to_uint8
from src.ddgan.module import DDGAN
from src.ddgan.precision import validate_precision
from src.ddgan.sampling import draw_samples, index_labels

log = logging.getLogger(__name__)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def generate(model: DDGAN, num_samples: int, batch_size: int, seed: int, use_ema: bool = True, warmup_batches: int = 1,
             precision: str = "32", labels: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """All samples (N, …) in [-1, 1] (fp32) on the CPU, and timing figures (warm-up batches excluded); labels: the
    class of each sample (conditional models; default i mod num_classes)."""
    def draw(indices: list[int]) -> torch.Tensor:
        return draw_samples(model, indices, seed=seed, use_ema=use_ema, precision=precision,
                            labels=labels[indices] if labels is not None else None)

    if warmup_batches:
        draw(list(range(min(batch_size, num_samples))))
    batches, seconds = [], []
    for start in range(0, num_samples, batch_size):
        synchronize(model.device)
        began = time.perf_counter()
        batches.append(draw(list(range(start, min(start + batch_size, num_samples)))).cpu())
        synchronize(model.device)
        seconds.append(time.perf_counter() - began)
    timing = {
        "nfe": model.schedule.num_timesteps,
        "batch_size": batch_size,
        "num_batches": len(seconds),
        "seconds_per_batch": float(np.median(seconds)),
        "images_per_second": num_samples / sum(seconds),
        "device": str(model.device),
        "precision": precision,
    }
    return torch.cat(batches), timing


def sample_labels(model: DDGAN, class_labels, num_samples: int) -> torch.Tensor | None:
    """The class of every sample: num_samples of each of class_labels in turn, else (a conditional model) class
    i mod num_classes for sample i, else None; ValueError naming a label that is not one of the model's classes."""
    if class_labels is None:
        return index_labels(range(num_samples), model.num_classes)
    class_labels = list(class_labels)
    for label in class_labels or [None]:
        model.check_class_label(label, "class_labels", shown=class_labels)
    return torch.tensor(class_labels).repeat_interleave(num_samples)


def write_samples(samples: torch.Tensor, output_dir: Path, save_individual: bool = False,
                  labels: torch.Tensor | None = None) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    images = to_uint8(samples)
    arrays = {"arr_0": images} | ({"labels": labels.numpy()} if labels is not None else {})
    atomic_write(output_dir / "samples.npz", lambda file: np.savez(file, **arrays))
    save_grid(samples if labels is not None else samples[:256], output_dir / "grid.png", labels=labels)
    if save_individual:
        (output_dir / "images").mkdir(exist_ok=True)
        for index, image in enumerate(images):
            save_png(image, output_dir / "images" / f"{index:06d}.png")


@hydra.main(version_base="1.3", config_path="../conf", config_name="sample")
def main(cfg: DictConfig) -> None:
    if cfg.num_samples < 1 or cfg.batch_size < 1:
        fail(f"num_samples={cfg.num_samples} and batch_size={cfg.batch_size} must both be >= 1.")
    try:
        precision = validate_precision(cfg.precision)
        model = load_ddgan(cfg.ckpt_path).to(pick_device(cfg.device))
        if cfg.channels_last:
            model.to_channels_last()
        labels = sample_labels(model, cfg.class_labels, cfg.num_samples)
    except (FileNotFoundError, ValueError) as error:
        fail(str(error))
    if len(model.sample_shape) != 3:
        fail(f"ckpt_path={cfg.ckpt_path}: src.sample writes images, but this model makes {list(model.sample_shape)}-shaped samples.")
    num_samples = len(labels) if labels is not None else cfg.num_samples
    samples, timing = generate(model, num_samples, cfg.batch_size, cfg.seed, cfg.use_ema, cfg.warmup_batches, precision,
                               labels)
    output_dir = Path(cfg.output_dir)
    write_samples(samples, output_dir, cfg.save_individual, labels)
    (output_dir / "timing.json").write_text(json.dumps(timing, indent=2))
    print(f"{num_samples} samples -> {output_dir / 'samples.npz'}; NFE {timing['nfe']}, precision {precision}, "
          f"{timing['seconds_per_batch']:.3f} s per batch of {cfg.batch_size}, {timing['images_per_second']:.1f} images/s")


if __name__ == "__main__":
    main()
