"""Fraction of training time spent waiting on the data: a short Lightning fit of an image experiment, profiled.

    python -m benchmarks.data_loading experiment=stacked_digits iterations=20 data.num_workers=2
Lightning's SimpleProfiler times every `next()` on the train dataloader and every training batch; the first
iteration (worker start-up, first allocations) is reported apart. Other key=value arguments are Hydra
overrides of the experiment (data.num_workers, data.prefetch_factor, data.batch_size_per_device, ...).
"""
import sys
import tempfile

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.profilers import SimpleProfiler

from benchmarks.common import parse_args, summarize, write_result
from benchmarks.train_step import build_model

DEFAULTS = {"experiment": "stacked_digits", "iterations": 20, "name": None}
FETCH, STEP = "[_TrainingEpochLoop].train_dataloader_next", "run_training_batch"


def main(argv: list[str]) -> None:
    args, overrides = parse_args(argv, DEFAULTS)
    torch.set_flush_denormal(True)
    model, cfg = build_model(args["experiment"], overrides)
    data = instantiate(cfg.data)
    with tempfile.TemporaryDirectory() as tmp:
        profiler = SimpleProfiler(dirpath=tmp, filename="profile")  # the report goes to a file, not stdout
        trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=1, limit_train_batches=args["iterations"],
                            logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, profiler=profiler, default_root_dir=tmp)
        trainer.fit(model, datamodule=data)
    fetches, steps = profiler.recorded_durations[FETCH], profiler.recorded_durations[STEP]
    waiting, training = sum(fetches[1:]), sum(steps[1:])
    write_result(args["name"] or f"data_loading_{args['experiment']}", {
        "iterations": len(steps),
        "batch_size": int(data.hparams.batch_size_per_device),
        "num_workers": int(data.hparams.num_workers),
        "data_wait_fraction": waiting / (waiting + training),  # after the first iteration
        "data_wait_per_iteration": summarize(fetches[1:]),
        "training_step": summarize(steps[1:]),
        "first_fetch_s": fetches[0],
        "overrides": overrides,
    })


if __name__ == "__main__":
    main(sys.argv[1:])
