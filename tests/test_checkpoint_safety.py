"""Checkpoint files are data, never code: weights_only loading everywhere a file comes in, an allowlist of the
targets a stored config may build, one-line errors for damaged or foreign files, and the upgrade of trusted files."""
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from src.ddgan.checkpoint import (
    CheckpointError,
    CheckpointWriteError,
    check_resumable,
    load_ddgan,
    read_checkpoint,
    save_ddgan,
)
from src.ddgan.metrics.digit_classifier import load_digit_classifier
from src.train import train
from src.upgrade_checkpoint import upgrade
from tests.conftest import TINY_TOY, fill_the_disk
from tests.test_sample import run_module, save_tiny_checkpoint
from tests.test_train import run_cli

pytestmark = pytest.mark.usefixtures("one_thread")


class CreatesAFile:
    """Unpickling it calls open(path, "w"): what a malicious checkpoint would do with os.system."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


def with_payload(checkpoint: Path, marker: Path) -> Path:
    content = torch.load(checkpoint, weights_only=True)
    content["extra"] = CreatesAFile(marker)
    torch.save(content, checkpoint)
    return checkpoint


@pytest.fixture
def code_checkpoint(compose, tmp_path):
    return with_payload(save_tiny_checkpoint(compose, tmp_path), tmp_path / "marker")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # runpy: the module is already imported
@pytest.mark.parametrize("command", ["src.sample", "src.evaluate", "src.visualize", "src.edit"])
def test_every_command_refuses_a_checkpoint_that_carries_code(command, code_checkpoint, tmp_path, capsys):
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "input.png")
    extra = {"src.sample": [], "src.evaluate": ["metrics.names=[modes]"], "src.visualize": [],
             "src.edit": [f"input={tmp_path / 'input.png'}", "start_step=1"]}[command]
    with pytest.raises(SystemExit) as exit_info:
        run_module(command, f"ckpt_path={code_checkpoint}", f"output_dir={tmp_path / 'out'}", *extra)
    assert exit_info.value.code == 2
    assert not (tmp_path / "marker").exists()  # nothing ran
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert str(code_checkpoint) in line and "io.open" in line and "src.upgrade_checkpoint" in line


def test_training_refuses_to_resume_from_a_checkpoint_that_carries_code(compose, tmp_path):
    train(compose(TINY_TOY, tmp_path / "run"))
    last = with_payload(tmp_path / "run" / "checkpoints" / "last.ckpt", tmp_path / "marker")
    with pytest.raises(CheckpointError, match="io.open"):
        train(compose(TINY_TOY + [f"ckpt_path={last}", "trainer.max_epochs=2"], tmp_path / "run"))
    assert not (tmp_path / "marker").exists()
    with pytest.raises(CheckpointError, match="io.open"):  # the classifier and reference caches too
        load_digit_classifier(with_payload(save_tiny_checkpoint(compose, tmp_path), tmp_path / "marker"))
    assert not (tmp_path / "marker").exists()


@pytest.mark.parametrize("target", ["builtins.open", "src.ddgan.checkpoint.os.system", "src.ddgan.files.atomic_torch_save"])
def test_a_stored_config_builds_only_ddgan_networks(compose, tmp_path, target):
    path = save_tiny_checkpoint(compose, tmp_path)
    content = torch.load(path, weights_only=True)
    content["hyper_parameters"]["config"]["model"]["generator"] = {"_target_": target, "file": str(tmp_path / "written")}
    torch.save(content, path)
    with pytest.raises(CheckpointError, match=f"model.generator._target_='{target}', which is not one of ddgan's networks"):
        load_ddgan(path)
    assert not (tmp_path / "written").exists()


def test_damaged_and_foreign_files_give_one_line(compose, tmp_path):
    good = save_tiny_checkpoint(compose, tmp_path)
    (tmp_path / "truncated.ckpt").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (tmp_path / "notes.ckpt").write_text("not a checkpoint")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.ckpt")
    for name in ("truncated.ckpt", "notes.ckpt"):
        with pytest.raises(CheckpointError, match="is not a complete PyTorch checkpoint"):
            read_checkpoint(tmp_path / name)
    with pytest.raises(CheckpointError, match="holds no DDGAN run config"):
        load_ddgan(tmp_path / "foreign.ckpt")
    result = run_cli(f"ckpt_path={tmp_path / 'truncated.ckpt'}", f"paths.output_dir={tmp_path / 'run'}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "truncated.ckpt' is not a complete PyTorch checkpoint (truncated, or not a torch file)" in result.stdout + result.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_resuming_another_experiments_checkpoint_names_what_wrote_it(compose, tmp_path):
    toy_cfg = compose(TINY_TOY, tmp_path / "toy")
    train(toy_cfg)
    digits_cfg = compose(["experiment=stacked_digits", "model.generator.base_channels=8"], tmp_path / "digits")
    model = instantiate(digits_cfg.model, _convert_="partial")
    with pytest.raises(CheckpointError) as error:
        check_resumable(tmp_path / "toy/checkpoints/last.ckpt", model, OmegaConf.to_container(digits_cfg, resolve=True))
    message = str(error.value)
    assert f"written by experiment {toy_cfg.task_name!r} (generator ToyGenerator, discriminator ToyDiscriminator)" in message
    assert "this run, experiment 'stacked_digits' (generator NCSNpp, discriminator SmallDiscriminator)" in message


def test_a_trusted_old_checkpoint_is_upgraded_once_and_then_loads(compose, tmp_path):
    path = save_tiny_checkpoint(compose, tmp_path)
    content = torch.load(path, weights_only=True)
    content["hyper_parameters"]["config"] = OmegaConf.create(content["hyper_parameters"]["config"])  # older writers
    content["hyper_parameters"]["data_dir"] = Path(os.sep) / "data"
    content["rng"] = np.random.default_rng(0).bit_generator.state["state"]["state"], np.arange(3)
    torch.save(content, path)
    with pytest.raises(CheckpointError, match="was refused"):
        load_ddgan(path)
    upgraded = upgrade(path, tmp_path / "upgraded.ckpt")
    with pytest.raises(CheckpointError, match="none of the data types src.upgrade_checkpoint converts"):
        upgrade(with_payload(save_tiny_checkpoint(compose, tmp_path / "code"), tmp_path / "marker"), tmp_path / "x.ckpt")
    assert not (tmp_path / "marker").exists() and not (tmp_path / "x.ckpt").exists()  # the upgrade runs no code either
    model = load_ddgan(upgraded)
    assert read_checkpoint(upgraded)["hyper_parameters"]["data_dir"] == os.sep + "data"
    reference = instantiate(compose(["experiment=stacked_digits", "model.generator.base_channels=8",
                                     "model.generator.z_emb_dim=16", "model.discriminator.base_channels=8",
                                     "model.discriminator.t_emb_dim=16"]).model, _convert_="partial")
    assert model.state_dict().keys() == reference.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), content["state_dict"].values(), strict=True))


def test_a_disk_full_conversion_write_gives_one_line_and_keeps_the_previous_file(compose, tmp_path, monkeypatch):
    """save_ddgan (src.convert_official's writer) on a full disk: CheckpointWriteError (a CheckpointError, exit 2 in the
    commands) naming the file, and the file that was there stays as it was."""
    path = save_tiny_checkpoint(compose, tmp_path)
    before = path.read_bytes()
    model = load_ddgan(path)

    monkeypatch.setattr(torch, "save", fill_the_disk)
    with pytest.raises(CheckpointWriteError) as error:
        save_ddgan(model, path)
    monkeypatch.undo()
    message = str(error.value)
    assert "\n" not in message and str(path) in message and "disk full" in message and "previous tiny.ckpt is intact" in message
    assert path.read_bytes() == before and not list(tmp_path.glob(".tiny.ckpt.tmp-*"))  # no temporary file left
