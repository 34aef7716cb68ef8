"""WaveDiff against DDGAN in one run: sampling time and training-iteration time of the paper-size networks.

    python -m benchmarks.wavediff_vs_ddgan                          # CIFAR-10 and CelebA-HQ 256 on the CPU
    python -m benchmarks.wavediff_vs_ddgan pairs=cifar10 device=cuda sample_batch=100 train_batch=64 repeats=10

Each pair is the paper experiment and its WaveDiff one (`experiment=X` and `experiment=wavediff_X`), built from the
configs exactly as `python -m src.train` builds them. Sampling: the T-step EMA sampler (each experiment's own T,
inverse Haar transform included) on sample_batch images; training: one full iteration (D step with R1, G step, EMA;
R1 in every timed iteration for both) on train_batch images. Writes benchmarks/results/wavediff_vs_ddgan.json with
the WaveDiff / DDGAN speed-up of each.
"""
import sys

import torch

from benchmarks.common import measure, parse_args, peak_rss_gb, write_result
from benchmarks.sampling import sampler
from benchmarks.train_step import build_model, without_trainer

DEFAULTS = {"pairs": "cifar10,celebahq256", "device": "cpu", "sample_batch": 4, "train_batch": 2, "repeats": 3,
            "warmup": 1, "name": "wavediff_vs_ddgan"}


def timings(experiment: str, args: dict, device: torch.device) -> dict:
    """Sampling and training-iteration seconds of one experiment's networks."""
    model, cfg = build_model(experiment, [])
    model = without_trainer(model.to(device))
    model.hparams.lazy_reg = 1  # R1 in every timed iteration, for both models
    cuda = device.type == "cuda"
    x_0 = torch.rand(args["train_batch"], *model.sample_shape, device=device) * 2 - 1
    train = measure(lambda: model.train_iteration(x_0), repeats=args["repeats"], warmup=args["warmup"], cuda=cuda)
    model.eval()
    sample = measure(sampler(model, args["sample_batch"], "32", False), repeats=args["repeats"],
                     warmup=args["warmup"], cuda=cuda)
    count = lambda net: sum(p.numel() for p in net.parameters())
    return {"num_timesteps": cfg.diffusion.num_timesteps, "space": model.space,
            "network_shape": list(model.network_shape), "generator_parameters": count(model.generator),
            "discriminator_parameters": count(model.discriminator),
            "sample_s": sample["median_s"], "sample_images_per_second": args["sample_batch"] / sample["median_s"],
            "train_iteration_s": train["median_s"], "sampling": sample, "training": train}


def main(argv: list[str]) -> None:
    args, overrides = parse_args(argv, DEFAULTS)
    if overrides:
        raise SystemExit(f"unknown arguments {overrides}: choose from {sorted(DEFAULTS)}")
    device = torch.device(args["device"])
    torch.set_flush_denormal(True)
    results = {}
    for pair in args["pairs"].split(","):
        ddgan, wavediff = timings(pair, args, device), timings(f"wavediff_{pair}", args, device)
        results[pair] = {"ddgan": ddgan, "wavediff": wavediff,
                         "sampling_speedup": ddgan["sample_s"] / wavediff["sample_s"],
                         "training_speedup": ddgan["train_iteration_s"] / wavediff["train_iteration_s"]}
        print(f"{pair}: sampling {results[pair]['sampling_speedup']:.2f}x, "
              f"training {results[pair]['training_speedup']:.2f}x faster in wavelet space", flush=True)
    write_result(args["name"], {"device": str(device), "sample_batch": args["sample_batch"],
                                "train_batch": args["train_batch"], "pairs": results, "peak_rss_gb": peak_rss_gb()})


if __name__ == "__main__":
    main(sys.argv[1:])
