"""What a trained stacked_digits generator does with z, per denoising level: for real triples x_0, pairs from q,
and several draws of z per x_{t+1}, the spread of x̂_0 = G(x_{t+1}, t, z) over z, over the batch, and its error.

    python -m benchmarks.z_dependence ckpt_path=logs/stacked_digits/runs/<date>/checkpoints/last.ckpt

A generator that ignores z (spread over z ≈ 0) and, at the noisy levels, returns one image for any x_{t+1}
(spread over the batch ≈ 0) is a median regressor, not a GAN generator (docs/stacked_digits.md).
"""
import sys

import torch

from benchmarks.common import parse_args, write_result
from src.ddgan.checkpoint import load_ddgan
from src.ddgan.data.digits import load_digit_images
from src.ddgan.data.stacked import StackedDigitsDataset

DEFAULTS = {"ckpt_path": None, "num_images": 64, "num_z": 8, "seed": 0, "ema": True, "name": "z_dependence"}


@torch.no_grad()
def level_statistics(model, x_0: torch.Tensor, num_z: int, use_ema: bool) -> list[dict]:
    generator = model.generator_ema if use_ema else model.generator
    x_0, rows = model.to_network_space(x_0), []
    for t in range(model.schedule.num_timesteps):
        level = torch.full((len(x_0),), t)
        _, x_tp1 = model.schedule.q_sample_pair(x_0, level)
        preds = torch.stack([model.predict_x0(generator, x_tp1, level) for _ in range(num_z)])  # (num_z, N, ...)
        rows.append({"t": t, "std_over_z": float(preds.std(0).mean()), "std_over_batch": float(preds[0].std(0).mean()),
                     "mean_abs_error_of_z_mean": float((preds.mean(0) - x_0).abs().mean())})
    return rows


def main(argv: list[str]) -> None:
    args, _ = parse_args(argv, DEFAULTS)
    if not args["ckpt_path"]:
        sys.exit("ckpt_path=<a stacked_digits checkpoint> is required")
    torch.manual_seed(args["seed"])
    model = load_ddgan(args["ckpt_path"]).eval()
    digits, labels = load_digit_images(model.sample_shape[-1])
    dataset = StackedDigitsDataset(digits[:, 0], labels, num_images=args["num_images"], seed=args["seed"])
    x_0 = torch.stack([dataset[i][0] for i in range(len(dataset))])
    rows = level_statistics(model, x_0, args["num_z"], args["ema"])
    for row in rows:
        print(f"t={row['t']}: std over z {row['std_over_z']:.4f}, over the batch {row['std_over_batch']:.3f}, "
              f"|E_z x0_pred - x_0| {row['mean_abs_error_of_z_mean']:.3f}")
    write_result(args["name"], {"ckpt_path": str(args["ckpt_path"]), "ema": args["ema"], "levels": rows})


if __name__ == "__main__":
    torch.set_flush_denormal(True)
    main(sys.argv[1:])
