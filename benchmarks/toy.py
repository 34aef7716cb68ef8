"""Iterations per second of the toy experiment through Lightning, against a bare PyTorch loop.

    python -m benchmarks.toy iterations=300
The bare loop runs the same D step (with lazy R1) and G step, without Trainer, logging or callbacks;
the ratio is the framework's overhead.
"""
import sys
import time

import lightning as L
import torch
from hydra.utils import instantiate

from benchmarks.common import write_result
from benchmarks.train_step import build_model, without_trainer


def lightning_its(iterations: int) -> float:
    model, cfg = build_model("gaussians25", [])
    data = instantiate(cfg.data, iterations_per_epoch=iterations)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=cfg.trainer.log_every_n_steps)
    start = time.perf_counter()
    trainer.fit(model, datamodule=data)
    return iterations / (time.perf_counter() - start)


def bare_its(iterations: int) -> float:
    model, cfg = build_model("gaussians25", [])
    model = without_trainer(model)
    data = instantiate(cfg.data, iterations_per_epoch=iterations)
    data.setup()
    batches = [data.dataset[i][0] for i in range(iterations)]
    start = time.perf_counter()
    for x_0 in batches:
        model.discriminator_step(x_0)
        model.generator_step(x_0)
        model.update_ema()
        model.iteration += 1
    return iterations / (time.perf_counter() - start)


def main(argv: list[str]) -> None:
    args = dict(a.split("=", 1) for a in argv)
    iterations = int(args.get("iterations", 300))
    torch.set_flush_denormal(True)
    bare_its(20)  # warm-up
    bare, lightning = bare_its(iterations), lightning_its(iterations)
    write_result("toy", {"iterations": iterations, "bare_pytorch_its": bare, "lightning_its": lightning, "overhead_fraction": 1 - lightning / bare})


if __name__ == "__main__":
    main(sys.argv[1:])
