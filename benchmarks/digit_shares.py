"""Where a stacked_digits model's mode KL comes from: the share of each digit per colour channel of its EMA samples
(the digit classifier on each channel, as the mode metric reads them) and each channel's KL to uniform.

    python -m benchmarks.digit_shares ckpt_path=<run>/checkpoints/last.ckpt classifier_path=<run>/digit_classifier.pt

A channel that over-produces some digits (blurred strokes the classifier reads as round digits) raises the mode KL
even when every combination appears (docs/stacked_digits.md).
"""
import sys

import torch

from benchmarks.common import parse_args, write_result
from src.ddgan.checkpoint import load_ddgan
from src.ddgan.data.stacked import MODE_WEIGHTS
from src.ddgan.metrics.digit_classifier import load_digit_classifier
from src.ddgan.metrics.mode_coverage import mode_coverage, mode_histogram, predict_stacked_modes

DEFAULTS = {"ckpt_path": None, "classifier_path": None, "num_samples": 5000, "batch_size": 500, "seed": 0,
            "name": "digit_shares"}


def main(argv: list[str]) -> None:
    args, _ = parse_args(argv, DEFAULTS)
    if not args["ckpt_path"] or not args["classifier_path"]:
        sys.exit("ckpt_path=<a stacked_digits checkpoint> and classifier_path=<its digit_classifier.pt> are required")
    model = load_ddgan(args["ckpt_path"]).eval()
    classifier = load_digit_classifier(args["classifier_path"])
    rng = torch.Generator().manual_seed(args["seed"])
    with torch.no_grad():
        modes = torch.cat([predict_stacked_modes(classifier, model.sample(args["batch_size"], rng=rng).float().clamp(-1, 1))
                           for _ in range(args["num_samples"] // args["batch_size"])])
    digits = (modes[:, None] // MODE_WEIGHTS) % 10  # (N, 3): the R, G, B digits
    channels = {}
    for channel, name in enumerate("RGB"):
        histogram = mode_histogram(digits[:, channel], num_modes=10)
        channels[name] = {"shares": [round(float(s), 4) for s in histogram / len(digits)],
                          "kl_to_uniform": mode_coverage(histogram).kl_to_uniform}
        print(f"{name}: digit shares {channels[name]['shares']}, KL {channels[name]['kl_to_uniform']:.3f}")
    write_result(args["name"], {"ckpt_path": str(args["ckpt_path"]), "num_samples": len(modes), "channels": channels})


if __name__ == "__main__":
    torch.set_flush_denormal(True)
    main(sys.argv[1:])
