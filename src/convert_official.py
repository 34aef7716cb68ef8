"""Convert a released DDGAN or WaveDiff generator (netG_*.pth) into our checkpoint format.

    python -m src.convert_official experiment=cifar10 official_ckpt=netG_1200.pth output=cifar10_official.ckpt
    python -m src.convert_official experiment=wavediff_celebahq256 official_ckpt=netG_500.pth \
        output=celebahq256_wavediff.ckpt official_args="$(cat run_sh_line.txt)"        # a WaveDiff generator

The released file holds the EMA generator weights (keys may carry DDP's `module.` prefix); they become
both our `generator` and `generator_ema`. The experiment config decides the architecture and is stored
in the checkpoint, so sampling and evaluation need nothing else. `official_args` (optional, a WaveDiff
run.sh training command) is checked against that architecture, against `model.space=wavelet` and its Haar
subband order against the experiment's `model.subband_order`; the checkpoint records the order.
"""
from pathlib import Path

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from src.ddgan.checkpoint import read_checkpoint, save_ddgan
from src.ddgan.cli import fail
from src.ddgan.module import DDGAN
from src.ddgan.nets.official import from_official_state_dict
from src.ddgan.nets.wavediff import check_wavediff_subband_order, parse_wavediff_args, wavediff_generator_kwargs


def read_official_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a released generator file (a bare state dict or one under a common key)."""
    content = read_checkpoint(path, what="official_ckpt")
    for key in ("netG_dict", "state_dict", "model"):
        if isinstance(content, dict) and isinstance(content.get(key), dict):
            content = content[key]
    if not isinstance(content, dict) or not all(isinstance(v, torch.Tensor) for v in content.values()):
        raise ValueError(f"official_ckpt={str(path)!r} is not a generator state dict (a mapping of parameter names to tensors).")
    return content


def _plain(value):
    return list(value) if isinstance(value, list | tuple) else value


def check_official_args(cfg: DictConfig, official_args: str) -> str:
    """ValueError (naming the setting) unless the experiment's generator is the one the released WaveDiff command
    builds, in `model.space=wavelet` with the command's `model.subband_order`; returns the command's subband order."""
    released = parse_wavediff_args(official_args)
    if OmegaConf.select(cfg, "model.space", default="pixel") != "wavelet":
        raise ValueError(f"official_args are a WaveDiff run, which trains on Haar subbands, but experiment={cfg.task_name} "
                         "has model.space=pixel: set model.space=wavelet")
    cls, kwargs = wavediff_generator_kwargs(released)
    ours = cfg.model.generator
    target = f"{cls.__module__}.{cls.__name__}"
    if ours.get("_target_") != target:
        choice = "wavelet_ncsnpp" if cls.__name__ == "WaveletNCSNpp" else "ncsnpp"
        raise ValueError(f"official_args build {cls.__name__} (--net_type {released['net_type']}), experiment="
                         f"{cfg.task_name} builds {ours.get('_target_')}: add model/generator={choice}")
    for key, value in kwargs.items():
        mine = OmegaConf.to_object(ours[key]) if OmegaConf.is_config(ours.get(key)) else ours.get(key)
        if _plain(mine) != _plain(value):
            raise ValueError(f"official_args give {key}={value!r}, experiment={cfg.task_name} has "
                             f"model.generator.{key}={mine!r}: set model.generator.{key}={value!r}")
    check_wavediff_subband_order(released, cfg.model.subband_order)
    return "pytorch_wavelets" if released["use_pytorch_wavelet"] else "dwt_idwt"


def convert(cfg: DictConfig, official_ckpt: Path, output: Path) -> DDGAN:
    """Build the experiment's DDGAN, load the released generator into G and EMA, write `output` atomically."""
    official_args = cfg.get("official_args")
    subband_order = check_official_args(cfg, official_args) if official_args else None
    model: DDGAN = instantiate(cfg.model, _convert_="partial")
    try:
        weights = from_official_state_dict(read_official_state_dict(official_ckpt), model.generator)
    except ValueError as error:
        raise ValueError(f"{official_ckpt} does not fit experiment={cfg.task_name}: {error}") from None
    model.generator.load_state_dict(weights)
    model.generator_ema.load_state_dict(weights)
    config = OmegaConf.to_container(cfg, resolve=True)
    for key in ("official_ckpt", "output", "official_args"):
        config.pop(key, None)
    model.hparams["config"] = config
    provenance = {"converted_from": str(official_ckpt)}
    if subband_order is not None:
        provenance |= {"official_args": official_args, "subband_order": subband_order}
    save_ddgan(model, output, **provenance)
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
