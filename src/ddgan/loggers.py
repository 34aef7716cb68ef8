"""Loggers whose files survive a resume in place (`ckpt_path=last` in the run's directory, a SLURM requeue).

- AppendingCSVLogger: Lightning's CSVLogger deletes csv/metrics.csv when the directory exists; this one keeps the
  rows and appends. Rows logged after the checkpoint a run resumes from appear twice (once per segment); readers
  keep the last row of each step.
- ResumableWandbLogger: the wandb run id is kept in <save_dir>/wandb/run_id, so every segment logs into the same
  run (resume="allow") instead of starting a new one.
TensorBoard needs nothing: each segment writes its own event file beside the earlier ones, and readers join them.
"""
import csv
import secrets
from pathlib import Path
from typing import Any

from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter


class AppendingExperimentWriter(ExperimentWriter):
    """Lightning's CSV writer, continuing an existing metrics.csv (its header and rows) instead of deleting it."""

    def _check_log_dir_exists(self) -> None:
        path = Path(self.metrics_file_path)
        if path.is_file():
            with open(path, newline="") as file:
                self.metrics_keys = sorted(csv.DictReader(file).fieldnames or [])


class AppendingCSVLogger(CSVLogger):
    """CSVLogger (same arguments and files) that appends to the metrics.csv of a resumed run."""

    @property
    def experiment(self) -> AppendingExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = AppendingExperimentWriter(log_dir=self.log_dir)
        return self._experiment


def persistent_run_id(save_dir: str | Path) -> str:
    """The run id stored in <save_dir>/wandb/run_id, created on first use."""
    path = Path(save_dir) / "wandb" / "run_id"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(4))  # wandb's ids: 8 characters of [0-9a-z]
    return path.read_text().strip()


class ResumableWandbLogger(WandbLogger):
    """WandbLogger (same arguments) whose run id lives in the run directory: a resumed run continues its wandb run."""

    def __init__(self, *, save_dir: str | Path = ".", id: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("resume", "allow")
        if id is None and rank_zero_only.rank == 0:  # only rank zero logs (and may create the file)
            id = persistent_run_id(save_dir)
        super().__init__(save_dir=save_dir, id=id, **kwargs)
