"""Sample-quality evaluation: the GenerativeMetrics callback on a tiny stacked_digits run (classifier trained for
the run, reference cached once), and `src.evaluate` on its checkpoint and on an npz written by src.sample."""
import csv
import json
import runpy
import shutil
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

import src.ddgan.evaluation as evaluation_lib
import src.ddgan.metrics.reference as reference_lib
from src.ddgan.checkpoint import load_ddgan
from src.ddgan.evaluation import MetricSettings, rank_indices, stored_metric_settings
from src.ddgan.images import grid_scale
from src.ddgan.metrics import DigitClassifier, DigitFeatures
from src.ddgan.module import DDGAN
from src.evaluate import evaluate, format_table
from src.sample import generate, write_samples
from src.train import summary_line, train
from tests.conftest import compose_config, single_thread

METRIC_KEYS = {"fid", "is", "is_std", "precision", "recall", "modes_covered", "mode_kl"}
TINY_DIGITS = [
    "experiment=stacked_digits",
    "model.generator.base_channels=8",
    "model.generator.z_emb_dim=16",
    "model.discriminator.base_channels=8",
    "model.discriminator.t_emb_dim=16",
    "data.num_images=200",
    "data.batch_size_per_device=16",
    "+trainer.limit_train_batches=2",  # 2 iterations per epoch
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "logger=csv",
    "callbacks.sample_grid.num_samples=4",
    "metrics.num_samples=60",
    "metrics.num_real=100",
    "metrics.batch_size_per_device=32",
    "metrics.classifier_epochs=2",  # a rough classifier is enough to test the wiring
    "callbacks.generative_metrics.final_num_samples=null",
    "metrics.precision=32",
]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[Path, Path]:
    """(run directory, data_dir) of a 2-iteration stacked_digits run with no classifier anywhere beforehand."""
    root = tmp_path_factory.mktemp("tiny_digits")
    with single_thread():
        train(compose_config(TINY_DIGITS + [f"paths.data_dir={root / 'data'}"], output_dir=root / "run"))
    return root / "run", root / "data"


def cache_files(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "reference_cache").glob("*.pt"))


def test_callback_writes_every_metric_with_a_classifier_trained_for_the_run(tiny_run):
    run_dir, data_dir = tiny_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert METRIC_KEYS <= set(metrics)
    assert (metrics["epoch"], metrics["iteration"], metrics["num_samples"]) == (1, 2, 60)
    assert metrics["feature_extractor"].startswith("digits-r32-c3-")
    assert metrics["fid"] >= 0 and 1 <= metrics["modes_covered"] <= 1000 and 0 <= metrics["mode_kl"] <= 6.91
    assert 0 <= metrics["precision"] <= 1 and 0 <= metrics["recall"] <= 1 and 1 <= metrics["is"] <= 1000
    assert (run_dir / "digit_classifier.pt").is_file()  # configured data_dir/classifiers/digits_32.pt is absent
    assert not (data_dir / "classifiers").exists()
    (cache,) = cache_files(data_dir)
    assert cache.name.startswith("StackedDigitsDataModule-") and "first100__digits-r32-c3-" in cache.name
    logged = list(csv.DictReader((run_dir / "csv" / "metrics.csv").read_text().splitlines()))
    assert {f"eval/{k}" for k in METRIC_KEYS} <= set(logged[0])


def test_image_run_pictures_and_summary(tiny_run):
    run_dir, _ = tiny_run
    (history,) = [json.loads(line) for line in (run_dir / "metrics_history.jsonl").read_text().splitlines()]
    assert history["iteration"] == 2 and METRIC_KEYS <= set(history)
    assert Image.open(run_dir / "metric_curves.png").size == (1200, 480)  # modes, KL, FID, IS, precision, recall
    grid = run_dir / "samples" / "epoch0001.png"  # 4 samples of 32 px in a 2 x 2 grid, upscaled for reading
    assert Image.open(grid).size == (grid_scale(32) * (2 * 34 + 2),) * 2 and grid_scale(32) >= 2
    line = summary_line(run_dir, 2)
    assert line.startswith(f"done: iteration 2 | fid {history['fid']:.3g}, is {history['is']:.3g}, ")
    assert f"modes {history['modes_covered']}, kl {history['mode_kl']:.3g} | run {run_dir} | samples {grid} |" in line
    assert line.endswith(f"checkpoint {run_dir / 'checkpoints' / 'last.ckpt'}")


def test_evaluations_every_n_iterations_and_a_larger_final_one(tiny_run, tmp_path):
    _, data_dir = tiny_run
    overrides = TINY_DIGITS + [f"paths.data_dir={data_dir}", "trainer.max_epochs=-1", "~trainer.limit_train_batches",
                               "callbacks.iteration_budget.max_iterations=3",
                               "callbacks.generative_metrics.every_n_iterations=1",
                               "callbacks.generative_metrics.final_num_samples=40"]
    train(compose_config(overrides, output_dir=tmp_path / "run"))
    history = [json.loads(line) for line in (tmp_path / "run" / "metrics_history.jsonl").read_text().splitlines()]
    # every iteration with num_samples, then the last one again at the end of fit, with final_num_samples
    assert [(h["iteration"], h["num_samples"]) for h in history] == [(1, 60), (2, 60), (3, 60), (3, 40)]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["num_samples"] == 40


def test_resumed_run_reuses_the_classifier_and_the_cached_reference(tiny_run, tmp_path, monkeypatch):
    run_dir, data_dir = tiny_run
    resumed = shutil.copytree(run_dir, tmp_path / "run")
    cache = cache_files(data_dir)[0]
    stamps = cache.stat().st_mtime_ns, (resumed / "digit_classifier.pt").stat().st_mtime_ns

    def fail(*args, **kwargs):
        raise AssertionError("recomputed although cached")

    monkeypatch.setattr(reference_lib, "extract_features", fail)  # real features: only on a cache miss
    monkeypatch.setattr(evaluation_lib, "train_digit_classifier", fail)
    only_at_the_end = "callbacks.generative_metrics.every_n_epochs=0"  # the on_train_end evaluation writes it
    train(compose_config(TINY_DIGITS + [f"paths.data_dir={data_dir}", "trainer.max_epochs=2", "ckpt_path=last",
                                     only_at_the_end], output_dir=resumed))
    metrics = json.loads((resumed / "metrics.json").read_text())
    assert (metrics["epoch"], metrics["iteration"]) == (2, 4)
    assert (cache.stat().st_mtime_ns, (resumed / "digit_classifier.pt").stat().st_mtime_ns) == stamps
    assert cache_files(data_dir) == [cache]


def test_evaluate_checkpoint_and_its_npz_reproduce_the_callback(tiny_run, tmp_path):
    run_dir, data_dir = tiny_run
    from_callback = json.loads((run_dir / "metrics.json").read_text())
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    # the checkpoint: data, extractor, classifier, metrics and num_real come from the run's stored config
    record = evaluate(compose_config([f"ckpt_path={ckpt}", "metrics.num_samples=60", "metrics.seed=1234", "metrics.batch_size_per_device=25",
                                   f"paths.data_dir={data_dir}"], config_name="evaluate"))
    assert record["metrics_file"] == str(run_dir / "checkpoints" / "last_eval" / "metrics.json")
    for key in METRIC_KEYS:
        assert record[key] == pytest.approx(from_callback[key], abs=1e-6), key
    assert (record["iteration"], record["num_real"]) == (2, 100)

    # the npz that src.sample writes, scored against data=stacked_digits with an explicit classifier
    samples, _ = generate(load_ddgan(ckpt), 60, 30, seed=1234, warmup_batches=0)
    write_samples(samples, tmp_path)
    npz_record = evaluate(compose_config([f"samples={tmp_path / 'samples.npz'}", "data=stacked_digits",
                                       "data.num_images=200", "metrics.feature_extractor=digits",
                                       f"metrics.classifier_path={run_dir / 'digit_classifier.pt'}", "metrics.num_real=100",
                                       f"paths.data_dir={data_dir}"], config_name="evaluate"))
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert METRIC_KEYS <= set(written) and written["num_samples"] == 60
    for key in METRIC_KEYS:
        assert npz_record[key] == pytest.approx(from_callback[key], abs=1e-6), key
    assert len(cache_files(data_dir)) == 1  # same data, same extractor: the training run's cache
    # the npz with the run's checkpoint for the data and the metric settings
    both = evaluate(compose_config([f"samples={tmp_path / 'samples.npz'}", f"ckpt_path={ckpt}", f"output_dir={tmp_path}",
                                 f"paths.data_dir={data_dir}"], config_name="evaluate"))
    assert {key: both[key] for key in METRIC_KEYS} == {key: npz_record[key] for key in METRIC_KEYS}
    table = format_table(npz_record)
    assert "FID" in table and "modes covered" in table and "samples.npz" in table


def test_evaluate_reads_checkpoints_written_before_the_metrics_node(tiny_run, tmp_path):
    """Compatibility: a run config without the `metrics` node kept the settings in its GenerativeMetrics callback
    (metric list under `metrics`); src.evaluate reads them from there and scores as the run did."""
    run_dir, data_dir = tiny_run
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    config = checkpoint["hyper_parameters"]["config"]
    settings = config.pop("metrics")
    callback = config["callbacks"]["generative_metrics"]
    del callback["metrics"]
    callback |= {("metrics" if key == "names" else key): value for key, value in settings.items()}
    assert stored_metric_settings(config) == settings
    old = tmp_path / "checkpoints" / "old.ckpt"
    old.parent.mkdir()
    torch.save(checkpoint, old)
    (tmp_path / "digit_classifier.pt").write_bytes((run_dir / "digit_classifier.pt").read_bytes())  # the run's own
    record = evaluate(compose_config([f"ckpt_path={old}", f"paths.data_dir={data_dir}"], config_name="evaluate"))
    from_callback = json.loads((run_dir / "metrics.json").read_text())
    assert (record["num_samples"], record["seed"], record["num_real"]) == (60, 1234, 100)  # the run's settings
    for key in METRIC_KEYS:
        assert record[key] == pytest.approx(from_callback[key], abs=1e-6), key


def assert_cli_fails(args: list[str], message: str, capsys) -> None:
    """`python -m src.evaluate ARGS` ends with exit status 2 and one line on stderr that contains `message`."""
    sys.argv = ["src.evaluate", *args]
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("src.evaluate", run_name="__main__", alter_sys=False)
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and message in line, line


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # runpy: the module is already imported
def test_evaluate_cli_prints_a_table_and_rejects_bad_input(tiny_run, tmp_path, capsys):
    run_dir, data_dir = tiny_run
    argv = sys.argv
    try:
        sys.argv = ["src.evaluate", f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}", "metrics.names=[fid,modes]",
                    "metrics.num_samples=20", f"output_dir={tmp_path}", f"paths.data_dir={data_dir}"]
        runpy.run_module("src.evaluate", run_name="__main__", alter_sys=False)
        out = capsys.readouterr().out
        assert "FID" in out and "KL to uniform" in out and "precision" not in out
        assert set(json.loads((tmp_path / "metrics.json").read_text())) >= {"fid", "modes_covered", "mode_kl"}
        for bad, message in [(f"samples={tmp_path}/none.npz", "No such file"),
                             ("samples=x.npz metrics.names=[fid,kid]", "metrics.names="),
                             ("samples=x.npz metrics.precision=16", "precision=16 is not supported: use 32")]:
            assert_cli_fails(bad.split(), message, capsys)
    finally:
        sys.argv = argv


def test_bf16_evaluation_scores_close_to_fp32(tiny_run, tmp_path, monkeypatch):
    run_dir, data_dir = tiny_run
    autocast_seen = []  # (network, bf16 autocast on) per call

    def spy(cls, name: str):
        original = getattr(cls, name)

        def call(self, *args, **kwargs):
            autocast_seen.append((name, torch.is_autocast_enabled("cpu")))
            return original(self, *args, **kwargs)

        monkeypatch.setattr(cls, name, call)

    spy(DDGAN, "sample")
    spy(DigitFeatures, "features_and_logits")
    spy(DigitClassifier, "forward")  # modes
    settings = [f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}", "metrics.num_samples=60", "metrics.seed=1234", "metrics.batch_size_per_device=30",
                f"paths.data_dir={data_dir}", "device=cpu"]
    fp32 = evaluate(compose_config(settings + [f"output_dir={tmp_path / 'fp32'}"], config_name="evaluate"))
    assert autocast_seen and not any(on for _, on in autocast_seen)
    autocast_seen.clear()
    bf16 = evaluate(compose_config(settings + [f"output_dir={tmp_path / 'bf16'}", "metrics.precision=bf16"], config_name="evaluate"))
    assert {name for name, _ in autocast_seen} == {"sample", "features_and_logits", "forward"}
    assert all(on for _, on in autocast_seen)
    assert (fp32["inference_precision"], bf16["inference_precision"]) == ("32", "bf16")
    assert json.loads((tmp_path / "bf16" / "metrics.json").read_text())["inference_precision"] == "bf16"
    assert bf16["fid"] == pytest.approx(fp32["fid"], rel=0.05) and abs(bf16["modes_covered"] - fp32["modes_covered"]) <= 3
    for key in ("precision", "recall"):
        assert bf16[key] == pytest.approx(fp32[key], abs=0.1), key


@pytest.mark.parametrize("experiment", ["stacked_digits", "stackedmnist", "cifar10", "celebahq256", "lsun_church256"])
def test_every_image_experiment_has_one_metrics_node_that_the_callback_reads(experiment, tmp_path):
    cfg = compose_config([f"experiment={experiment}"], output_dir=tmp_path)
    settings = MetricSettings.from_config(cfg.metrics)  # every key present and valid
    assert OmegaConf.to_container(cfg.callbacks.generative_metrics.metrics, resolve=True) == \
        OmegaConf.to_container(cfg.metrics, resolve=True)
    assert settings.names == (["fid", "is", "pr", "modes"] if "stacked" in experiment else ["fid", "is", "pr"])
    assert not set(cfg.callbacks.generative_metrics) - {"_target_", "output_dir", "metrics", "every_n_epochs",
                                                        "every_n_iterations", "final_num_samples"}


def test_evaluate_takes_every_metrics_setting_and_its_defaults_from_the_one_node(tmp_path):
    cfg = compose_config(["paths.output_dir=x"], config_name="evaluate")
    assert list(cfg.metrics) == list(cfg.metric_defaults)  # the same keys, in the same order, none with a default here
    assert all(value is None for value in cfg.metrics.values())
    with pytest.raises(ValueError, match="metrics.num_sample is not a setting"):
        MetricSettings.from_config(dict(cfg.metric_defaults) | {"num_sample": 1})


def test_ranks_draw_contiguous_shares_of_the_sample_indices():
    shares = [rank_indices(10, rank, 3) for rank in range(3)]
    assert [list(s) for s in shares] == [[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]]


def test_missing_inception_weights_stop_the_run_before_training(tmp_path, monkeypatch):
    from src.ddgan.metrics.inception import InceptionWeightsError

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    monkeypatch.setattr("src.ddgan.metrics.inception.fid_helper_weights_file", lambda: None)  # no offline-metrics
    inception_fid = ["metrics.names=[fid]", "metrics.feature_extractor=inception"]
    cfg = compose_config(TINY_DIGITS + inception_fid + [f"paths.data_dir={tmp_path / 'data'}"], output_dir=tmp_path)
    with pytest.raises(InceptionWeightsError, match="hub/checkpoints"):
        train(cfg)
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "metrics.json").exists()


def test_evaluate_two_sample_files_statistics_files_and_several_runs(tiny_run, tmp_path):
    """samples= against reference= (images, then the pytorch-fid statistics we wrote of them), num_runs, JPEG."""
    run_dir, data_dir = tiny_run
    model = load_ddgan(run_dir / "checkpoints" / "last.ckpt")
    for name, seed in (("a", 1), ("b", 2)):
        write_samples(generate(model, 40, 40, seed=seed, warmup_batches=0)[0], tmp_path / name)
    digits = ["metrics.feature_extractor=digits", f"metrics.classifier_path={run_dir / 'digit_classifier.pt'}",
              f"paths.data_dir={data_dir}"]
    stats = tmp_path / "b_stats.npz"
    images = evaluate(compose_config([f"samples={tmp_path / 'a' / 'samples.npz'}", "metrics.names=[fid,pr]",
                                      f"reference={tmp_path / 'b' / 'samples.npz'}", f"save_statistics={stats}",
                                      *digits], config_name="evaluate"))
    assert images["metric_features"] == {"fid": images["feature_extractor"], "pr": images["feature_extractor"]}
    assert images["num_real"] == 40 and images["jpeg_quality"] is None and 0 <= images["recall"] <= 1
    from_stats = evaluate(compose_config([f"samples={tmp_path / 'a' / 'samples.npz'}", "metrics.names=[fid]",
                                          f"reference={stats}", f"output_dir={tmp_path / 's'}", *digits],
                                         config_name="evaluate"))
    assert from_stats["fid"] == pytest.approx(images["fid"], rel=1e-9)
    runs = evaluate(compose_config([f"samples={tmp_path / 'a' / 'samples.npz'}", "metrics.names=[fid]", "num_runs=2",
                                    "metrics.jpeg_quality=75", f"reference={stats}", f"output_dir={tmp_path / 'r'}", *digits],
                                   config_name="evaluate"))
    assert runs["num_runs"] == 2 and len(runs["fid_runs"]) == 2 and runs["num_samples"] == 20
    assert runs["fid"] == pytest.approx(sum(runs["fid_runs"]) / 2) and runs["fid_std"] >= 0
    assert runs["jpeg_quality"] == 75 and "± " in format_table(runs | {"metrics_file": "x"})


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # runpy: the module is already imported
def test_evaluate_rejects_bad_references_and_options_in_one_line(tiny_run, tmp_path, capsys):
    import numpy as np

    run_dir, data_dir = tiny_run
    samples = tmp_path / "samples.npz"
    np.savez(samples, arr_0=np.zeros((8, 32, 32, 3), np.uint8))
    np.savez(tmp_path / "small.npz", arr_0=np.zeros((8, 16, 16, 3), np.uint8))
    np.savez(tmp_path / "grey.npz", arr_0=np.zeros((8, 32, 32, 1), np.uint8))
    np.savez(tmp_path / "no_mu.npz", sigma=np.eye(3))
    np.savez(tmp_path / "dim.npz", mu=np.zeros(3), sigma=np.eye(3))
    digits = (f"metrics.feature_extractor=digits metrics.classifier_path={run_dir / 'digit_classifier.pt'} "
              f"paths.data_dir={data_dir}")
    argv = sys.argv
    try:
        size = "small.npz: images are 3×16×16 (C×H×W), the samples 3×32×32: expected the same channels and size"
        for bad, message in [(f"reference={tmp_path}/small.npz", size),
                             (f"reference={tmp_path}/grey.npz", "images are 1×32×32"),
                             (f"reference={tmp_path}/no_mu.npz metrics.names=[fid]", "no_mu.npz: no mu array"),
                             (f"reference={tmp_path}/dim.npz metrics.names=[fid]", "dim.npz: mu has shape (3,), expected"),
                             (f"reference={tmp_path}/dim.npz metrics.names=[fid,pr]", "precision/recall need images"),
                             (f"reference={samples} metrics.jpeg_quality=0", "jpeg_quality=0 is invalid: expected an integer"),
                             (f"reference={samples} num_runs=0", "num_runs=0 is invalid"),
                             (f"reference={samples} metrics.pr_feature_extractor=vgg", "pr_feature_extractor='vgg' is invalid")]:
            assert_cli_fails([f"samples={samples}", *bad.split(), *digits.split()], message, capsys)
    finally:
        sys.argv = argv
