"""Sampling time and images per second for T = 1, 2, 4, 8 (EMA generator, inference mode).

    python -m benchmarks.sampling experiment=cifar10 batch_size=16 repeats=5
"""
import sys

import torch

from benchmarks.common import measure, write_result
from benchmarks.train_step import build_model
from src.ddgan.diffusion import VPSchedule


def main(argv: list[str]) -> None:
    args = dict(a.split("=", 1) for a in argv)
    experiment = args.pop("experiment", "cifar10")
    batch_size, repeats = int(args.pop("batch_size", 16)), int(args.pop("repeats", 5))
    steps = [int(s) for s in args.pop("timesteps", "1,2,4,8").split(",")]
    model, _ = build_model(experiment, [f"{k}={v}" for k, v in args.items()])
    model.eval()
    results = {}
    for T in steps:
        model.schedule = VPSchedule(T)
        model.generator_ema.eval()

        def draw():
            with torch.inference_mode():
                model.sample(batch_size)

        timing = measure(draw, repeats=repeats, warmup=1, sync=torch.cuda.is_available())
        results[f"T{T}"] = timing | {"images_per_second": batch_size / timing["median_s"], "nfe": T}
    write_result(f"sampling_{experiment}", {"batch_size": batch_size, "by_timesteps": results})


if __name__ == "__main__":
    main(sys.argv[1:])
