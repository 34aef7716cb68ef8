"""The training entry point end to end on the toy problem: outputs, resume, sweeps and bad input."""
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from src.ddgan.config import ConfigError
from src.train import train
from tests.conftest import TINY_TOY

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "src.train", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)


def test_default_experiment_writes_metrics_plot_and_checkpoint(compose, tmp_path):
    cfg = compose(TINY_TOY, tmp_path)
    assert cfg.task_name == "gaussians25" and cfg.diffusion.num_timesteps == 4
    train(cfg)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics) >= {"modes_covered", "num_modes", "high_quality_fraction", "mode_kl"}
    assert metrics["num_modes"] == 25 and metrics["iteration"] == 3
    assert (tmp_path / "samples.png").stat().st_size > 0
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["ddgan"]["iteration"] == 3
    assert any(k.startswith("generator_ema.") for k in checkpoint["state_dict"])
    assert checkpoint["hyper_parameters"]["config"]["diffusion"]["num_timesteps"] == 4
    logged = list(csv.DictReader((tmp_path / "csv" / "metrics.csv").read_text().splitlines()))
    assert {"train/loss_d", "train/loss_g", "train/d_real", "train/d_fake", "train/lr_g", "eval/modes_covered"} <= set(logged[0])


def test_run_ends_with_a_summary_line_and_the_metric_curves(compose, tmp_path, capsys):
    train(compose(TINY_TOY + ["trainer.max_epochs=2", "callbacks.mixture_eval.every_n_epochs=1"], tmp_path))
    history = [json.loads(line) for line in (tmp_path / "metrics_history.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in history] == [3, 6, 6]  # after each epoch, and the final evaluation
    assert history[-1] == json.loads((tmp_path / "metrics.json").read_text())
    assert Image.open(tmp_path / "metric_curves.png").size == (900, 240)  # modes, high quality, KL: three panels
    final = history[-1]
    (line,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("done:")]
    assert line == (f"done: iteration 6 | modes {final['modes_covered']}/25, "
                    f"high_quality {final['high_quality_fraction']:.3g}, kl {final['mode_kl']:.3g} | run {tmp_path} | "
                    f"samples {tmp_path / 'samples.png'} | curves {tmp_path / 'metric_curves.png'} | "
                    f"checkpoint {tmp_path / 'checkpoints' / 'last.ckpt'}")

    no_evaluation = [o for o in TINY_TOY if not o.startswith("callbacks.")] + ["callbacks=[checkpoint]"]
    train(compose(no_evaluation, tmp_path / "plain"))
    assert not (tmp_path / "plain" / "metric_curves.png").exists()
    assert capsys.readouterr().out.splitlines()[-1] == (f"done: iteration 3 | no metrics | run {tmp_path / 'plain'} | "
                                                       f"checkpoint {tmp_path / 'plain' / 'checkpoints' / 'last.ckpt'}")


def test_ckpt_path_last_resumes_the_run(compose, tmp_path):
    train(compose(TINY_TOY, tmp_path))
    train(compose(TINY_TOY + ["trainer.max_epochs=2", "ckpt_path=last"], tmp_path))
    assert json.loads((tmp_path / "metrics.json").read_text())["iteration"] == 6


def test_explicit_centers_define_another_mixture(compose, tmp_path):
    train(compose(TINY_TOY + ["data.centers=[[0,0],[3,3],[-3,3]]", "data.std=0.1"], tmp_path))
    assert json.loads((tmp_path / "metrics.json").read_text())["num_modes"] == 3


@pytest.mark.parametrize(
    "override, key",
    [
        ("diffusion.num_timesteps=0", "diffusion.num_timesteps=0"),
        ("model.lazy_reg=0", "model.lazy_reg=0"),
        ("model.r1_gamma=-0.5", "model.r1_gamma=-0.5"),
        ("model.ema_decay=1.0", "model.ema_decay=1.0"),
        ("data.centers=[[1,2],[3]]", "data.centers="),
        ("data.centers=[1,2]", "data.centers="),
        ("ckpt_path=/nonexistent.ckpt", "ckpt_path="),
        ("data.batch_size_per_device=0", "data.batch_size_per_device=0 is invalid: it must be an integer >= 1"),
        ("data.batch_size_per_device=-3", "data.batch_size_per_device=-3 is invalid"),
    ],
)
def test_bad_input_is_rejected_before_training(compose, tmp_path, override, key):
    with pytest.raises(ConfigError, match=key.replace("[", r"\[")):
        train(compose(TINY_TOY + [override], tmp_path))
    assert not (tmp_path / "checkpoints").exists()


def test_negative_num_workers_is_rejected_before_the_data_is_built(compose, tmp_path, monkeypatch):
    monkeypatch.setattr("src.train.instantiate", lambda *a, **k: pytest.fail("something was built"))
    with pytest.raises(ConfigError, match=r"data.num_workers=-1 is invalid: it must be an integer >= 0 .* set data.num_workers=0"):
        train(compose(["experiment=stacked_digits", "data.num_workers=-1"], tmp_path))


def unwritable_dir(tmp_path: Path) -> Path:
    """A folder this process cannot create files in: a read-only one, or /sys where root ignores file modes."""
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    read_only.chmod(0o555)
    for folder in (read_only, Path("/sys")):
        try:
            tempfile.TemporaryFile(dir=folder).close()
        except OSError:
            return folder
    pytest.skip("no folder on this machine refuses new files")


@pytest.mark.parametrize("where", ["a file", "under a file", "not writable"])
def test_an_output_dir_that_cannot_hold_the_run_is_rejected_before_anything_is_built(compose, tmp_path, monkeypatch, where):
    (tmp_path / "notes.txt").write_text("not a folder")
    output_dir, message = {
        "a file": (tmp_path / "notes.txt", "is a file: give a directory path"),
        "under a file": (tmp_path / "notes.txt" / "run", f"lies under {tmp_path / 'notes.txt'}, which is a file"),
        "not writable": (unwritable_dir(tmp_path) / "run", "is not writable"),
    }[where]
    monkeypatch.setattr("src.train.instantiate", lambda *a, **k: pytest.fail("something was built"))
    with pytest.raises(ConfigError, match=re.escape(f"paths.output_dir={output_dir} {message}")):
        train(compose(TINY_TOY, output_dir))
    assert not output_dir.is_dir()


def test_cli_prints_one_line_for_bad_values_and_lists_unknown_experiments(tmp_path):
    result = run_cli("diffusion.num_timesteps=0", f"paths.log_dir={tmp_path}")
    assert result.returncode == 2
    assert "diffusion.num_timesteps=0 is invalid: it must be an integer >= 1" in result.stderr + result.stdout
    result = run_cli("experiment=no_such_experiment", f"paths.log_dir={tmp_path}")
    assert result.returncode != 0
    assert "no_such_experiment" in result.stderr and "gaussians25" in result.stderr  # Hydra lists the options
    result = run_cli("experiment=cifar10", "data.download=false",  # a 4-GPU config: the missing data is named first
                     f"paths.data_dir={tmp_path / 'empty'}", f"paths.log_dir={tmp_path}")
    assert result.returncode == 2
    assert "set data.download=true" in result.stderr + result.stdout and "Traceback" not in result.stderr


def test_cli_exits_2_with_one_line_for_an_empty_batch_and_an_empty_image_folder(tmp_path):
    (tmp_path / "no_images" / "sub").mkdir(parents=True)
    cases = {  # unchecked, a batch of 0 trained on empty batches until the divergence guard stopped it (exit 3)
        "data.batch_size_per_device=0 is invalid: it must be an integer >= 1": ["data.batch_size_per_device=0"],
        f"data.data_dir={tmp_path / 'no_images'} holds no image files, subfolders included": [
            "data=image_folder", f"data.data_dir={tmp_path / 'no_images'}"],
    }
    for message, overrides in cases.items():
        result = run_cli(*overrides, f"paths.log_dir={tmp_path / 'logs'}")
        output = result.stdout + result.stderr
        errors = [line for line in output.splitlines() if "[ERROR]" in line]
        assert result.returncode == 2 and len(errors) == 1 and message in errors[0], output[-2000:]
        assert "Traceback" not in output


def test_many_timesteps_warn_but_train(compose, tmp_path):
    with pytest.warns(UserWarning, match="outside the paper's regime"):
        train(compose(TINY_TOY + ["diffusion.num_timesteps=9"], tmp_path))


def test_multirun_sweep_writes_a_summary_table(tmp_path):
    result = run_cli("-m", "diffusion.num_timesteps=1,2", *TINY_TOY, f"paths.log_dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-2000:]
    (summary,) = tmp_path.glob("gaussians25/multiruns/*/summary.csv")
    rows = list(csv.DictReader(summary.read_text().splitlines()))
    assert [r["overrides"] for r in rows] == ["diffusion.num_timesteps=1", "diffusion.num_timesteps=2"]
    assert all(r["num_modes"] == "25" for r in rows)
    assert "Sweep summary" in result.stdout
