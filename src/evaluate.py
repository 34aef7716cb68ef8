"""Score a trained DDGAN or a sample file against its real data (Hydra; config conf/evaluate.yaml):

    python -m src.evaluate ckpt_path=RUN/checkpoints/last.ckpt metrics=[fid,is,pr,modes] num_samples=N
    python -m src.evaluate samples=DIR/samples.npz data=stacked_digits feature_extractor=digits classifier_path=P
    python -m src.evaluate samples=a.npz reference=b.npz metrics=[fid,pr]   # b: images (arr_0) or mu/sigma stats
    python -m src.evaluate ckpt_path=... metrics=[fid] save_statistics=train_stats.npz num_runs=3 jpeg_quality=75

Writes <output_dir>/metrics.json (default: next to the npz, or <ckpt folder>/<ckpt name>_eval/) and prints a
table. The real data and the metric settings come from the checkpoint's stored run config (its
GenerativeMetrics callback), unless given; an npz alone needs data=<conf/data name>. precision=bf16 runs the generator,
the feature extractor and the classifier under bf16 autocast. Bad input ends with one line on stderr and exit status 2.
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
    SampleQuality,
    build_extractors,
    find_digit_classifier,
    generated_batches,
    load_npz_images,
    pr_extractor_name,
    real_batches,
    reference_for,
    reference_name,
    validate_metrics,
)
from src.ddgan.metrics import (
    DigitFeatures,
    ReferenceSet,
    extract_features,
    gaussian_statistics,
    load_digit_classifier,
)
from src.ddgan.metrics.protocol import load_statistics, save_statistics, validate_is_protocol, validate_jpeg_quality
from src.ddgan.metrics.weights import FeatureWeightsError
from src.ddgan.precision import validate_precision

log = logging.getLogger(__name__)


def callback_settings(run_config: dict | None) -> dict:
    """The GenerativeMetrics callback settings of a stored run config ({} when the run had none)."""
    callbacks = (run_config or {}).get("callbacks") or {}
    targets = {name: str((c or {}).get("_target_", "")) for name, c in callbacks.items()}
    return next((callbacks[name] for name, target in targets.items() if target.endswith(".GenerativeMetrics")), {})


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


def image_reference(extractor, images: torch.Tensor, batch_size: int) -> ReferenceSet:
    features, _ = extract_features(extractor, images, batch_size=batch_size)
    return ReferenceSet(gaussian_statistics(features), features)


def build_quality(cfg: DictConfig, settings: dict, datamodule, *, run_dir: Path | None, num_channels: int,
                  device: torch.device, reference_images: torch.Tensor | None = None,
                  statistics_file: Path | None = None) -> tuple[SampleQuality, int | None]:
    """The metric states, extractors, classifier and real references that cfg (else the run's settings) asks for,
    and num_real (None when the reference is a file). References: reference_images or statistics_file when given,
    else the datamodule's first num_real train images (cached)."""
    feature_extractor = cfg.feature_extractor or settings.get("feature_extractor") or "inception"
    metrics = validate_metrics(cfg.metrics or settings.get("metrics")
                               or ["fid", "is", "pr"] + (["modes"] if feature_extractor == "digits" else []))
    pr_name = pr_extractor_name(feature_extractor, cfg.pr_feature_extractor or settings.get("pr_feature_extractor"))
    is_protocol = validate_is_protocol(cfg.is_protocol or settings.get("is_protocol") or "salimans")
    jpeg_quality = validate_jpeg_quality(cfg.jpeg_quality if cfg.jpeg_quality is not None
                                         else settings.get("jpeg_quality"))
    if statistics_file is not None and "pr" in metrics:
        raise ValueError(f"reference={statistics_file} holds FID statistics (mu, sigma) only: precision/recall need "
                         "images; drop pr from metrics")
    num_real = cfg.num_real or settings.get("num_real") or 50_000
    classifier = None
    if "digits" in (feature_extractor, pr_name) or "modes" in metrics:
        classifier_path = cfg.classifier_path or find_digit_classifier(settings.get("classifier_path"), run_dir)
        if classifier_path is None:
            raise ValueError("feature_extractor=digits and metric modes need a digit classifier: give "
                             "classifier_path=<.pt> (python -m src.train_classifier writes one)")
        classifier = load_digit_classifier(classifier_path)
    needs = list(metrics) + (["fid"] if cfg.save_statistics else [])  # the statistics written are FID's
    extractor, pr_extractor = build_extractors(
        feature_extractor, needs, pr_feature_extractor=pr_name,
        digits=lambda: DigitFeatures(classifier, num_channels=num_channels),
        inception_weights_path=cfg.inception_weights_path, vgg16_weights_path=cfg.vgg16_weights_path,
        is_protocol=is_protocol)
    for net in (extractor, pr_extractor):
        if net is not None:
            net.to(device)
    fid_needed = "fid" in needs
    if statistics_file is not None:
        fid_reference = ReferenceSet(load_statistics(statistics_file, extractor.num_features)) if fid_needed else None
        pr_reference, num_real = None, None
    elif reference_images is not None:
        fid_reference = image_reference(extractor, reference_images, cfg.batch_size) if fid_needed else None
        pr_reference = image_reference(pr_extractor, reference_images, cfg.batch_size) if "pr" in needs else None
        num_real = len(reference_images)
    else:
        name = cfg.dataset_name or settings.get("dataset_name") or reference_name(datamodule, num_real)

        def cached(net, metric):
            return reference_for(net, [metric] if metric in needs else [], cache_dir=cfg.reference_cache_dir,
                                 dataset_name=name,
                                 real_images=lambda: real_batches(datamodule, num_real, batch_size=cfg.batch_size))

        fid_reference, pr_reference = cached(extractor, "fid"), cached(pr_extractor, "pr")
    if cfg.save_statistics:
        written = save_statistics(cfg.save_statistics, fid_reference.statistics)
        log.info(f"FID statistics ({extractor.name}) of the reference written to {written}")
    quality = SampleQuality(extractor if {"fid", "is"} & set(metrics) else None, metrics, reference=fid_reference,
                            classifier=classifier, pr_k=cfg.pr_k, is_splits=cfg.is_splits,
                            precision=str(cfg.precision), pr_extractor=pr_extractor, pr_reference=pr_reference,
                            jpeg_quality=jpeg_quality, is_protocol=is_protocol)
    return quality.to(device), num_real


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
    """Score cfg.samples (an npz) or cfg.num_samples images of cfg.ckpt_path; write and return the metrics."""
    if cfg.ckpt_path is None and cfg.samples is None:
        raise ValueError("give ckpt_path=<checkpoint> (sampled) or samples=<npz from src.sample> (or both)")
    if cfg.metrics is not None:
        validate_metrics(cfg.metrics)  # fail before any loading
    validate_jpeg_quality(cfg.jpeg_quality)
    num_runs = cfg.num_runs
    if isinstance(num_runs, bool) or not isinstance(num_runs, int) or num_runs < 1:
        raise ValueError(f"num_runs={num_runs!r} is invalid: expected an integer >= 1")
    precision = validate_precision(cfg.precision)
    device = pick_device(cfg.device)
    reference_images, statistics_file = read_reference(cfg.reference) if cfg.reference is not None else (None, None)
    model = load_ddgan(cfg.ckpt_path).to(device) if cfg.ckpt_path is not None else None
    run_config = model.hparams["config"] if model is not None else None
    images = load_npz_images(cfg.samples) if cfg.samples is not None else None
    sample_shape = tuple(images.shape[1:]) if images is not None else tuple(model.sample_shape)
    if reference_images is not None:
        check_same_shape(reference_images, sample_shape, cfg.reference)
    data_config = run_config["data"] if run_config is not None else cfg.get("data")
    if data_config is None and cfg.reference is None:
        raise ValueError(f"samples={cfg.samples}: name the real data with data=<conf/data name> "
                         "(e.g. data=stacked_digits) or reference=<npz>, or give the run's ckpt_path=")
    # images are only loaded if the reference is not cached
    datamodule = instantiate(data_config) if data_config is not None and cfg.reference is None else None
    quality, num_real = build_quality(
        cfg, callback_settings(run_config), datamodule, device=device,
        run_dir=run_directory(Path(cfg.ckpt_path), run_config) if model is not None else None,
        num_channels=sample_shape[0], reference_images=reference_images, statistics_file=statistics_file)

    if images is not None:
        per_run = len(images) // num_runs
        if per_run < 2:
            raise ValueError(f"samples={cfg.samples}: {len(images)} images cannot make num_runs={num_runs} sets")
        results = average_runs([quality.score(images[r * per_run:(r + 1) * per_run].split(cfg.batch_size))
                                for r in range(num_runs)])
        source = {"samples": str(cfg.samples), "num_samples": per_run}
    else:  # run r draws samples r * num_samples ... (r + 1) * num_samples - 1: independent sets
        results = average_runs([quality.score(generated_batches(
            model, range(r * cfg.num_samples, (r + 1) * cfg.num_samples), batch_size=cfg.batch_size, seed=cfg.seed,
            use_ema=cfg.use_ema, precision=precision)) for r in range(num_runs)])
        source = {"num_samples": cfg.num_samples, "seed": cfg.seed, "use_ema": cfg.use_ema}
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
            ("modes covered", "modes_covered"), ("KL to uniform", "mode_kl")]
    lines = [f"{'metric':<14} {'value':>10}", "-" * 25]
    for label, key in rows:
        if key in record:
            value = record[key]
            text = f"{value:>10d}" if isinstance(value, int) else f"{value:>10.4f}"
            if key == "is" and "is_std" in record:
                text += f" ± {record['is_std']:.4f}"
            if key == "fid" and "fid_std" in record:
                text += f" ± {record['fid_std']:.4f} ({record['num_runs']} runs)"
            lines.append(f"{label:<14} {text}")
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
