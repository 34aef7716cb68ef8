"""Dry run of hydra/launcher=slurm: print the sbatch script submitit would submit for a training command.

    python -m src.slurm_dry_run experiment=cifar10 trainer.devices=4 trainer.num_nodes=2 hydra.launcher.partition=gpu

Takes the same overrides as `python -m src.train -m hydra/launcher=slurm ...` (without -m and without the
launcher choice) and submits nothing.
"""
import sys
from unittest import mock

from hydra import compose, initialize_config_dir
from hydra.core.utils import setup_globals
from omegaconf import OmegaConf

from src.ddgan.cli import CONFIG_DIR


def sbatch_script(overrides: list[str]) -> str:
    """The sbatch file text of the first job of `python -m src.train -m hydra/launcher=slurm <overrides>`."""
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    setup_globals()  # Hydra's ${now:...} resolver
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm", *overrides], return_hydra_config=True)
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    params.pop("_target_")
    # the parameter mapping of hydra_submitit_launcher's BaseSubmititLauncher.launch; the srun check is skipped
    with mock.patch.object(submitit.SlurmExecutor, "affinity", return_value=1):
        executor = submitit.AutoExecutor(folder=params.pop("submitit_folder"), cluster="slurm",
                                         slurm_max_num_timeout=params.pop("max_num_timeout"))
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    command = "python -u -m submitit.core._submit <submitit folder>  # runs src.train's task function for one sweep job"
    return executor._executor._make_submission_file_text(command, uid="dry-run")


if __name__ == "__main__":
    print(sbatch_script(sys.argv[1:]))
