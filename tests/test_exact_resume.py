"""Exact resume: the train loader's place, every random stream and Lightning's epoch state survive a hard kill,
and a disk that fills during a checkpoint write leaves the previous checkpoint in place."""
import os
import random
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import src.train as train_module
from benchmarks import chaos_resume
from benchmarks.chaos_resume import Kill, kill_repeatedly, max_weight_difference, saved_iteration
from src.ddgan import fault_tolerance
from src.ddgan.checkpoint import CheckpointWriteError
from src.ddgan.data.resumable import ResumableDataLoader, ResumableShuffle
from src.ddgan.fault_tolerance import AtomicCheckpointIO, RandomStreams
from tests.conftest import TINY_TOY, fill_the_disk
from tests.test_fault_tolerance import CrashAt

ROOT = Path(__file__).resolve().parents[1]
TOY_12 = [  # 12 iterations, epochs of 4, stopped by trainer.max_steps (the epoch-end resume bug needs it)
    *TINY_TOY, "data.iterations_per_epoch=4", "trainer.max_epochs=-1", "trainer.max_steps=24", "logger=none",
    "callbacks.model_checkpoint.every_n_iterations=3",
]


def loader(dataset_size=20, batch_size=3, **sampler_kwargs) -> ResumableDataLoader:
    dataset = torch.arange(dataset_size)
    return ResumableDataLoader(dataset, batch_size=batch_size, drop_last=True,
                               sampler=ResumableShuffle(dataset, seed=5, **sampler_kwargs))


def epoch(data: ResumableDataLoader, number: int) -> list[list[int]]:
    data.sampler.set_epoch(number)  # what Lightning does at every epoch start
    return [batch.tolist() for batch in data]


def indices(batches: list[list[int]]) -> list[int]:
    return [index for batch in batches for index in batch]


# ---- the loader ---------------------------------------------------------------------------------------
def test_the_loader_resumes_after_the_saved_batch_and_starts_the_next_epoch_after_an_ended_one():
    straight = loader()
    first, second = epoch(straight, 0), epoch(straight, 1)
    assert len(first) == 6 and first != second and indices(first) != sorted(indices(first))  # shuffled, drop_last

    interrupted = loader()
    interrupted.sampler.set_epoch(0)
    batches = iter(interrupted)
    seen = [next(batches).tolist(), next(batches).tolist()]
    state = interrupted.state_dict()
    assert state == {"epoch": 0, "batches_yielded": 2, "batch_size": 3}

    resumed = loader()
    resumed.load_state_dict(state)
    assert seen + epoch(resumed, 0) == first  # the rest of epoch 0 (Lightning sets the same epoch again)...
    assert epoch(resumed, 1) == second  # ... then epoch 1 from its start

    ended = loader()
    ended.load_state_dict({"epoch": 0, "batches_yielded": 6, "batch_size": 3})
    assert [b.tolist() for b in ended] == second  # before Lightning's set_epoch (workers iterate early)


def test_the_sampler_gives_each_rank_its_own_shard_so_lightning_keeps_it_under_ddp():
    shards = [indices(epoch(loader(batch_size=2, num_replicas=2, rank=rank), 0)) for rank in (0, 1)]
    assert not set(shards[0]) & set(shards[1]) and len(shards[0]) == len(shards[1]) == 10


# ---- random streams -----------------------------------------------------------------------------------
def draws() -> tuple:
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)]


def test_random_streams_survive_a_weights_only_checkpoint_and_continue_at_train_start(tmp_path):
    saved = RandomStreams().state_dict()
    expected = draws()
    torch.save(saved, tmp_path / "streams.pt")
    callback = RandomStreams()
    callback.load_state_dict(torch.load(tmp_path / "streams.pt", weights_only=True))
    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    callback.on_train_start(type("OneProcess", (), {"world_size": 1})(), None)
    assert draws() == expected


# ---- resume in the same process -----------------------------------------------------------------------
def train(compose, overrides, run_dir, *callbacks):
    build_callbacks = train_module.build_callbacks
    train_module.build_callbacks = lambda cfg: [*build_callbacks(cfg), *callbacks]
    try:
        train_module.train(compose(overrides, run_dir))
    finally:
        train_module.build_callbacks = build_callbacks


def last(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize("resume_at", [4, 6], ids=["epoch-end checkpoint", "mid-epoch checkpoint"])
def test_a_run_with_max_steps_resumed_from_last_ckpt_equals_the_uninterrupted_run(compose, tmp_path, one_thread, resume_at):
    """Before the fix an epoch-end checkpoint resumed with max_steps re-entered the finished epoch for one more
    batch (the next epoch lost an iteration); a gaussians loader drew a seed from the global stream per epoch."""
    every = 0 if resume_at == 4 else 3  # 0: last.ckpt only at epoch ends
    overrides = [*TOY_12, f"callbacks.model_checkpoint.every_n_iterations={every}"]
    train(compose, overrides, tmp_path / "straight")
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(compose, overrides, tmp_path / "crashed", CrashAt(resume_at + 1))
    assert saved_iteration(last(tmp_path / "crashed")) == resume_at
    torch.manual_seed(123)  # the resumed run must not depend on the new process's streams
    train(compose, [*overrides, "ckpt_path=last"], tmp_path / "crashed")
    assert saved_iteration(last(tmp_path / "crashed")) == saved_iteration(last(tmp_path / "straight")) == 12
    assert max_weight_difference(last(tmp_path / "straight"), last(tmp_path / "crashed")) <= 1e-6


# ---- SIGKILL (the short chaos run) --------------------------------------------------------------------
def test_a_run_sigkilled_three_times_in_and_between_checkpoint_writes_ends_with_the_uninterrupted_weights(
        compose, tmp_path, one_thread):
    train(compose, TOY_12, tmp_path / "straight")
    # a kill in the epoch-end write of 4 (resume from 3), one mid-epoch (resume from 6), one in the write of 9
    kills = [Kill("write", 4, 0), Kill("step", 7, 0), Kill("write", 9, 0)]
    kill_repeatedly(TOY_12, tmp_path / "chaos", kills)
    assert [k.resumed_from for k in kills][:2] == [0, 3] and kills[2].resumed_from in (6, 8)  # 8: killed after its write
    assert [k.killed_at for k in kills] == [4, 7, 9]
    train(compose, [*TOY_12, "ckpt_path=last"], tmp_path / "chaos")
    assert saved_iteration(last(tmp_path / "chaos")) == 12
    assert max_weight_difference(last(tmp_path / "straight"), last(tmp_path / "chaos")) <= 1e-6
    assert not list(last(tmp_path / "chaos").parent.glob(".*.tmp-*"))  # the killed writes' temporary files are gone


@pytest.mark.slow
@pytest.mark.parametrize("data", ["gaussians25", "stacked_digits"])
def test_chaos_script_three_random_sigkills(tmp_path, data):
    result = chaos_resume.chaos(data, kills=3, seed=1, out=tmp_path)
    assert len(result.kills) == 3 and result.max_abs_weight_diff <= 1e-6, chaos_resume.describe(result)


# ---- a disk that fills during a checkpoint write ------------------------------------------------------
def test_a_disk_full_write_raises_one_line_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    io, path = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    io.save_checkpoint({"iteration": 1}, path)

    monkeypatch.setattr(fault_tolerance.torch, "save", fill_the_disk)
    with pytest.raises(CheckpointWriteError) as error:
        io.save_checkpoint({"iteration": 2}, path)
    monkeypatch.undo()
    message = str(error.value)
    assert "\n" not in message and str(path) in message and "disk full" in message and "previous last.ckpt is intact" in message
    assert io.load_checkpoint(path)["iteration"] == 1 and [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_train_on_a_full_disk_exits_2_with_one_line_and_the_previous_last_ckpt_loadable(compose, tmp_path, one_thread):
    overrides = [*TINY_TOY, "logger=none", "callbacks.model_checkpoint.every_n_iterations=1"]
    train(compose, overrides, tmp_path)
    before = last(tmp_path).read_bytes()
    limit = len(before) // 2  # `ulimit -f`: no file may grow past half a checkpoint (logs stay far below)

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    process = subprocess.run(
        [sys.executable, "-m", "src.train", *overrides, "trainer.max_epochs=2", "ckpt_path=last", f"hydra.run.dir={tmp_path}"],
        cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
        check=False, preexec_fn=limit_file_size, timeout=300)
    output = process.stdout + process.stderr
    assert process.returncode == 2, output[-3000:]
    errors = [line for line in output.splitlines() if "could not write checkpoint" in line]
    assert len(errors) == 1 and str(last(tmp_path)) in errors[0] and "disk full" in errors[0], output[-3000:]
    assert "Traceback" not in output
    assert last(tmp_path).read_bytes() == before and saved_iteration(last(tmp_path)) == 3
