"""A run resumed in place (ckpt_path=last, same output directory) keeps every log line of its earlier segments:
CSV rows, TensorBoard events and the wandb run."""
import csv

import pytest

from src.train import train
from tests.conftest import TINY_TOY

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_run_resumed_in_place_keeps_the_csv_tensorboard_and_wandb_logs(compose, tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    overrides = [o for o in TINY_TOY if not o.startswith("logger=")] + ["logger=[csv,tensorboard,wandb]", "logger.wandb.offline=true"]
    try:
        train(compose(overrides, tmp_path))  # iterations 1-3
        first = list(csv.DictReader((tmp_path / "csv" / "metrics.csv").open()))
        train(compose(overrides + ["ckpt_path=last", "trainer.max_epochs=2"], tmp_path))  # iterations 4-6
    finally:
        wandb.teardown()
    rows = list(csv.DictReader((tmp_path / "csv" / "metrics.csv").open()))
    assert rows[: len(first)] == first  # the first segment's rows, untouched
    assert sorted({float(r["train/iteration"]) for r in rows if r.get("train/iteration")}) == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert sum(1 for r in rows if r.get("eval/modes_covered")) == 2  # one evaluation per segment
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [e.value for e in events.Scalars("train/iteration")] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    runs = sorted(tmp_path.glob("wandb/offline-run-*"))
    assert len(runs) == 2 and len({run.name.rsplit("-", 1)[1] for run in runs}) == 1  # two segments, one wandb run
    assert runs[0].name.endswith((tmp_path / "wandb" / "run_id").read_text())
