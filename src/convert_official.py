"""Convert a released DDGAN generator (netG_*.pth) into our checkpoint format.

    python -m src.convert_official experiment=cifar10 official_ckpt=netG_1200.pth output=cifar10_official.ckpt

The released file holds the EMA generator weights (keys may carry DDP's `module.` prefix); they become
both our `generator` and `generator_ema`. The experiment config decides the architecture and is stored
in the checkpoint, so sampling and evaluation need nothing else.
"""
import os
from pathlib import Path

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from src.ddgan.checkpoint import read_checkpoint
from src.ddgan.cli import fail
from src.ddgan.module import DDGAN
from src.ddgan.nets.official import from_official_state_dict


def read_official_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a released generator file (a bare state dict or one under a common key)."""
    content = read_checkpoint(path, what="official_ckpt")
    for key in ("netG_dict", "state_dict", "model"):
        if isinstance(content, dict) and isinstance(content.get(key), dict):
            content = content[key]
    if not isinstance(content, dict) or not all(isinstance(v, torch.Tensor) for v in content.values()):
        raise ValueError(f"official_ckpt={str(path)!r} is not a generator state dict (a mapping of parameter names to tensors).")
    return content


def convert(cfg: DictConfig, official_ckpt: Path, output: Path) -> DDGAN:
    """Build the experiment's DDGAN, load the released generator into G and EMA, write `output` atomically."""
    model: DDGAN = instantiate(cfg.model, _convert_="partial")
    try:
        weights = from_official_state_dict(read_official_state_dict(official_ckpt), model.generator)
    except ValueError as error:
        raise ValueError(f"{official_ckpt} does not fit experiment={cfg.task_name}: {error}") from None
    model.generator.load_state_dict(weights)
    model.generator_ema.load_state_dict(weights)
    config = OmegaConf.to_container(cfg, resolve=True)
    for key in ("official_ckpt", "output"):
        config.pop(key, None)
    model.hparams["config"] = config
    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams), "ddgan": {"iteration": 0, "converted_from": str(official_ckpt)}}
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    torch.save(checkpoint, tmp)
    os.replace(tmp, output)
    return model


@hydra.main(version_base="1.3", config_path="../conf", config_name="convert_official")
def main(cfg: DictConfig) -> None:
    try:
        convert(cfg, Path(cfg.official_ckpt), Path(cfg.output))
    except ValueError as error:
        fail(str(error))
    print(f"{cfg.official_ckpt} -> {cfg.output} (experiment={cfg.task_name}, EMA generator)")


if __name__ == "__main__":
    main()
