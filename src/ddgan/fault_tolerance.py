"""Checkpoints that survive kills, preemption and divergence.

- AtomicCheckpointIO: a checkpoint file is either the old one or the complete new one. Lightning's own writer
  (`_atomic_save`) builds the file in the system temp dir (tempfile.mkstemp) and `shutil.move`s it; when /tmp and
  the checkpoint directory are on different filesystems (node-local /tmp, shared checkpoint storage) that move is a
  copy into the destination, so a kill mid-copy leaves a truncated checkpoint, and nothing is fsync'ed. Here the
  bytes go to a temporary file next to the target, are fsync'ed, and `os.replace` swaps it in.
- FaultTolerantCheckpoint: ModelCheckpoint whose `last.ckpt` is the resume point: refreshed every
  `every_n_iterations` iterations, at every epoch end and at the end of training, on a stop signal (SIGTERM, or the
  scheduler's requeue signal) and when training diverges. Signals only set a flag; the checkpoint is written at the
  next iteration boundary, on all ranks together, and then training stops.
- RandomStreams: the process's random streams (torch CPU and CUDA, numpy, python) in every checkpoint, resumed at
  the start of training; with the train loader's own state (src.ddgan.data.resumable) a run killed at any moment
  and resumed from last.ckpt ends with the weights of the uninterrupted run (benchmarks/chaos_resume.py).
- A disk that fills during a write raises checkpoint.CheckpointWriteError (one line: the file, the cause, the fix); the
  previous checkpoint stays in place.
"""
import logging
import random
import signal
import threading
from collections.abc import Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from src.ddgan.checkpoint import save_checkpoint_file
from src.ddgan.distributed import any_process_max
from src.ddgan.module import TrainingDiverged

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning CheckpointIO whose local writes are atomic (remote URLs fall back to Lightning's writer)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        if storage_options is not None or not _is_local_file_protocol(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        save_checkpoint_file(checkpoint, path, fix="Free space there (or point paths.output_dir at a larger disk) and "
                                                    "resume with ckpt_path=last")


def complete_saved_epoch(fit_loop: dict[str, Any] | None) -> None:
    """Mark the epoch of a checkpoint written in on_train_epoch_end as completed, and the next one as not begun.

    Such a checkpoint has the epoch processed but not completed. Lightning completes it on resume only when
    trainer.max_steps is unset; with max_steps it re-enters the finished epoch for one more batch (index = epoch
    length), so every later epoch end (LR step, snapshot, reshuffle) came one iteration late.
    """
    if not fit_loop or "epoch_progress" not in fit_loop:
        return
    epochs, batches = fit_loop["epoch_progress"], fit_loop["epoch_loop.batch_progress"]
    if all(epochs[k]["started"] == epochs[k]["processed"] == epochs[k]["completed"] + 1 for k in ("current", "total")):
        for k in ("current", "total"):
            epochs[k]["completed"] = epochs[k]["processed"]
        batches["current"] = dict.fromkeys(batches["current"], 0)
        batches["is_last_batch"] = False


class FaultTolerantCheckpoint(ModelCheckpoint):
    """ModelCheckpoint (numbered snapshots every `every_n_epochs`) plus a `last.ckpt` that is always a resume point.

    `last.ckpt` is refreshed every `every_n_iterations` DDGAN iterations (mid-epoch; 0 = off), at every epoch end,
    at the end of training, when training diverges (the module's TrainingDiverged: the weights of the last
    finite update), and on any of `stop_signals`. A signal only sets a flag; at the next iteration boundary all
    ranks agree (one tiny all_reduce per iteration under DDP), write `last.ckpt`, run the signal's previous
    handler for SIGUSR1/SIGUSR2 (Lightning's SLURM requeue, submitit's requeue), and stop by raising Lightning's
    SIGTERMException (the process exits with status 0). Lightning's own SIGTERM handler is replaced while training
    runs: it would broadcast from inside the signal handler, which can cross the module's gradient all_reduce.
    """

    def __init__(
        self,
        *,
        every_n_iterations: int = 0,  # refresh last.ckpt every N iterations (0: only at epoch ends)
        stop_signals: Sequence[str] = ("SIGTERM", "SIGUSR1", "SIGUSR2"),  # checkpoint at the next iteration, then stop
        **kwargs,  # ModelCheckpoint's arguments (dirpath, filename, every_n_epochs, save_top_k, ...)
    ):
        super().__init__(**({"save_last": True} | kwargs))
        if not isinstance(every_n_iterations, int) or every_n_iterations < 0:
            raise ValueError(f"callbacks.model_checkpoint.every_n_iterations={every_n_iterations!r} is invalid: it must be an integer >= 0.")
        self.every_n_iterations = every_n_iterations
        self.stop_signals = [signal.Signals[s] if isinstance(s, str) else signal.Signals(s) for s in stop_signals]
        self._received = 0  # number of the first stop signal received, 0 for none
        self._previous_handlers: dict[signal.Signals, Any] = {}

    # ---- the resume point -----------------------------------------------------------------------
    def save_resume_point(self, trainer: L.Trainer) -> None:
        """Write last.ckpt now (all ranks call this together) unless it holds this global step already."""
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if self.every_n_iterations and pl_module.iteration % self.every_n_iterations == 0:
            self.save_resume_point(trainer)
        received = any_process_max(self._received, pl_module.device) if trainer.world_size > 1 else self._received
        if received:
            self.stop(trainer, signal.Signals(received))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        self.save_resume_point(trainer)  # Lightning 2.6 refreshes last.ckpt only with a numbered snapshot

    def on_train_end(self, trainer: L.Trainer, pl_module) -> None:
        self.save_resume_point(trainer)
        self._restore_signal_handlers()

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        complete_saved_epoch(checkpoint.get("loops", {}).get("fit_loop"))  # before Lightning restores its loops

    def on_exception(self, trainer: L.Trainer, pl_module, exception: BaseException) -> None:
        super().on_exception(trainer, pl_module, exception)
        if isinstance(exception, TrainingDiverged):  # raised at an iteration boundary, on every rank
            self.save_resume_point(trainer)
            if trainer.is_global_zero:
                log.error(f"{exception} Saved {self.last_model_path}.")

    # ---- signals ----------------------------------------------------------------------------------
    def on_train_start(self, trainer: L.Trainer, pl_module) -> None:
        super().on_train_start(trainer, pl_module)
        self._received = 0
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        for signum in self.stop_signals:  # after Lightning registered its handlers (just before the fit loop)
            self._previous_handlers[signum] = signal.getsignal(signum)
            signal.signal(signum, self._note_signal)

    def _note_signal(self, signum: int, frame) -> None:
        if not self._received:
            log.warning(f"Received {signal.Signals(signum).name}: saving last.ckpt at the end of this iteration, then stopping.")
            self._received = signum

    def _restore_signal_handlers(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for signum, handler in self._previous_handlers.items():
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous_handlers = {}

    def stop(self, trainer: L.Trainer, signum: signal.Signals) -> None:
        """Write last.ckpt, hand a requeue signal to its previous handler, and stop training on every rank."""
        self.save_resume_point(trainer)
        previous = self._previous_handlers.get(signum)
        self._restore_signal_handlers()
        if trainer.is_global_zero:
            log.warning(f"Stopped by {signum.name} at iteration {trainer.lightning_module.iteration}: "
                        f"{self.last_model_path} written; resume with ckpt_path=last.")
        if signum != signal.SIGTERM and callable(previous):
            previous(signum, None)  # e.g. Lightning's SLURM handler or submitit's: requeue the job
        raise SIGTERMException()


# ---- random streams ---------------------------------------------------------------------------------
def random_streams() -> dict[str, Any]:
    """This process's random states as plain containers and tensors (loadable with weights_only=True)."""
    name, keys, position, has_gauss, gauss = np.random.get_state(legacy=True)
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": (name, torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss), float(gauss))}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["torch.cuda"] = torch.cuda.get_rng_state()  # the training device (get_rng_state_all would open all)
    return state


def set_random_streams(state: dict[str, Any]) -> None:
    """Continue the streams of `random_streams()` (the CUDA one on the current device, when there is one)."""
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    name, keys, position, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    if "torch.cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["torch.cuda"])


class RandomStreams(L.Callback):
    """Saves the random streams (torch CPU and CUDA, numpy, python) with every checkpoint and continues them when
    a one-process run resumes, at the start of training: after everything that ran between loading the checkpoint
    and the first batch, so the resumed run draws the noise, t and z of the uninterrupted one.

    Under DDP the checkpoint holds rank 0's streams only; the module reseeds every rank there (seed_process).
    """

    def __init__(self) -> None:
        self._to_resume: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        return random_streams()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._to_resume = state_dict

    def on_train_start(self, trainer: L.Trainer, pl_module) -> None:  # (a mid-epoch resume skips on_train_epoch_start)
        if self._to_resume is not None and trainer.world_size == 1:
            set_random_streams(self._to_resume)
        self._to_resume = None
