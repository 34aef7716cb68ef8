"""Score a trained DDGAN or a sample file against its real data (Hydra; config conf/evaluate.yaml):

    python -m src.evaluate ckpt_path=RUN/checkpoints/last.ckpt metrics=[fid,is,pr,modes] num_samples=N
    python -m src.evaluate samples=DIR/samples.npz data=stacked_digits feature_extractor=digits classifier_path=P

Writes <output_dir>/metrics.json (default: next to the npz, or <ckpt folder>/<ckpt name>_eval/) and prints a
table. The real data and the metric settings come from the checkpoint's stored run config (its
GenerativeMetrics callback), unless given; an npz alone needs data=<conf/data name>. precision=bf16 runs the generator,
the feature extractor and the classifier under bf16 autocast. Bad input ends with one line on stderr and exit status 2.
"""
import logging
from pathlib import Path

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from src.ddgan.callbacks.run_metrics import update_metrics_file
from src.ddgan.checkpoint import load_ddgan
from src.ddgan.cli import fail, pick_device
from src.ddgan.data.errors import DataError
from src.ddgan.evaluation import (
    SampleQuality,
    find_digit_classifier,
    generated_batches,
    load_npz_images,
    real_batches,
    reference_for,
    reference_name,
    validate_metrics,
)
from src.ddgan.metrics import DigitFeatures, build_feature_extractor, load_digit_classifier
from src.ddgan.metrics.inception import InceptionWeightsError
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


def build_quality(cfg: DictConfig, settings: dict, datamodule, *, run_dir: Path | None, num_channels: int,
                  device: torch.device) -> tuple[SampleQuality, int]:
    """The metric states, extractor, classifier and real reference that cfg (else the run's settings) asks for,
    and num_real."""
    feature_extractor = cfg.feature_extractor or settings.get("feature_extractor") or "inception"
    metrics = validate_metrics(cfg.metrics or settings.get("metrics")
                               or ["fid", "is", "pr"] + (["modes"] if feature_extractor == "digits" else []))
    num_real = cfg.num_real or settings.get("num_real") or 50_000
    classifier = None
    if feature_extractor == "digits" or "modes" in metrics:
        classifier_path = cfg.classifier_path or find_digit_classifier(settings.get("classifier_path"), run_dir)
        if classifier_path is None:
            raise ValueError("feature_extractor=digits and metric modes need a digit classifier: give "
                             "classifier_path=<.pt> (python -m src.train_classifier writes one)")
        classifier = load_digit_classifier(classifier_path)
    if feature_extractor == "digits":
        extractor = DigitFeatures(classifier, num_channels=num_channels)
    else:
        extractor = build_feature_extractor(feature_extractor, weights_path=cfg.inception_weights_path)
    extractor.to(device)
    reference = reference_for(
        extractor, metrics, cache_dir=cfg.reference_cache_dir,
        dataset_name=cfg.dataset_name or settings.get("dataset_name") or reference_name(datamodule, num_real),
        real_images=lambda: real_batches(datamodule, num_real, batch_size=cfg.batch_size))
    quality = SampleQuality(extractor, metrics, reference=reference, classifier=classifier, pr_k=cfg.pr_k,
                            is_splits=cfg.is_splits, precision=str(cfg.precision))
    return quality.to(device), num_real


def evaluate(cfg: DictConfig) -> dict:
    """Score cfg.samples (an npz) or cfg.num_samples images of cfg.ckpt_path; write and return the metrics."""
    if cfg.ckpt_path is None and cfg.samples is None:
        raise ValueError("give ckpt_path=<checkpoint> (sampled) or samples=<npz from src.sample> (or both)")
    if cfg.metrics is not None:
        validate_metrics(cfg.metrics)  # fail before any loading
    precision = validate_precision(cfg.precision)
    device = pick_device(cfg.device)
    model = load_ddgan(cfg.ckpt_path).to(device) if cfg.ckpt_path is not None else None
    run_config = model.hparams["config"] if model is not None else None
    images = load_npz_images(cfg.samples) if cfg.samples is not None else None
    data_config = run_config["data"] if run_config is not None else cfg.get("data")
    if data_config is None:
        raise ValueError(f"samples={cfg.samples}: name the real data with data=<conf/data name> "
                         "(e.g. data=stacked_digits), or give the run's ckpt_path=")
    datamodule = instantiate(data_config)  # images are only loaded if the reference is not cached
    quality, num_real = build_quality(
        cfg, callback_settings(run_config), datamodule, device=device,
        run_dir=run_directory(Path(cfg.ckpt_path), run_config) if model is not None else None,
        num_channels=images.shape[1] if images is not None else datamodule.num_channels)

    if images is not None:
        results = quality.score(images.split(cfg.batch_size))
        source = {"samples": str(cfg.samples), "num_samples": len(images)}
    else:
        batches = generated_batches(model, range(cfg.num_samples), batch_size=cfg.batch_size, seed=cfg.seed,
                                    use_ema=cfg.use_ema, precision=precision)
        results = quality.score(batches)
        source = {"num_samples": cfg.num_samples, "seed": cfg.seed, "use_ema": cfg.use_ema}
    if model is not None:
        source |= {"ckpt_path": str(cfg.ckpt_path), "iteration": model.iteration}
    record = results | source | {"num_real": num_real, "feature_extractor": quality.extractor.name,
                                 "inference_precision": precision}  # "precision" is the metric
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
            if key == "is":
                text += f" ± {record['is_std']:.4f}"
            lines.append(f"{label:<14} {text}")
    source = record.get("ckpt_path") or record.get("samples")
    lines.append(f"{record['num_samples']} samples of {source} vs {record['num_real']} real images, "
                 f"{record['feature_extractor']} features -> {record['metrics_file']}")
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> dict:
    torch.set_flush_denormal(True)  # denormals make CPU networks several times slower
    try:
        record = evaluate(cfg)
    except (FileNotFoundError, ValueError, DataError, InceptionWeightsError) as error:
        fail(str(error))
    print(format_table(record))
    return record


if __name__ == "__main__":
    main()
