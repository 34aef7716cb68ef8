"""How fast each CPU target could be on this machine: FLOPs of the workload against the measured fp32 peak.

    python -m benchmarks.roofline [repeats=5]
Counts the floating-point operations of each benchmarked workload (matrix multiplies, convolutions and attention,
torch.utils.flop_counter's formulas, forward and backward, R1's double backward included) on the meta device,
measures this machine's fp32 throughput for a large matrix multiply and for a typical 3x3 convolution, and
prints, per workload: GFLOP, the time it would take at that peak (a lower bound), the throughput the target
needs, and the throughput our latest measurement (benchmarks/results/*.json) reached.
"""
import contextlib
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from benchmarks.common import measure, parse_args, write_result
from benchmarks.train_step import build_model, without_trainer
from src.ddgan.diffusion import VPSchedule

META = torch.device("meta")


class FlopCount(TorchDispatchMode):
    """Sums torch.utils.flop_counter's formulas over every op that runs inside it (below autograd, so
    backward and double backward are counted; no module hooks, which torch.autograd.grad would trip)."""

    def __init__(self):
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.flops += formula(*args, **kwargs, out_val=out)
        return out


def training_iteration_gflop(experiment: str, batch_size: int, overrides: list[str] = (), lazy_r1: bool = False) -> float:
    """One full iteration: D step, G step, EMA update. R1 in the iteration (as benchmarks.train_step times it),
    or with lazy_r1 the mean over one R1 period of the experiment's lazy_reg iterations (as benchmarks.toy runs)."""
    model, _ = build_model(experiment, list(overrides))
    model = without_trainer(model.to(META))
    model.full_precision = contextlib.nullcontext  # autocast has no meta device; everything is fp32 here anyway
    iterations = model.hparams.lazy_reg if lazy_r1 else 1
    model.hparams.lazy_reg = iterations
    x_0 = torch.zeros(batch_size, *model.sample_shape, device=META)
    with FlopCount() as count:
        for _ in range(iterations):
            model.train_iteration(x_0)
    return count.flops / 1e9 / iterations


def sampling_gflop(experiment: str, batch_size: int, timesteps: int) -> float:
    model, _ = build_model(experiment, [])
    model = model.to(META).eval()
    model.schedule = VPSchedule(timesteps).to(META)
    with FlopCount() as count, torch.no_grad():  # (under inference_mode the mode sees no op; the FLOPs are the same)
        model.sample(batch_size, use_ema=True)
    return count.flops / 1e9


def peak_gflops(repeats: int) -> dict:
    """Measured fp32 throughput: a 2048^3 matrix multiply and a 3x3, 256-channel convolution (16 x 16 x 16)."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    x, w = torch.randn(16, 256, 16, 16), torch.randn(256, 256, 3, 3)
    with torch.inference_mode():
        matmul = measure(lambda: a @ b, repeats=repeats, warmup=2)["min_s"]
        conv = measure(lambda: F.conv2d(x, w, padding=1), repeats=repeats, warmup=2)["min_s"]
    return {"matmul_2048": 2 * 2048**3 / matmul / 1e9, "conv3x3_256ch": 2 * 16 * 256 * 256 * 9 * 256 / conv / 1e9}


def latest(name: str, *keys: str) -> float | None:
    """A figure from the latest benchmarks/results/<name>.json, if that benchmark has run."""
    path = Path("benchmarks/results") / f"{name}.json"
    if not path.exists():
        return None
    value = json.loads(path.read_text())
    for key in keys:
        value = value[key]
    return value


def main(argv: list[str]) -> None:
    args, _ = parse_args(argv, {"repeats": 5})
    torch.set_flush_denormal(True)
    peak = peak_gflops(args["repeats"])
    best = max(peak.values())
    toy = ["model.generator.hidden_dim=512", "model.discriminator.hidden_dim=512"]  # benchmarks.toy's reference size
    toy_its = latest("toy", "bare_pytorch_its")
    workloads = {  # name: (GFLOP, target seconds, our latest measured seconds)
        "cifar10_training_iteration_batch8": (training_iteration_gflop("cifar10", 8), 3.5,
                                              latest("train_step_cifar10", "median_s")),
        "cifar10_sampling_16_images_T4": (sampling_gflop("cifar10", 16, 4), 2.0,
                                          latest("sampling_cifar10", "by_timesteps", "T4", "median_s")),
        "celebahq256_training_iteration_batch2": (training_iteration_gflop("celebahq256", 2), 25.0,
                                                  latest("train_step_celebahq256", "median_s")),
        "toy_3x512_iteration_batch512": (training_iteration_gflop("gaussians25", 512, toy, lazy_r1=True), 1 / 25,
                                         1 / toy_its if toy_its else None),
    }
    rows = {}
    for name, (gflop, target_s, measured_s) in workloads.items():
        rows[name] = {"gflop": gflop, "seconds_at_peak": gflop / best, "target_s": target_s,
                      "gflops_target_needs": gflop / target_s, "target_over_peak": gflop / target_s / best,
                      "measured_s": measured_s, "measured_gflops": gflop / measured_s if measured_s else None}
    write_result("roofline", {"peak_gflops": peak, "workloads": rows})
    print(f"\nfp32 peak here: {peak['matmul_2048']:.0f} GFLOP/s (matmul), {peak['conv3x3_256ch']:.0f} GFLOP/s (3x3 conv)")
    print(f"{'workload':40s} {'GFLOP':>8s} {'s at peak':>10s} {'target s':>9s} {'needs GFLOP/s':>14s} {'measured s':>11s} {'reached':>8s}")
    for name, r in rows.items():
        measured = f"{r['measured_s']:.3f}" if r["measured_s"] else "–"
        reached = f"{r['measured_gflops']:.0f}" if r["measured_gflops"] else "–"
        print(f"{name:40s} {r['gflop']:8.1f} {r['seconds_at_peak']:10.3f} {r['target_s']:9.3f} "
              f"{r['gflops_target_needs']:14.0f} {measured:>11s} {reached:>8s}")


if __name__ == "__main__":
    main(sys.argv[1:])
