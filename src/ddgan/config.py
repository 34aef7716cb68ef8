"""Checks of a composed training config, run before anything is built: one clear line per problem."""
from pathlib import Path

from omegaconf import DictConfig

from src.ddgan.diffusion import validate_schedule
from src.ddgan.mixture import validate_centers
from src.ddgan.module import validate_hyperparameters


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key, the value and what is allowed."""


def resolve_ckpt_path(ckpt_path: str | None, output_dir: str) -> str | None:
    """`last` means <output_dir>/checkpoints/last.ckpt; a file must exist."""
    if ckpt_path is None:
        return None
    path = Path(output_dir) / "checkpoints" / "last.ckpt" if ckpt_path == "last" else Path(ckpt_path)
    if not path.is_file():
        raise ConfigError(f"ckpt_path={ckpt_path!r}: no checkpoint at {path}. Give an existing .ckpt file, or 'last' with the run's paths.output_dir.")
    return str(path)


def validate_train_config(cfg: DictConfig) -> None:
    """Raise ConfigError for the first invalid value of a training config."""
    try:
        diffusion = cfg.diffusion
        validate_schedule(diffusion.num_timesteps, diffusion.beta_min, diffusion.beta_max, diffusion.eps)
        model = cfg.model
        validate_hyperparameters(r1_gamma=model.r1_gamma, lazy_reg=model.lazy_reg, ema_decay=model.ema_decay)
        if cfg.data.get("centers") is not None:
            validate_centers(cfg.data.centers)
    except ValueError as error:
        raise ConfigError(str(error)) from None
