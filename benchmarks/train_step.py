"""Seconds per full DDGAN iteration (D step with R1 + G step) for a paper configuration.

    python -m benchmarks.train_step experiment=cifar10 batch_size=8 repeats=5
    python -m benchmarks.train_step experiment=cifar10 batch_size=64 device=cuda precision=bf16 \
        model.channels_last=true model.compile=true name=gpu_train_cifar10
Other key=value arguments are Hydra overrides of the experiment. R1 runs in every timed iteration (the worst case);
lazy_r1=true instead times lazy_reg iterations per call (one R1 period) and reports the mean per iteration.
Prints and writes benchmarks/results/<name>.json (default train_step_<experiment>; median/min/max, peak memory).
"""
import sys

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from benchmarks.common import measure, parse_args, peak_rss_gb, write_result
from src.ddgan.cli import CONFIG_DIR
from src.ddgan.precision import autocast

DEFAULTS = {"experiment": "cifar10", "batch_size": 8, "repeats": 5, "warmup": 1, "device": "cpu",
            "precision": "32", "lazy_r1": False, "name": None}


def build_model(experiment: str, overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"experiment={experiment}", "paths.output_dir=/tmp/bench", *overrides])
    return instantiate(cfg.model, _convert_="partial"), cfg


def inference_model(experiment: str, overrides: list[str], device: torch.device):
    """The experiment's DDGAN on `device` in eval mode, denormals flushed (the sampling and evaluation benchmarks)."""
    torch.set_flush_denormal(True)
    model, _ = build_model(experiment, overrides)
    return model.to(device).eval()


def without_trainer(model):
    """Gives the module its optimizers and a plain backward, so steps run without a Trainer."""
    model.hparams.cosine_lr_decay = False  # the LR schedule needs trainer.max_epochs; it costs nothing per step
    optimizers = model.configure_optimizers()
    model.optimizers = lambda: optimizers
    model.manual_backward = lambda loss: loss.backward()
    return model


def main(argv: list[str]) -> None:
    args, overrides = parse_args(argv, DEFAULTS)
    device = torch.device(args["device"])
    torch.set_flush_denormal(True)
    model, _ = build_model(args["experiment"], overrides)
    model = without_trainer(model.to(device))
    x_0 = torch.randn(args["batch_size"], *model.sample_shape, device=device).clamp(-1, 1)
    if not args["lazy_r1"]:
        model.hparams.lazy_reg = 1  # every timed iteration pays for R1 (the worst case)
    iterations = model.hparams.lazy_reg

    def step():
        with autocast(device, args["precision"]):
            for _ in range(iterations):
                model.train_iteration(x_0)

    result = measure(step, repeats=args["repeats"], warmup=args["warmup"], cuda=device.type == "cuda")
    if iterations > 1:
        result = {k: v / iterations if k.endswith("_s") else v for k, v in result.items()}
    memory = ({"peak_gpu_memory_gb": torch.cuda.max_memory_allocated(device) / 1024**3} if device.type == "cuda"
              else {"peak_rss_gb": peak_rss_gb()})
    write_result(args["name"] or f"train_step_{args['experiment']}",
                 result | {"iterations_per_second": 1 / result["median_s"], "batch_size": args["batch_size"],
                           "device": str(device), "precision": args["precision"], "r1_every_iteration": iterations == 1,
                           "overrides": overrides} | memory)


if __name__ == "__main__":
    main(sys.argv[1:])
