"""Score a trained DDGAN or a sample file against its real data (Hydra; config conf/evaluate.yaml):

    python -m src.evaluate ckpt_path=RUN/checkpoints/last.ckpt metrics.names=[fid,is,pr,modes] metrics.num_samples=N
    python -m src.evaluate samples=DIR/samples.npz data=stacked_digits metrics.feature_extractor=digits metrics.classifier_path=P
    python -m src.evaluate samples=a.npz reference=b.npz metrics.names=[fid,pr]   # b: images (arr_0) or mu/sigma stats
    python -m src.evaluate ckpt_path=... metrics.names=[fid] save_statistics=train_stats.npz num_runs=3 metrics.jpeg_quality=75

Writes <output_dir>/metrics.json (default: next to the npz, or <ckpt folder>/<ckpt name>_eval/) and prints a
table. The real data and the metric settings come from the checkpoint's stored run config (its `metrics` node),
unless given; an npz alone needs data=<conf/data name>. metrics.precision=bf16 runs the generator, the feature
extractor and the classifier under bf16 autocast. Bad input ends with one line on stderr and exit status 2.
"""
import logging
import zipfile
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from src.ddgan.callbacks.run_metrics import update_metrics_file
from src.ddgan.checkpoint import load_ddgan
from src.ddgan.cli import fail, pick_device
from src.ddgan.data.errors import DataError
from src.ddgan.evaluation import (
    MetricSettings,
    build_sample_quality,
    generated_batches,
    load_npz_images,
    load_npz_labels,
    stored_metric_settings,
    validate_metrics,
)
from src.ddgan.metrics.protocol import save_statistics, validate_jpeg_quality
from src.ddgan.metrics.weights import FeatureWeightsError
from src.ddgan.precision import validate_precision

log = logging.getLogger(__name__)

# settings of this machine: where its files are and what fits in its memory, never taken from the run
MACHINE_SETTINGS = frozenset({"batch_size_per_device", "inception_weights_path", "vgg16_weights_path",
                              "reference_cache_dir", "classifier_data_dir"})


def metric_settings(cfg: DictConfig, run_config: dict | None) -> MetricSettings:
    """cfg.metrics where given, else the run's stored metrics node (not MACHINE_SETTINGS), else the defaults."""
    settings = dict(cfg.metric_defaults)
    stored = stored_metric_settings(run_config)
    settings |= {key: value for key, value in stored.items() if key in settings and key not in MACHINE_SETTINGS}
    return MetricSettings.from_config(settings | {key: value for key, value in cfg.metrics.items() if value is not None})


def run_directory(ckpt_path: Path, run_config: dict) -> Path:
    """The run directory of a checkpoint: RUN for RUN/checkpoints/x.ckpt, else the run's stored output_dir."""
    if ckpt_path.parent.name == "checkpoints":
        return ckpt_path.parent.parent
    return Path(run_config.get("paths", {}).get("output_dir", ckpt_path.parent))


def default_output_dir(cfg: DictConfig) -> Path:
    if cfg.output_dir is not None:
        return Path(cfg.output_dir)
    if cfg.samples is not None:
        return Path(cfg.samples).parent
    return Path(cfg.ckpt_path).parent / f"{Path(cfg.ckpt_path).stem}_eval"


def read_reference(path: str | Path) -> tuple[torch.Tensor | None, Path | None]:
    """(images, None) for an npz of images under arr_0, (None, path) for a pytorch-fid statistics file (mu, sigma)."""
    try:
        with np.load(path) as archive:
            keys = archive.files
    except (ValueError, OSError, zipfile.BadZipFile) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise ValueError(f"reference={path}: not an .npz file ({type(error).__name__}: {error})") from None
    if "arr_0" in keys:
        return load_npz_images(path, what="reference"), None
    if "mu" in keys or "sigma" in keys:
        return None, Path(path)
    raise ValueError(f"reference={path}: expected images (uint8 N×H×W×C under arr_0) or pytorch-fid statistics "
                     f"(mu, sigma), found {keys}")


def check_same_shape(reference: torch.Tensor, sample_shape: tuple[int, ...], where: str) -> None:
    if tuple(reference.shape[1:]) != tuple(sample_shape):
        c, h, w = reference.shape[1:]
        raise ValueError(f"reference={where}: images are {c}×{h}×{w} (C×H×W), the samples "
                         f"{'×'.join(map(str, sample_shape))}: expected the same channels and size")


def average_runs(runs: list[dict[str, float]]) -> dict:
    """One run's metrics as they are; several: each metric's mean, and FID's sample std and per-run values."""
    if len(runs) == 1:
        return runs[0]
    results = {key: float(np.mean([run[key] for run in runs])) for key in runs[0]}
    if "fid" in results:
        fids = [run["fid"] for run in runs]
        results |= {"fid_std": float(np.std(fids, ddof=1)), "fid_runs": fids}
    return results | {"num_runs": len(runs)}


def evaluate(cfg: DictConfig) -> dict:
    """Score cfg.samples (an npz) or metrics.num_samples images of cfg.ckpt_path; write and return the metrics."""
    if cfg.ckpt_path is None and cfg.samples is None:
        raise ValueError("give ckpt_path=<checkpoint> (sampled) or samples=<npz from src.sample> (or both)")
    if cfg.metrics.names is not None:
        validate_metrics(cfg.metrics.names)  # fail before any loading
    validate_jpeg_quality(cfg.metrics.jpeg_quality)
    num_runs = cfg.num_runs
    if isinstance(num_runs, bool) or not isinstance(num_runs, int) or num_runs < 1:
        raise ValueError(f"num_runs={num_runs!r} is invalid: expected an integer >= 1")
    if cfg.metrics.precision is not None:
        validate_precision(cfg.metrics.precision, key="metrics.precision")
    device = pick_device(cfg.device)
    reference_images, statistics_file = read_reference(cfg.reference) if cfg.reference is not None else (None, None)
    model = load_ddgan(cfg.ckpt_path).to(device) if cfg.ckpt_path is not None else None
    run_config = model.hparams["config"] if model is not None else None
    settings = metric_settings(cfg, run_config)
    images = load_npz_images(cfg.samples) if cfg.samples is not None else None
    labels = load_npz_labels(cfg.samples) if cfg.samples is not None else None
    sample_shape = tuple(images.shape[1:]) if images is not None else tuple(model.sample_shape)
    if reference_images is not None:
        check_same_shape(reference_images, sample_shape, cfg.reference)
    data_config = run_config["data"] if run_config is not None else cfg.get("data")
    if data_config is None and cfg.reference is None:
        raise ValueError(f"samples={cfg.samples}: name the real data with data=<conf/data name> "
                         "(e.g. data=stacked_digits) or reference=<npz>, or give the run's ckpt_path=")
    # images are only loaded if the reference is not cached
    datamodule = instantiate(data_config) if data_config is not None and cfg.reference is None else None
    # an explicit metrics.classifier_path wins over the run's own classifier
    run_dir = run_directory(Path(cfg.ckpt_path), run_config) if model is not None else None
    quality, num_real = build_sample_quality(
        settings, sample_shape=sample_shape, device=device,
        run_dir=run_dir if cfg.metrics.classifier_path is None else None, datamodule=datamodule,
        reference_images=reference_images, statistics_file=statistics_file, fid_reference=bool(cfg.save_statistics),
        num_classes=model.num_classes if model is not None else getattr(datamodule, "model_classes", 0))
    if cfg.save_statistics:
        written = save_statistics(cfg.save_statistics, quality.reference.statistics)
        log.info(f"FID statistics ({quality.extractor.name}) of the reference written to {written}")
    batch_size, precision = settings.batch_size_per_device, settings.precision

    if images is not None:
        per_run = len(images) // num_runs
        if per_run < 2:
            raise ValueError(f"samples={cfg.samples}: {len(images)} images cannot make num_runs={num_runs} sets")
        if "conditional" in settings.names and labels is None:
            raise ValueError(f"samples={cfg.samples} holds no `labels`: metric conditional needs the classes the "
                             "samples were drawn for (src.sample of a class-conditional model writes them)")

        def run_batches(r: int):
            chunk = slice(r * per_run, (r + 1) * per_run)
            return zip(images[chunk].split(batch_size), labels[chunk].split(batch_size)) if labels is not None \
                else images[chunk].split(batch_size)

        results = average_runs([quality.score(run_batches(r)) for r in range(num_runs)])
        source = {"samples": str(cfg.samples), "num_samples": per_run}
    else:  # run r draws samples r * num_samples ... (r + 1) * num_samples - 1: independent sets
        num_samples, seed = settings.num_samples, settings.seed
        results = average_runs([quality.score(generated_batches(
            model, range(r * num_samples, (r + 1) * num_samples), batch_size=batch_size, seed=seed,
            use_ema=cfg.use_ema, precision=precision)) for r in range(num_runs)])
        source = {"num_samples": num_samples, "seed": seed, "use_ema": cfg.use_ema}
    if model is not None:
        source |= {"ckpt_path": str(cfg.ckpt_path), "iteration": model.iteration}
    if cfg.reference is not None:
        source |= {"reference": str(cfg.reference)}
    record = results | source | {"num_real": num_real, "inference_precision": precision} | quality.describe()
    output_dir = default_output_dir(cfg)
    output_dir.mkdir(parents=True, exist_ok=True)
    update_metrics_file(output_dir / "metrics.json", record)
    return record | {"metrics_file": str(output_dir / "metrics.json")}


def format_table(record: dict) -> str:
    """The metrics of `record` as a two-column table, then what was scored."""
    rows = [("FID", "fid"), ("IS", "is"), ("precision", "precision"), ("recall", "recall"),
            ("modes covered", "modes_covered"), ("KL to uniform", "mode_kl"),
            ("cond. accuracy", "conditional_accuracy"), ("intra-class FID", "intra_class_fid")]
    lines = [f"{'metric':<15} {'value':>10}", "-" * 26]
    for label, key in rows:
        if record.get(key) is not None:
            value = record[key]
            text = f"{value:>10d}" if isinstance(value, int) else f"{value:>10.4f}"
            if key == "is" and "is_std" in record:
                text += f" ± {record['is_std']:.4f}"
            if key == "fid" and "fid_std" in record:
                text += f" ± {record['fid_std']:.4f} ({record['num_runs']} runs)"
            lines.append(f"{label:<15} {text}")
    source = record.get("ckpt_path") or record.get("samples")
    real = record.get("reference") or f"{record['num_real']} real images"
    features = ", ".join(f"{metric}: {name}" for metric, name in record.get("metric_features", {}).items())
    jpeg = f", JPEG quality {record['jpeg_quality']}" if record.get("jpeg_quality") else ""
    lines.append(f"{record['num_samples']} samples of {source} vs {real} ({features}{jpeg}) -> {record['metrics_file']}")
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> dict:
    torch.set_flush_denormal(True)  # denormals make CPU networks several times slower
    try:
        record = evaluate(cfg)
    except (FileNotFoundError, ValueError, DataError, FeatureWeightsError) as error:
        fail(str(error))
    print(format_table(record))
    return record


if __name__ == "__main__":
    main()
