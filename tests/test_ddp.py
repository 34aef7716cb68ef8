"""Scale-out: 2-process DDP on CPU (gloo) through the real entry point, trainer/launcher configs, config checks."""
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

from src.ddgan.config import ConfigError, resolve_ckpt_path
from src.train import train
from tests.conftest import TINY_TOY

ROOT = Path(__file__).resolve().parents[1]


class RecordRankState(L.Callback):
    """Saves <path>/rank<R>.pt: the networks, the local and process-averaged values of every update, logged metrics."""

    def __init__(self, path: str):
        self.path = Path(path)
        self.updates = []

    def on_train_start(self, trainer, module):
        self.rng_state = torch.get_rng_state().clone()
        update = module.update

        def recording_update(optimizer, name, network, logs):
            local = {k: float(v) for k, v in logs.items()}
            averaged = update(optimizer, name, network, logs)
            self.updates.append((name, local, {k: float(v) for k, v in averaged.items()}))
            return averaged

        module.update = recording_update

    def on_train_end(self, trainer, module):
        flat = lambda m: torch.cat([p.detach().flatten() for p in m.parameters()])
        torch.save({
            "generator": flat(module.generator), "discriminator": flat(module.discriminator), "ema": flat(module.generator_ema),
            "iteration": module.iteration, "updates": self.updates, "rng_state_at_start": self.rng_state,
            "logged": {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")},
        }, self.path / f"rank{trainer.global_rank}.pt")


def test_two_cpu_processes_keep_identical_networks_and_log_process_averages(tmp_path):
    """python -m src.train trainer=ddp trainer.accelerator=cpu trainer.devices=2 (gloo), R1 on every other iteration."""
    args = [
        *TINY_TOY, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "data.iterations_per_epoch=4",
        "model.lazy_reg=2", f"paths.log_dir={tmp_path}", f"+callbacks.record._target_={__name__}.RecordRankState",
        f"+callbacks.record.path={tmp_path}",
    ]
    env = os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "src.train", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))

    assert rank0["iteration"] == rank1["iteration"] == 4  # an epoch is 4 iterations on every process
    for key in ("generator", "discriminator", "ema"):
        assert torch.equal(rank0[key], rank1[key]), f"{key} differs between the ranks"
    assert not torch.equal(rank0["rng_state_at_start"], rank1["rng_state_at_start"])  # own t / noise / z per rank

    assert [u[0] for u in rank0["updates"]] == ["d", "g"] * 4
    assert sum("r1" in local for _, local, _ in rank0["updates"]) == 2  # iterations 0 and 2
    for (name, local0, avg0), (_, local1, avg1) in zip(rank0["updates"], rank1["updates"]):
        assert local0[f"loss_{name}"] != local1[f"loss_{name}"]  # different data and noise per rank...
        for key in local0:  # ...and every logged value is the mean over the ranks, the same on both
            assert avg0[key] == avg1[key]
            assert avg0[key] == pytest.approx((local0[key] + local1[key]) / 2, rel=1e-5, abs=1e-7)
        assert avg0[f"grad_norm_{name}"] == avg1[f"grad_norm_{name}"]
    assert rank0["logged"] == rank1["logged"] and "train/loss_d" in rank0["logged"]

    (run_dir,) = tmp_path.glob("gaussians25/runs/*")
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["ddgan"]["iteration"] == 4
    torch.testing.assert_close(torch.cat([v.flatten() for k, v in checkpoint["state_dict"].items() if k.startswith("generator.")]),
                               rank0["generator"], rtol=0, atol=0)


# ---- configs ------------------------------------------------------------------------------------
def test_ddp_trainer_config_builds_the_gan_strategy_with_atomic_checkpoints(compose, tmp_path):
    from hydra.utils import instantiate

    from src.ddgan.distributed import GANDDPStrategy
    from src.ddgan.fault_tolerance import AtomicCheckpointIO

    cfg = compose(["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.num_nodes=1"], tmp_path)
    trainer = instantiate(cfg.trainer, logger=False)
    assert isinstance(trainer.strategy, GANDDPStrategy) and trainer.world_size == 2
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    assert str(trainer.strategy.root_device) == "cpu"


def test_slurm_launcher_composes_and_dry_run_prints_the_sbatch_script(compose):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    from src.slurm_dry_run import CONFIG_DIR, sbatch_script

    overrides = ["experiment=cifar10", "trainer.devices=4", "trainer.num_nodes=2", "hydra.launcher.partition=gpu", "hydra.launcher.timeout_min=600"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = hydra_compose("train", overrides=["hydra/launcher=slurm", *overrides], return_hydra_config=True)
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert (launcher["nodes"], launcher["gpus_per_node"], launcher["tasks_per_node"]) == (2, 4, 4)
    script = sbatch_script(overrides)
    for line in ("--nodes=2", "--gpus-per-node=4", "--ntasks-per-node=4", "--partition=gpu", "--time=600", "--signal=USR2@120"):
        assert f"#SBATCH {line}" in script


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["trainer.devices=2"], "needs trainer=ddp"),
        (["trainer.num_nodes=2"], "needs trainer=ddp"),
        (["+trainer.strategy=ddp_find_unused_parameters_true"], "trainer.strategy=ddp_find_unused_parameters_true wraps the module"),
        (["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=0"], "trainer.devices=0 is invalid"),
        (["trainer.precision=16-mixed"], "trainer.precision=16-mixed is not supported on CPU"),
        (["trainer.precision=bf16-true"], "trainer.precision=bf16-true is not supported"),
        (["callbacks.model_checkpoint.every_n_iterations=-1"], "every_n_iterations=-1"),
        (["model.sample_shape=[3]"], r"model.sample_shape=\[3\] does not match the data: GaussianMixtureDataModule yields samples of shape \[2\]"),
        (["model.max_consecutive_nonfinite=0"], "model.max_consecutive_nonfinite=0"),
    ],
)
def test_scale_out_settings_are_checked_before_training(compose, tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        train(compose(TINY_TOY + overrides, tmp_path))
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
@pytest.mark.parametrize("overrides", [["trainer=gpu"], ["trainer=ddp", "trainer.devices=2"]])
def test_gpu_trainers_without_cuda_are_rejected(compose, tmp_path, overrides):
    with pytest.raises(ConfigError, match="no CUDA GPU is visible"):
        train(compose(TINY_TOY + overrides, tmp_path))


def test_image_batch_must_suit_the_minibatch_stddev_group(compose, tmp_path):
    cfg = compose(["experiment=stacked_digits", "data.batch_size_per_device=6"], tmp_path)
    with pytest.raises(ConfigError, match="data.batch_size_per_device=6 does not suit model.discriminator.stddev_group=4"):
        train(cfg)
    cfg = compose(["experiment=stacked_digits", "model.sample_shape=[3,16,16]"], tmp_path)
    with pytest.raises(ConfigError, match=r"model.sample_shape=\[3, 16, 16\] does not match the data: StackedDigitsDataModule yields samples of shape \[3, 32, 32\]"):
        train(cfg)


def test_a_requeued_slurm_job_resumes_from_its_last_checkpoint(tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    assert resolve_ckpt_path(None, str(tmp_path)) is None
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert resolve_ckpt_path(None, str(tmp_path)) is None  # nothing saved yet: a fresh start
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert resolve_ckpt_path(None, str(tmp_path)) == str(tmp_path / "checkpoints" / "last.ckpt")
