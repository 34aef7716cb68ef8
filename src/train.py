"""Train a DDGAN: python -m src.train [experiment=NAME] [key=value ...] (Hydra; -m for sweeps)."""
import logging
import sys

import hydra
import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

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


def build_callbacks(cfg: DictConfig) -> list[L.Callback]:
    return [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None and "_target_" in c]


def build_loggers(cfg: DictConfig) -> list:
    return [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None and "_target_" in c]


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
    trainer = instantiate(cfg.trainer, callbacks=build_callbacks(cfg), logger=build_loggers(cfg) or False)
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        metrics = train(cfg)
    except (ConfigError, DataError, InceptionWeightsError) as error:  # user-fixable: one line with the fix
        log.error(str(error))
        sys.exit(2)
    except TrainingDiverged as error:
        log.error(str(error))
        sys.exit(3)
    except SIGTERMException:  # a stop signal: last.ckpt was written at an iteration boundary
        log.warning("Training stopped by a signal; resume with ckpt_path=last (same output directory).")
        sys.exit(0)
    return metrics.get(cfg.optimized_metric) if cfg.get("optimized_metric") else None


if __name__ == "__main__":
    main()
