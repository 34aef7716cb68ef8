"""Fault tolerance: atomic checkpoint writes, mid-epoch resume, SIGTERM, non-finite updates and divergence."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

import src.train as train_module
from src.ddgan import fault_tolerance
from src.ddgan.fault_tolerance import AtomicCheckpointIO, FaultTolerantCheckpoint
from src.ddgan.module import TrainingDiverged
from tests.conftest import TINY_TOY
from tests.test_module import flat, tiny_ddgan

ROOT = Path(__file__).resolve().parents[1]


class SameBatch(Dataset):
    """`length` copies of one fixed batch: the data do not depend on where an epoch is restarted."""

    def __init__(self, length: int):
        self.length = length
        self.batch = torch.randn(32, 2, generator=torch.Generator().manual_seed(7)) * 2

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.batch


def fit(model, root, *, epochs=2, iterations=5, ckpt_path=None, callbacks=(), checkpoint=None):
    trainer = L.Trainer(
        max_epochs=epochs, accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=root, callbacks=[*callbacks, *([checkpoint] if checkpoint else [])],
        enable_checkpointing=checkpoint is not None, plugins=[AtomicCheckpointIO()],
    )
    # the loader's own generator: a loader without one draws its worker base seed from torch's global RNG at every
    # epoch start, i.e. at a different point of the module's stream after a mid-epoch resume
    loader = DataLoader(SameBatch(iterations), batch_size=None, generator=torch.Generator().manual_seed(0))
    trainer.fit(model, loader, ckpt_path=ckpt_path)
    return trainer


class CrashAt(L.Callback):
    def __init__(self, iteration: int):
        self.iteration = iteration

    def on_train_batch_end(self, trainer, module, *args):
        if module.iteration == self.iteration:
            raise RuntimeError("simulated crash")


class CaptureStart(L.Callback):
    def on_train_start(self, trainer, module):
        self.iteration, self.epoch, self.global_step = module.iteration, trainer.current_epoch, trainer.global_step


# ---- atomic writes ------------------------------------------------------------------------------
def test_a_failure_in_the_middle_of_a_write_leaves_the_previous_checkpoint_loadable(tmp_path, monkeypatch):
    io, path = AtomicCheckpointIO(), tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"iteration": 1, "weights": torch.arange(1000.0)}, path)

    def save_half_then_die(obj, f):
        f.write(b"\x80\x02partial checkpoint bytes")  # what a killed process leaves behind
        raise KeyboardInterrupt("killed during the write")

    monkeypatch.setattr(fault_tolerance.torch, "save", save_half_then_die)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"iteration": 2, "weights": torch.zeros(1000)}, path)
    monkeypatch.undo()
    checkpoint = io.load_checkpoint(path)
    assert checkpoint["iteration"] == 1 and torch.equal(checkpoint["weights"], torch.arange(1000.0))
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # no temporary file left behind
    io.save_checkpoint({"iteration": 3}, path)
    assert io.load_checkpoint(path)["iteration"] == 3


# ---- resume ---------------------------------------------------------------------------------------
def test_a_run_resumed_mid_epoch_continues_from_the_saved_iteration_and_equals_an_uninterrupted_run(tmp_path):
    L.seed_everything(0)
    straight = tiny_ddgan(cosine_lr_decay=True)
    fit(straight, tmp_path / "straight")

    L.seed_everything(0)
    checkpoint = FaultTolerantCheckpoint(dirpath=tmp_path / "ckpts", every_n_iterations=3, save_top_k=0)
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(tiny_ddgan(cosine_lr_decay=True), tmp_path / "crashed", callbacks=[CrashAt(4)], checkpoint=checkpoint)
    last = tmp_path / "ckpts" / "last.ckpt"
    assert torch.load(last, weights_only=False)["ddgan"]["iteration"] == 3  # mid-epoch 0 (5 iterations per epoch)

    L.seed_everything(123)  # the resumed run must not depend on the new process's seed
    resumed, start = tiny_ddgan(cosine_lr_decay=True), CaptureStart()
    fit(resumed, tmp_path / "resumed", ckpt_path=last, callbacks=[start])
    assert (start.iteration, start.epoch, start.global_step) == (3, 0, 6)
    assert resumed.iteration == straight.iteration == 10
    for a, b in ((straight.generator, resumed.generator), (straight.discriminator, resumed.discriminator),
                 (straight.generator_ema, resumed.generator_ema)):
        torch.testing.assert_close(flat(a), flat(b), atol=1e-6, rtol=0)


def test_sigterm_writes_last_ckpt_at_an_iteration_boundary_and_exits_cleanly(compose, tmp_path, monkeypatch):
    args = [*TINY_TOY, "data.iterations_per_epoch=100000", "callbacks.model_checkpoint.every_n_iterations=20",
            "logger=none", f"hydra.run.dir={tmp_path}"]
    env = os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "src.train", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    last = tmp_path / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 120
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert last.exists(), process.communicate(timeout=30)[0][-3000:] if process.poll() is not None else "no checkpoint in time"
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output[-3000:]
    saved = torch.load(last, weights_only=False)
    # the signal can arrive before the boundary of iteration 20 (whose checkpoint the loop above saw) is finished:
    # training then stops there; last.ckpt always holds the iteration at which it stopped
    assert f"Stopped by SIGTERM at iteration {saved['ddgan']['iteration']}:" in output
    assert saved["ddgan"]["iteration"] >= 20 and saved["global_step"] == 2 * saved["ddgan"]["iteration"]

    # resume in-process with the same config for two more iterations: it continues from the saved iteration
    iteration = saved["ddgan"]["iteration"]
    cfg = compose(TINY_TOY + ["data.iterations_per_epoch=100000", f"trainer.max_steps={2 * iteration + 4}", "ckpt_path=last", "logger=none"], tmp_path)
    start, build_callbacks = CaptureStart(), train_module.build_callbacks
    monkeypatch.setattr(train_module, "build_callbacks", lambda c: [*build_callbacks(c), start])
    train_module.train(cfg)
    assert start.iteration == saved["ddgan"]["iteration"]
    assert torch.load(last, weights_only=False)["ddgan"]["iteration"] == saved["ddgan"]["iteration"] + 2


# ---- divergence guards ----------------------------------------------------------------------------
def nan_discriminator_from(model, iteration: int):
    """Make D's logits NaN from `iteration` on (both the D and the G losses become non-finite)."""
    return model.discriminator.register_forward_hook(lambda m, i, out: out * float("nan") if model.iteration >= iteration else out)


def test_a_non_finite_update_is_skipped_counted_and_logged(tmp_path):
    L.seed_everything(0)
    model = tiny_ddgan()
    trainer = fit(model, tmp_path, epochs=1, iterations=2)
    assert trainer.callback_metrics["train/nonfinite_updates"] == 0
    assert torch.isfinite(trainer.callback_metrics["train/grad_norm_d"]) and trainer.callback_metrics["train/grad_norm_g"] > 0
    adam_d = trainer.optimizers[0]
    steps = [s["step"].clone() for s in adam_d.state.values()]
    d0, g0 = flat(model.discriminator), flat(model.generator)

    hook = nan_discriminator_from(model, 0)
    logs = model.discriminator_step(torch.randn(32, 2))
    assert torch.isnan(logs["loss_d"])
    assert torch.equal(flat(model.discriminator), d0)  # no step...
    assert all(p.grad is None for p in model.discriminator.parameters())  # ...gradients dropped...
    assert [s["step"] for s in adam_d.state.values()] == steps  # ...and Adam's state untouched
    model.generator_step(torch.randn(32, 2))
    assert torch.equal(flat(model.generator), g0)
    assert model.nonfinite_updates == 2 and model.consecutive_nonfinite == {"d": 1, "g": 1}
    hook.remove()
    model.discriminator_step(torch.randn(32, 2))
    assert model.consecutive_nonfinite["d"] == 0 and not torch.equal(flat(model.discriminator), d0)


def test_consecutive_non_finite_updates_stop_training_with_a_checkpoint_of_the_last_finite_weights(tmp_path):
    L.seed_everything(0)
    model = tiny_ddgan(max_consecutive_nonfinite=3)
    snapshots = {}

    class Snapshot(L.Callback):
        def on_train_batch_end(self, trainer, module, *args):
            snapshots[module.iteration] = flat(module.generator), flat(module.discriminator)

    nan_discriminator_from(model, 4)
    checkpoint = FaultTolerantCheckpoint(dirpath=tmp_path / "ckpts", save_top_k=0)
    with pytest.raises(TrainingDiverged, match="3 consecutive non-finite D updates at iteration 6"):
        fit(model, tmp_path, epochs=1, iterations=20, callbacks=[Snapshot()], checkpoint=checkpoint)
    saved = torch.load(tmp_path / "ckpts" / "last.ckpt", weights_only=False)
    assert saved["ddgan"]["iteration"] == 7 and saved["ddgan"]["nonfinite_updates"] == 6
    weights = torch.cat([v.flatten() for v in saved["state_dict"].values()])
    assert torch.isfinite(weights).all()
    generator = torch.cat([v.flatten() for k, v in saved["state_dict"].items() if k.startswith("generator.")])
    torch.testing.assert_close(generator, snapshots[4][0], rtol=0, atol=0)  # unchanged since the last finite update
