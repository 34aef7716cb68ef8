"""Load a trained DDGAN from a checkpoint: the run's config is stored in it, so no config is needed."""
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from src.ddgan.module import DDGAN


def load_ddgan(ckpt_path: str | Path, map_location: str | torch.device = "cpu") -> DDGAN:
    """Rebuild the DDGAN of a training checkpoint (networks from its stored config) and load its weights."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise FileNotFoundError(f"ckpt_path={str(ckpt_path)!r}: no such file. Give a .ckpt written by src.train or src.convert_official.")
    checkpoint = torch.load(path, map_location=map_location, weights_only=False)
    config = checkpoint.get("hyper_parameters", {}).get("config")
    if config is None:
        raise ValueError(f"{path} holds no DDGAN run config (hyper_parameters.config): it was not written by src.train or src.convert_official.")
    model = instantiate(OmegaConf.create(config).model, _convert_="partial")
    model.load_state_dict(checkpoint["state_dict"])
    model.iteration = checkpoint.get("ddgan", {}).get("iteration", 0)
    model.hparams["config"] = config
    return model.eval()
