"""make bench: every CPU benchmark in turn; each writes benchmarks/results/<name>.json."""
from benchmarks import sampling, toy, train_step


def main() -> None:
    toy.main(["iterations=300"])
    train_step.main(["experiment=cifar10", "batch_size=8", "repeats=5"])
    sampling.main(["experiment=cifar10", "batch_size=16", "repeats=5"])
    train_step.main(["experiment=celebahq256", "batch_size=2", "repeats=3"])


if __name__ == "__main__":
    main()
