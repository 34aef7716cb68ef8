"""Sampling time and images per second for T = 1, 2, 4, 8 (EMA generator, inference mode).

    python -m benchmarks.sampling experiment=cifar10 batch_size=16 repeats=5
    python -m benchmarks.sampling timesteps=4 batch_size=100 warmup=10 repeats=100 device=cuda precision=bf16 \
        model.channels_last=true model.compile=true cuda_graph=true name=gpu_sampling_cifar10
Other key=value arguments are Hydra overrides of the experiment. On a GPU, times come from CUDA events;
cuda_graph=true replays the whole T-step sampler as one CUDA graph.
"""
import sys

import torch

from benchmarks.common import measure, parse_args, write_result
from benchmarks.train_step import inference_model
from src.ddgan.diffusion import VPSchedule
from src.ddgan.precision import autocast
from src.ddgan.sampling import cuda_graphed

DEFAULTS = {"experiment": "cifar10", "batch_size": 16, "repeats": 5, "warmup": 1, "timesteps": "1,2,4,8",
            "device": "cpu", "precision": "32", "cuda_graph": False, "name": None}


def sampler(model, batch_size: int, precision: str, cuda_graph: bool):
    """A call that draws batch_size samples with the EMA generator in inference mode (as one CUDA graph if asked)."""
    def draw():
        with torch.inference_mode(), autocast(model.device, precision, cache=not cuda_graph):
            return model.sample(batch_size, use_ema=True)

    if cuda_graph and (model.device.type != "cuda" or model.hparams.compile_mode == "reduce-overhead"):
        raise ValueError("cuda_graph=true needs device=cuda and a compile mode other than reduce-overhead "
                         "(which captures CUDA graphs itself)")
    return cuda_graphed(draw) if cuda_graph else draw


def main(argv: list[str]) -> None:
    args, overrides = parse_args(argv, DEFAULTS)
    device = torch.device(args["device"])
    model = inference_model(args["experiment"], overrides, device)
    assert not model.generator_ema.training
    results = {}
    for T in [int(s) for s in args["timesteps"].split(",")]:
        model.schedule = VPSchedule(T).to(device)
        draw = sampler(model, args["batch_size"], args["precision"], args["cuda_graph"])
        timing = measure(draw, repeats=args["repeats"], warmup=args["warmup"], cuda=device.type == "cuda")
        results[f"T{T}"] = timing | {"images_per_second": args["batch_size"] / timing["median_s"], "nfe": T}
    write_result(args["name"] or f"sampling_{args['experiment']}",
                 {"batch_size": args["batch_size"], "device": str(device), "precision": args["precision"],
                  "cuda_graph": args["cuda_graph"], "overrides": overrides, "by_timesteps": results})


if __name__ == "__main__":
    main(sys.argv[1:])
