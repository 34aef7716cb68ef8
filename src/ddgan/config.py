"""Checks of a composed training config, run before anything is built: one clear line per problem."""
import logging
import os
import tempfile
from pathlib import Path

import torch
from omegaconf import DictConfig

from src.ddgan.data.image_folder import ImageFolderDataModule
from src.ddgan.diffusion import validate_schedule
from src.ddgan.distributed import is_gan_ddp_strategy
from src.ddgan.mixture import validate_centers
from src.ddgan.module import validate_hyperparameters

log = logging.getLogger(__name__)

SUPPORTED_PRECISIONS = {"32-true": "cpu gpu", "32": "cpu gpu", "bf16-mixed": "cpu gpu", "16-mixed": "gpu"}


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key, the value and what is allowed."""


def resolve_ckpt_path(ckpt_path: str | None, output_dir: str) -> str | None:
    """`last` means <output_dir>/checkpoints/last.ckpt; a file must exist.

    A SLURM job that was requeued (SLURM_RESTART_COUNT > 0, e.g. by submitit after a timeout) resumes from its
    own last.ckpt when ckpt_path is null, like Lightning's own SLURM auto-resume.
    """
    last = Path(output_dir) / "checkpoints" / "last.ckpt"
    if ckpt_path is None:
        if int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0 and last.is_file():
            log.info(f"Requeued SLURM job: resuming from {last}")
            return str(last)
        return None
    path = last if ckpt_path == "last" else Path(ckpt_path)
    if not path.is_file():
        raise ConfigError(f"ckpt_path={ckpt_path!r}: no checkpoint at {path}. Give an existing .ckpt file, or 'last' with the run's paths.output_dir.")
    return str(path)


def count_devices(devices, accelerator: str) -> int | None:
    """How many devices per node Lightning will use for `devices` (None when only Lightning can tell)."""
    gpus = accelerator in ("gpu", "cuda")
    if isinstance(devices, str):
        devices = devices.strip()
        if devices == "auto":
            return torch.cuda.device_count() if gpus else 1
        if "," in devices:
            return len([d for d in devices.split(",") if d.strip()])
        if devices.lstrip("-").isdigit():
            devices = int(devices)
    if isinstance(devices, int):
        if devices == -1:
            return torch.cuda.device_count() if gpus else os.cpu_count()
        return devices
    if hasattr(devices, "__len__"):
        return len(devices)
    return None


def validate_trainer(trainer: DictConfig) -> None:
    """Accelerator, device count, strategy and precision against this machine and the DDGAN loop."""
    accelerator = str(trainer.get("accelerator", "auto"))
    devices = trainer.get("devices", "auto")
    num_nodes = trainer.get("num_nodes", 1)
    if accelerator in ("gpu", "cuda"):
        available = torch.cuda.device_count()
        if available == 0:
            raise ConfigError(f"trainer.accelerator={accelerator} but no CUDA GPU is visible on this machine: use trainer=cpu "
                              "(or trainer.accelerator=cpu, e.g. trainer=ddp trainer.accelerator=cpu for CPU processes).")
        requested = count_devices(devices, accelerator)
        if requested is not None and requested > available:
            raise ConfigError(f"trainer.devices={devices} but this machine has {available} visible GPU(s): use trainer.devices<={available} "
                              "(devices counts GPUs per node; more nodes: trainer.num_nodes).")
    requested = count_devices(devices, accelerator)
    if requested is not None and requested < 1:
        raise ConfigError(f"trainer.devices={devices} is invalid: give a positive number, -1 (all) or a list of device indices.")
    if not isinstance(num_nodes, int) or num_nodes < 1:
        raise ConfigError(f"trainer.num_nodes={num_nodes!r} is invalid: it must be an integer >= 1.")
    strategy = trainer.get("strategy", "auto")
    if isinstance(strategy, str) and strategy not in ("auto", "single_device"):
        raise ConfigError(f"trainer.strategy={strategy} wraps the module for a single backward per step; DDGAN's two-optimizer loop needs "
                          "trainer=ddp (GANDDPStrategy, see src/ddgan/distributed.py) or a single device.")
    if (requested or 1) * num_nodes > 1 and not is_gan_ddp_strategy(strategy):
        name = strategy.get("_target_") if hasattr(strategy, "get") else strategy
        raise ConfigError(f"trainer.devices={devices} x trainer.num_nodes={num_nodes} needs trainer=ddp (GANDDPStrategy: the DDGAN module "
                          f"averages its two networks' gradients itself), got trainer.strategy={name!r}.")
    precision = str(trainer.get("precision", "32-true"))
    device_kind = "gpu" if accelerator in ("gpu", "cuda") else "cpu" if accelerator == "cpu" else None
    supported = SUPPORTED_PRECISIONS.get(precision)
    if supported is None or (device_kind is not None and device_kind not in supported):
        where = f" on {device_kind.upper()}" if device_kind else ""
        allowed = [p for p, kinds in SUPPORTED_PRECISIONS.items() if device_kind is None or device_kind in kinds]
        raise ConfigError(f"trainer.precision={precision} is not supported{where}: use one of {', '.join(allowed)} "
                          "(mixed precision keeps fp32 weights, EMA, losses and R1).")


def validate_batch_for_discriminator(cfg: DictConfig) -> None:
    """The minibatch-stddev layer of the image discriminators splits a batch into groups of stddev_group."""
    group = (cfg.model.get("discriminator") or {}).get("stddev_group")
    batch = cfg.data.get("batch_size_per_device")
    if group is None or batch is None:
        return
    if batch >= group and batch % group:
        raise ConfigError(f"data.batch_size_per_device={batch} does not suit model.discriminator.stddev_group={group}: the minibatch-stddev "
                          f"layer needs a batch per device < {group} or a multiple of {group}.")


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_loader(data: DictConfig) -> None:
    """data.batch_size_per_device >= 1 (0 would train on empty batches) and data.num_workers >= 0, where the data has them."""
    batch = data.get("batch_size_per_device")
    if batch is not None and not (is_int(batch) and batch >= 1):
        raise ConfigError(f"data.batch_size_per_device={batch!r} is invalid: it must be an integer >= 1 (the batch of each device; "
                          "the global batch is this x the number of devices); set e.g. data.batch_size_per_device=16.")
    workers = data.get("num_workers")
    if workers is not None and not (is_int(workers) and workers >= 0):
        raise ConfigError(f"data.num_workers={workers!r} is invalid: it must be an integer >= 0 (loader processes per device; "
                          "0 loads in the main process); set data.num_workers=0 or more.")


def check_output_dir(output_dir: str) -> None:
    """paths.output_dir must be a directory this process can create files in (it is created later if missing): fail
    now rather than at the first log line or checkpoint. Nothing is created here (a probe file is removed at once)."""
    path = Path(output_dir).expanduser().absolute()
    existing = path
    while not existing.exists() and existing != existing.parent:  # the nearest existing folder (or file) on the path
        existing = existing.parent
    if not existing.is_dir():
        kind = "a file" if existing.is_file() else "not a directory"
        where = f"is {kind}" if existing == path else f"lies under {existing}, which is {kind}"
        raise ConfigError(f"paths.output_dir={output_dir} {where}: give a directory path (created if missing), "
                          f"e.g. paths.output_dir={existing.with_name(existing.name + '_run')}.")
    try:
        tempfile.TemporaryFile(dir=existing).close()
    except OSError as error:
        raise ConfigError(f"paths.output_dir={output_dir} is not writable ({existing}: {error.strerror or error}): give a directory "
                          "this user can write, e.g. under paths.log_dir (default ./logs).") from None


def validate_train_config(cfg: DictConfig) -> None:
    """Raise ConfigError for the first invalid value of a training config."""
    validate_loader(cfg.data)
    try:
        diffusion = cfg.diffusion
        validate_schedule(diffusion.num_timesteps, diffusion.beta_min, diffusion.beta_max, diffusion.eps)
        model = cfg.model
        validate_hyperparameters(r1_gamma=model.r1_gamma, lazy_reg=model.lazy_reg, ema_decay=model.ema_decay,
                                 max_consecutive_nonfinite=model.get("max_consecutive_nonfinite", 10),
                                 lr_decay_iterations=model.get("lr_decay_iterations"),
                                 reconstruction_weighting=model.get("reconstruction_weighting", "uniform"),
                                 reconstruction_samples=model.get("reconstruction_samples", 1),
                                 reconstruction_samples_from_t=model.get("reconstruction_samples_from_t", 0))
        if cfg.data.get("centers") is not None:
            validate_centers(cfg.data.centers)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    validate_batch_for_discriminator(cfg)
    checkpoint = (cfg.get("callbacks") or {}).get("model_checkpoint") or {}
    every = checkpoint.get("every_n_iterations", 0)
    if not isinstance(every, int) or every < 0:
        raise ConfigError(f"callbacks.model_checkpoint.every_n_iterations={every!r} is invalid: it must be an integer >= 0 (0: epoch ends only).")
    check_output_dir(cfg.paths.output_dir)


def world_size(trainer: DictConfig) -> int:
    """Processes the trainer config asks for: devices per node x nodes (1 where only Lightning can tell)."""
    devices = count_devices(trainer.get("devices", "auto"), str(trainer.get("accelerator", "auto"))) or 1
    num_nodes = trainer.get("num_nodes", 1)
    return max(1, devices) * (num_nodes if isinstance(num_nodes, int) and num_nodes > 0 else 1)


def check_data_available(datamodule, cfg: DictConfig) -> None:
    """Fail at once when the data is missing or unusable (DataError): with data.download=false, prepare_data() only
    checks; folders of images (and LMDBs) are set up now, so bad files and too few images for one batch per device
    stop the run before the model is built."""
    if cfg.data.get("download") is False:
        datamodule.prepare_data()
    if isinstance(datamodule, ImageFolderDataModule):
        datamodule.setup("fit", world_size=world_size(cfg.trainer))


def validate_data_matches_model(datamodule, cfg: DictConfig) -> None:
    """model.sample_shape (by default ${data.sample_shape}) must be the shape of the data points the datamodule yields,
    and model.num_classes its classes (checked after the datamodule is built, before fit)."""
    if getattr(datamodule, "sample_shape", None) is None:  # a datamodule of its own that does not say
        return
    data_shape = [int(d) for d in datamodule.sample_shape]
    model_shape = [int(d) for d in cfg.model.sample_shape]
    if data_shape != model_shape:
        raise ConfigError(f"model.sample_shape={model_shape} does not match the data: {type(datamodule).__name__} yields samples of shape "
                          f"{data_shape} (data.sample_shape); drop the model.sample_shape override (it follows data.sample_shape) or change the data.")
    data_classes, model_classes = getattr(datamodule, "model_classes", 0), int(cfg.model.get("num_classes", 0))  # DataError first
    if data_classes != model_classes:
        wanted = f"data.conditional=true and {data_classes} classes" if data_classes else "data.conditional=false"
        raise ConfigError(f"model.num_classes={model_classes} does not match the data ({wanted}): drop the "
                          "model.num_classes override (it follows data.conditional and data.num_classes)")
