import contextlib
import errno
import os
from pathlib import Path

import pytest
import torch

REFERENCE_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "reference"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """../shared/reference: skipped where it is absent, except in CI (CI=true), where it must be there."""
    if not REFERENCE_DIR.is_dir():
        message = f"reference files not found at {REFERENCE_DIR}"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"{message}; CI must provide them")
        pytest.skip(message)
    return REFERENCE_DIR


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield


from src.ddgan.cli import CONFIG_DIR

TINY_TOY = [
    "model.generator.hidden_dim=32",
    "model.discriminator.hidden_dim=32",
    "data.batch_size_per_device=64",
    "data.iterations_per_epoch=3",
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "trainer.log_every_n_steps=1",
    "callbacks.mixture_eval.num_samples=500",
    "logger=csv",
]


def compose_config(overrides: list[str], output_dir: Path | None = None, config_name: str = "train"):
    """The resolved config of `config_name` with `overrides`, as the command would build it (optionally its output_dir)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import open_dict

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = hydra_compose(config_name=config_name, overrides=overrides)
    if output_dir is not None:
        with open_dict(cfg):
            cfg.paths.output_dir = str(output_dir)
    return cfg


@pytest.fixture
def compose():
    """compose(overrides, output_dir) -> the resolved training config, as `python -m src.train` would build it."""
    return compose_config


@contextlib.contextmanager
def single_thread():
    """One intra-op thread inside: several times faster than two when the 2 CPU cores are shared."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture
def one_thread():
    with single_thread():
        yield


def fill_the_disk(obj, file) -> None:
    """A torch.save stand-in for a disk that fills mid-write: some bytes, then ENOSPC."""
    file.write(b"partial")
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
