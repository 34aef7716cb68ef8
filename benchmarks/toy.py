"""Iterations per second of the toy experiment through Lightning, against a bare PyTorch loop.

    python -m benchmarks.toy iterations=300 [width=512 batch_size=512]
Measured at the issue's reference size (3x512 MLPs, batch 512; the default experiment uses 3x256 and batch 256).
The bare loop runs the same D step (with lazy R1) and G step, without Trainer, logging or callbacks;
the ratio is the framework's overhead.
"""
import sys
import time

import lightning as L
import torch
from hydra.utils import instantiate

from benchmarks.common import parse_args, write_result
from benchmarks.train_step import build_model, without_trainer


def lightning_its(iterations: int, overrides: list[str]) -> float:
    model, cfg = build_model("gaussians25", overrides)
    data = instantiate(cfg.data, iterations_per_epoch=iterations)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=cfg.trainer.log_every_n_steps)
    start = time.perf_counter()
    trainer.fit(model, datamodule=data)
    return iterations / (time.perf_counter() - start)


def bare_its(iterations: int, overrides: list[str]) -> float:
    model, cfg = build_model("gaussians25", overrides)
    model = without_trainer(model)
    data = instantiate(cfg.data, iterations_per_epoch=iterations)
    data.setup()
    batches = [data.dataset[i][0] for i in range(iterations)]
    start = time.perf_counter()
    for x_0 in batches:
        model.train_iteration(x_0)
    return iterations / (time.perf_counter() - start)


def main(argv: list[str]) -> None:
    args, _ = parse_args(argv, {"iterations": 300, "width": 512, "batch_size": 512})
    iterations, width, batch_size = args["iterations"], args["width"], args["batch_size"]
    overrides = [f"model.generator.hidden_dim={width}", f"model.discriminator.hidden_dim={width}", f"data.batch_size_per_device={batch_size}"]
    torch.set_flush_denormal(True)
    bare_its(20, overrides)  # warm-up
    bare, lightning = bare_its(iterations, overrides), lightning_its(iterations, overrides)
    write_result("toy", {"iterations": iterations, "width": width, "batch_size": batch_size, "bare_pytorch_its": bare, "lightning_its": lightning, "overhead_fraction": 1 - lightning / bare})


if __name__ == "__main__":
    main(sys.argv[1:])
