"""Every experiment config composes, and its model instantiates (paper sizes on the meta device)."""
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

EXPERIMENTS = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "conf" / "experiment").glob("*.yaml"))
PAPER_PARAMETERS = {  # generator, discriminator (shared/PAPER.md)
    "cifar10": (48_432_515, 12_741_633),
    "stackedmnist": (48_432_515, 12_741_633),
    "celebahq256": (39_726_979, 27_737_217),
    "lsun_church256": (39_726_979, 27_737_217),
}


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_and_instantiates(compose, tmp_path, experiment):
    cfg = compose([f"experiment={experiment}"], tmp_path)
    assert cfg.task_name == experiment
    with torch.device("meta"):
        model = instantiate(cfg.model, _convert_="partial")
    assert model.schedule.num_timesteps == cfg.diffusion.num_timesteps
    if experiment in PAPER_PARAMETERS:
        assert (count(model.generator), count(model.discriminator)) == PAPER_PARAMETERS[experiment]
    datamodule = instantiate(cfg.data)
    assert list(model.sample_shape) == datamodule.sample_shape == list(cfg.data.sample_shape)


def test_paper_settings_are_the_released_ones(compose, tmp_path):
    cifar = compose(["experiment=cifar10"], tmp_path)
    assert (cifar.diffusion.num_timesteps, cifar.model.r1_gamma, cifar.model.lazy_reg, cifar.model.ema_decay) == (4, 0.02, 15, 0.9999)
    assert cifar.data.batch_size_per_device * cifar.trainer.devices == 256
    celeba = compose(["experiment=celebahq256"], tmp_path)
    assert (celeba.diffusion.num_timesteps, celeba.model.r1_gamma, celeba.model.lr_g, celeba.model.lr_d) == (2, 2.0, 2e-4, 1e-4)
    assert celeba.data.batch_size_per_device * celeba.trainer.devices == 32
    church = compose(["experiment=lsun_church256"], tmp_path)
    assert (church.diffusion.num_timesteps, church.model.r1_gamma, church.model.ema_decay) == (4, 1.0, 0.999)
    assert church.data.batch_size_per_device * church.trainer.devices == 64
