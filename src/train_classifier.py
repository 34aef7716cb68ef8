"""Train the digit classifier for FID / IS / mode coverage: python -m src.train_classifier dataset=digits
resolution=32 output=PATH.pt (Hydra; config conf/train_classifier.yaml)."""
import logging
import sys

import hydra
from omegaconf import DictConfig

from src.ddgan.cli import EXIT_BAD_INPUT
from src.ddgan.data.errors import DataError
from src.ddgan.metrics.digit_classifier import load_digit_splits, save_digit_classifier, timed_training

log = logging.getLogger(__name__)


def train_classifier(cfg: DictConfig) -> float:
    """Train on cfg.dataset at cfg.resolution, save to cfg.output; return the held-out accuracy."""
    splits = load_digit_splits(cfg.dataset, resolution=cfg.resolution, held_out_fraction=cfg.held_out_fraction,
                               seed=cfg.seed, data_dir=cfg.data_dir, download=cfg.download)
    classifier, held_out_accuracy, seconds = timed_training(
        splits, **cfg.model, **cfg.train, seed=cfg.seed, device=cfg.device, num_threads=cfg.num_threads
    )
    path = save_digit_classifier(cfg.output, classifier, held_out_accuracy=held_out_accuracy, dataset=cfg.dataset)
    log.info(f"{cfg.dataset} {cfg.resolution}px: held-out accuracy {held_out_accuracy:.4f} on "
             f"{len(splits.held_out_labels)} images after {seconds:.1f} s; saved to {path}")
    return held_out_accuracy


@hydra.main(version_base="1.3", config_path="../conf", config_name="train_classifier")
def main(cfg: DictConfig) -> float:
    try:
        held_out_accuracy = train_classifier(cfg)
    except (DataError, ValueError) as error:
        log.error(str(error))
        sys.exit(EXIT_BAD_INPUT)
    if cfg.min_accuracy is not None and held_out_accuracy < cfg.min_accuracy:
        log.error(f"held-out accuracy {held_out_accuracy:.4f} is below min_accuracy={cfg.min_accuracy}")
        sys.exit(1)
    return held_out_accuracy


if __name__ == "__main__":
    main()
