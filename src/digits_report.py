"""The image trilemma on stacked digits, with numbers: python -m src.digits_report (make digits-report).

1. DDGAN for T in ddgan.timesteps: one Hydra multirun of `python -m src.train -m experiment=stacked_digits
   diffusion.num_timesteps=1,2,4` with the experiment's defaults at run time plus `ddgan.overrides`, cut to at most
   ddgan.max_iterations iterations (src/ddgan/report.py). Written to <output_dir>/ddgan/<job>/ and summary.csv.
2. Meanwhile, in this process, the Gaussian-denoiser baseline: the experiment's own generator network (NCSN++) as
   ε_θ(x_k, k) = G(x_k, k, z = 0), its tanh output left off, trained with the DDPM objective on `baseline.num_levels`
   levels of the same VP schedule for as many iterations and at the same batch size as the DDGAN runs, on batches
   drawn from the experiment's train set; then sampled with each of baseline.sample_steps.
3. Every model, and the data itself, gives evaluation.num_samples images from one seed, timed, scored with the
   digit-classifier metrics of the experiment's GenerativeMetrics (modes covered, mode KL, FID and precision /
   recall in the classifier's feature space) against the first num_real train images:
   <output_dir>/digits_report.png (a sample grid per model), digits_report.csv and digits_report.md (printed).
"""
import logging
import math
from collections.abc import Callable
from pathlib import Path

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torchvision.utils import make_grid

from src.ddgan.baselines.gaussian_denoiser import EpsilonGenerator
from src.ddgan.evaluation import MetricSettings, SampleQuality, build_sample_quality
from src.ddgan.metrics.features import to_uint8
from src.ddgan.metrics.mode_coverage import NUM_STACKED_MODES
from src.ddgan.precision import autocast, validate_precision
from src.ddgan.report import (
    Entry,
    ddgan_entries,
    entry_row,
    experiment_config,
    gaussian_entries,
    markdown_table,
    run_iterations,
    run_report,
    timed_draw,
    train_models,
    write_report,
)

log = logging.getLogger(__name__)
METRICS = ["fid", "pr", "modes"]


def train_images(data_cfg: DictConfig) -> Callable[[int, torch.Generator], torch.Tensor]:
    """draw(n, rng): n images (n, C, H, W) in [-1, 1] of the data config's train set, uniformly with replacement."""
    datamodule = instantiate(data_cfg)
    datamodule.setup("fit")
    dataset = datamodule.train_dataset

    def draw(n: int, rng: torch.Generator) -> torch.Tensor:
        return torch.stack([dataset[i][0] for i in torch.randint(len(dataset), (n,), generator=rng).tolist()])

    return draw


def baseline_entries(baseline: DictConfig, train_cfg: DictConfig, output_dir: Path) -> list[Entry]:
    """Train (or load) the runs' generator network as ε_θ on their train set; one entry per number of sampling steps."""
    settings = OmegaConf.to_container(train_cfg.model.generator, resolve=True) | {"final_tanh": False}  # ε is unbounded
    memory_format = torch.channels_last if train_cfg.model.get("channels_last") else torch.preserve_format  # as the runs

    def build_model() -> EpsilonGenerator:
        return EpsilonGenerator(instantiate(settings)).to(memory_format=memory_format)

    return gaussian_entries(baseline, train_cfg, output_dir, build_model=build_model, settings=settings,
                            data=train_images(train_cfg.data),
                            iterations=baseline.iterations or run_iterations(train_cfg))


def metric_settings(train_cfg: DictConfig) -> DictConfig:
    """The runs' metrics node (classifier, reference cache), which the report scores with."""
    callback = OmegaConf.select(train_cfg, "callbacks.generative_metrics")
    if callback is None or "_target_" not in callback:  # the experiment's own values alone are not the callback
        raise ValueError("the runs have no callbacks.generative_metrics, whose metrics settings the report uses: keep "
                         "it (callbacks.generative_metrics.every_n_epochs=0 evaluates only at the end of a run)")
    return train_cfg.metrics


def sample_quality(train_cfg: DictConfig, output_dir: Path, num_real: int, batch_size: int, precision: str) -> SampleQuality:
    """The report's scorer, from the runs' metrics node with the report's metrics, sizes and precision, built by the
    library's one builder: digit-classifier features (the report's own <output_dir>/digit_classifier.pt, else the
    experiment's classifier_path, else one trained into output_dir); the reference is the first num_real train images."""
    node = OmegaConf.to_container(metric_settings(train_cfg), resolve=True) | {
        "names": METRICS, "feature_extractor": "digits", "pr_feature_extractor": "digits", "num_real": num_real,
        "batch_size_per_device": batch_size, "precision": precision}
    datamodule = instantiate(train_cfg.data)
    quality, _ = build_sample_quality(MetricSettings.from_config(node), sample_shape=datamodule.sample_shape,
                                      device="cpu", run_dir=output_dir, train_missing_classifier=True,
                                      datamodule=datamodule)
    return quality


def evaluate(entry: Entry, quality: SampleQuality, evaluation: DictConfig) -> tuple[dict, torch.Tensor]:
    """evaluation.num_samples images from evaluation.seed, timed, and their metrics; with the first grid_size images."""
    with autocast("cpu", quality.precision):  # bf16: the networks under autocast, the sampler's steps in fp32
        samples, seconds_per_10k = timed_draw(entry, evaluation.num_samples, evaluation.seed, evaluation.batch_size)
    row = entry_row(entry, quality.score(to_uint8(batch) for batch in samples.split(evaluation.batch_size)), seconds_per_10k)
    log.info(f"{entry.name}: " + ", ".join(f"{k} {v:.4g}" for k, v in row.items() if isinstance(v, float)))
    return row, samples[:evaluation.grid_size]


def draw_grid(ax, row: dict, samples: torch.Tensor) -> None:
    grid = make_grid(samples.clamp(-1, 1), nrow=math.ceil(math.sqrt(len(samples))), normalize=True, value_range=(-1, 1),
                     padding=1, pad_value=1.0)
    ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_title(f"{row['model']}\nNFE {row['nfe'] or '–'}, {row['modes_covered']}/{NUM_STACKED_MODES} modes, "
                 f"FID {row['fid']:.1f}", fontsize=9)
    ax.axis("off")


def digits_table(rows: list[dict], num_threads: int, precision: str, num_samples: int, num_real: int, budget_note: str) -> str:
    columns = {"modes covered": lambda r: f"{r['modes_covered']}/{NUM_STACKED_MODES}", "mode KL": lambda r: f"{r['mode_kl']:.3f}",
               "FID": lambda r: f"{r['fid']:.2f}", "precision": lambda r: f"{r['precision']:.3f}",
               "recall": lambda r: f"{r['recall']:.3f}"}
    return markdown_table(rows, columns, f"{num_samples} samples per model from one seed (data: train images drawn with "
                                         f"replacement) against the first {num_real} train images; FID, precision and recall "
                                         f"(k = 3) in the digit classifier's feature space; times on the CPU with "
                                         f"{num_threads} thread(s), networks in {'bf16 autocast' if precision == 'bf16' else 'fp32'}. "
                                         f"DDGAN training: {budget_note}.")


def report(cfg: DictConfig, output_dir: Path) -> list[dict]:
    """Train what is missing, evaluate every model, write the figure and the table; returns the table rows."""
    evaluation = cfg.evaluation
    settings = metric_settings(experiment_config(cfg.ddgan))  # bad settings fail before any training
    precision = validate_precision(evaluation.precision or settings.get("precision", "32"), "evaluation.precision")
    num_real = evaluation.num_real or evaluation.num_samples

    def beside_the_runs(train_cfg: DictConfig) -> tuple[SampleQuality, list[Entry]]:  # classifier and reference first
        return (sample_quality(train_cfg, output_dir, num_real, evaluation.batch_size, precision),
                baseline_entries(cfg.baseline, train_cfg, output_dir))

    training, (quality, gaussian) = train_models(cfg, output_dir, beside_the_runs)
    entries = [Entry("data", "data", None, train_images(training.train_cfg.data)), *ddgan_entries(training.sweep_dir), *gaussian]
    results = [evaluate(entry, quality, evaluation) for entry in entries]
    table = digits_table([row for row, _ in results], torch.get_num_threads(), precision, evaluation.num_samples, num_real,
                         training.budget_note)
    return write_report(results, table, draw_grid, output_dir, "digits_report", training, panel_size=(3.2, 3.6), dpi=150)


@hydra.main(version_base="1.3", config_path="../conf", config_name="digits_report")
def main(cfg: DictConfig) -> None:
    run_report(report, cfg)


if __name__ == "__main__":
    main()
