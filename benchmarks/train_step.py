"""Seconds per full DDGAN iteration (D step with R1 + G step) for a paper configuration.

    python -m benchmarks.train_step experiment=cifar10 batch_size=8 repeats=5
Prints and writes benchmarks/results/train_step_<experiment>.json (median/min/max, peak memory).
"""
import sys

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from benchmarks.common import measure, peak_rss_gb, write_result
from tests.conftest import CONFIG_DIR


def build_model(experiment: str, overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"experiment={experiment}", "paths.output_dir=/tmp/bench", *overrides])
    return instantiate(cfg.model, _convert_="partial"), cfg


def without_trainer(model):
    """Gives the module its optimizers and a plain backward, so steps run without a Trainer."""
    model.hparams.cosine_lr_decay = False  # the LR schedule needs trainer.max_epochs; it costs nothing per step
    optimizers = model.configure_optimizers()
    model.optimizers = lambda: optimizers
    model.manual_backward = lambda loss: loss.backward()
    return model


def main(argv: list[str]) -> None:
    args = dict(a.split("=", 1) for a in argv if "=" in a and not a.startswith("+"))
    experiment = args.pop("experiment", "cifar10")
    batch_size, repeats = int(args.pop("batch_size", 8)), int(args.pop("repeats", 5))
    torch.set_flush_denormal(True)
    model, cfg = build_model(experiment, [f"{k}={v}" for k, v in args.items()])
    model = without_trainer(model)
    x_0 = torch.randn(batch_size, *model.sample_shape).clamp(-1, 1)

    def iteration():
        model.discriminator_step(x_0)
        model.generator_step(x_0)
        model.update_ema()
        model.iteration += 1

    model.hparams.lazy_reg = 1  # every timed iteration pays for R1 (the worst case)
    result = measure(iteration, repeats=repeats, warmup=1)
    write_result(f"train_step_{experiment}", result | {"batch_size": batch_size, "peak_rss_gb": peak_rss_gb(), "r1_every_iteration": True})


if __name__ == "__main__":
    main(sys.argv[1:])
