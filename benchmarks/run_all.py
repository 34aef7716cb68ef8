"""make bench: every CPU benchmark in turn; each writes benchmarks/results/<name>.json.

Sized for ~10 minutes on 2 cores (GPU figures: benchmarks/gpu.sh)."""
from benchmarks import data_loading, evaluation, roofline, sampling, toy, train_step


def main() -> None:
    toy.main(["iterations=300"])
    train_step.main(["experiment=cifar10", "batch_size=8", "repeats=5"])
    sampling.main(["experiment=cifar10", "batch_size=16", "repeats=5"])
    train_step.main(["experiment=celebahq256", "batch_size=2", "repeats=3"])
    evaluation.main(["experiment=stacked_digits", "num_samples=200", "batch_size=50", "repeats=3"])
    data_loading.main(["experiment=stacked_digits", "iterations=20"])
    roofline.main(["repeats=5"])  # last: it reads the figures above


if __name__ == "__main__":
    main()
