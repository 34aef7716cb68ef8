"""Train a DDGAN: python -m src.train [experiment=NAME] [key=value ...] (Hydra; -m for sweeps)."""
import json
import logging
import sys
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from src.ddgan.checkpoint import CheckpointError, check_resumable
from src.ddgan.cli import EXIT_BAD_INPUT, EXIT_DIVERGED
from src.ddgan.config import (
    ConfigError,
    check_data_available,
    resolve_ckpt_path,
    validate_data_matches_model,
    validate_train_config,
    validate_trainer,
)
from src.ddgan.data.errors import DataError
from src.ddgan.metrics.inception import InceptionWeightsError
from src.ddgan.module import TrainingDiverged

log = logging.getLogger(__name__)


BOOKKEEPING = {"epoch", "iteration", "num_samples", "num_real", "num_modes", "feature_extractor", "is_std"}
SHORT_NAMES = {"modes_covered": "modes", "high_quality_fraction": "high_quality", "mode_kl": "kl"}


def format_metrics(metrics: dict) -> str:
    """The numbers of a metrics.json, compactly: `modes 25/25, high_quality 0.97, kl 0.01`."""
    parts = []
    for key, value in metrics.items():
        if key in BOOKKEEPING or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if key == "modes_covered" and "num_modes" in metrics:
            value = f"{value}/{metrics['num_modes']}"
        parts.append(f"{SHORT_NAMES.get(key, key)} {f'{value:.3g}' if isinstance(value, float) else value}")
    return ", ".join(parts) or "no metrics"


def summary_line(output_dir: str | Path, iteration: int) -> str:
    """`done: iteration N | <final metrics> | run DIR | samples PNG | curves PNG | checkpoint last.ckpt`, the parts
    whose files exist (samples: the mixture scatter, else the last sample grid)."""
    run = Path(output_dir)
    metrics = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").is_file() else {}
    grids = sorted((run / "samples").glob("epoch*.png"))
    files = {"samples": run / "samples.png" if (run / "samples.png").is_file() else (grids[-1] if grids else None),
             "curves": run / "metric_curves.png", "checkpoint": run / "checkpoints" / "last.ckpt"}
    parts = [f"done: iteration {iteration}", format_metrics(metrics), f"run {run}"]
    return " | ".join(parts + [f"{name} {path}" for name, path in files.items() if path is not None and path.is_file()])


def build_callbacks(cfg: DictConfig) -> list[L.Callback]:
    return [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None and "_target_" in c]


def build_loggers(cfg: DictConfig) -> list:
    return [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None and "_target_" in c]


def finish_wandb_runs(loggers: list) -> None:
    """End the wandb run a WandbLogger started, so that the next job of a multirun (same process) starts its own."""
    if any(isinstance(logger, WandbLogger) for logger in loggers):
        import wandb  # the logger's own dependency

        wandb.finish()  # the process's current run; nothing when none was started


def train(cfg: DictConfig) -> dict[str, float]:
    """Build data, model, callbacks, loggers and trainer from `cfg`, then fit (resuming from cfg.ckpt_path)."""
    validate_train_config(cfg)
    datamodule = instantiate(cfg.data)
    check_data_available(datamodule, cfg)  # missing data first: it is what a user fixes first
    validate_data_matches_model(datamodule, cfg)
    validate_trainer(cfg.trainer)
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), cfg.paths.output_dir)
    if cfg.trainer.get("accelerator") == "cpu":
        torch.set_flush_denormal(True)  # denormals make CPU training up to 6x slower
    L.seed_everything(cfg.seed, workers=True)
    model = instantiate(cfg.model, _convert_="partial")
    model.hparams["config"] = OmegaConf.to_container(cfg, resolve=True)
    if ckpt_path is not None:
        check_resumable(ckpt_path, model, model.hparams["config"])
    loggers = build_loggers(cfg)
    trainer = instantiate(cfg.trainer, callbacks=build_callbacks(cfg), logger=loggers or False)
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)  # a checkpoint is data
    finally:
        finish_wandb_runs(loggers)
    if trainer.is_global_zero:
        print(summary_line(cfg.paths.output_dir, model.iteration), flush=True)
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        metrics = train(cfg)
    except (ConfigError, CheckpointError, DataError, InceptionWeightsError) as error:  # user-fixable: one line with the fix
        log.error(str(error))
        sys.exit(EXIT_BAD_INPUT)
    except TrainingDiverged as error:
        log.error(str(error))
        sys.exit(EXIT_DIVERGED)
    except SIGTERMException:  # a stop signal: last.ckpt was written at an iteration boundary
        log.warning("Training stopped by a signal; resume with ckpt_path=last (same output directory).")
        sys.exit(0)
    return metrics.get(cfg.optimized_metric) if cfg.get("optimized_metric") else None


if __name__ == "__main__":
    main()
