"""The generative learning trilemma on 25-Gaussians, with numbers: python -m src.trilemma (make trilemma).

1. DDGAN for T in ddgan.timesteps: one Hydra multirun of `python -m src.train -m experiment=gaussians25
   diffusion.num_timesteps=1,2,4,8` with the experiment's defaults at run time plus `ddgan.overrides`; the one
   time-budget override: the runs cut to at most ddgan.max_iterations iterations (src/ddgan/report.py).
   Written to <output_dir>/ddgan/<job>/ (checkpoints, metrics.json, samples.png) and summary.csv.
2. Meanwhile, in this process, the Gaussian-denoiser baseline (src/ddgan/baselines/gaussian_denoiser.py): the
   DDGAN toy generator's MLP trained with the DDPM objective on `baseline.num_levels` levels of the same VP
   schedule, on the same mixture (the experiment's data config), then sampled with each of baseline.sample_steps.
3. Every model draws evaluation.num_samples samples from one seed, timed, scored with `mixture_metrics`:
   <output_dir>/trilemma.png (a panel per model over the mode centres), trilemma.csv and trilemma.md (printed).
"""
from pathlib import Path

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from src.ddgan.baselines.gaussian_denoiser import EpsilonMLP
from src.ddgan.mixture import mixture_metrics, sample_mixture
from src.ddgan.plotting import plot_mixture_samples
from src.ddgan.report import (
    Entry,
    ddgan_entries,
    entry_row,
    gaussian_entries,
    markdown_table,
    run_report,
    timed_draw,
    train_models,
    write_report,
)


def baseline_entries(baseline: DictConfig, train_cfg: DictConfig, output_dir: Path) -> list[Entry]:
    """Train (or load) the ε-prediction MLP on the experiment's mixture; one entry per number of sampling steps."""
    data = instantiate(train_cfg.data)
    generator_cfg = train_cfg.model.generator
    settings = {"data_dim": data.centers.shape[1], "hidden_dim": generator_cfg.hidden_dim,
                "num_hidden_layers": generator_cfg.num_hidden_layers, "time_embedding_dim": generator_cfg.time_embedding_dim,
                "num_fourier_frequencies": generator_cfg.get("num_fourier_frequencies", 0)}

    def points(n: int, rng: torch.Generator) -> torch.Tensor:
        return sample_mixture(data.centers, data.std, n, generator=rng)[0]

    return gaussian_entries(baseline, train_cfg, output_dir, build_model=lambda: EpsilonMLP(**settings), settings=settings,
                            data=points, iterations=baseline.iterations, mixture=data.mixture)


def data_entry(train_cfg: DictConfig) -> Entry:
    data = instantiate(train_cfg.data)
    return Entry("data", "data", None, lambda n, rng: sample_mixture(data.centers, data.std, n, generator=rng)[0])


def evaluate(entry: Entry, centers: torch.Tensor, std: float, num_samples: int, seed: int) -> tuple[dict, torch.Tensor]:
    """Samples from `seed` (after a small warm-up draw), their mixture metrics and the sampling time per 10k."""
    samples, seconds_per_10k = timed_draw(entry, num_samples, seed)
    return entry_row(entry, mixture_metrics(samples, centers, std), seconds_per_10k), samples


def trilemma_table(rows: list[dict], num_threads: int, budget_note: str = "") -> str:
    columns = {"modes covered": lambda r: f"{r['modes_covered']}/{r['num_modes']}",
               "high-quality fraction": lambda r: f"{r['high_quality_fraction']:.3f}", "mode KL": lambda r: f"{r['mode_kl']:.3f}"}
    return markdown_table(rows, columns, f"High quality: within 3 std of the nearest centre; covered: at least a quarter of a "
                                         f"mode's uniform share of the high-quality samples; times on the CPU with {num_threads} "
                                         f"thread(s). DDGAN training: {budget_note}.")


def report(cfg: DictConfig, output_dir: Path) -> list[dict]:
    """Train what is missing, evaluate every model, write the figure and the table; returns the table rows."""
    training, gaussian = train_models(cfg, output_dir, lambda train_cfg: baseline_entries(cfg.baseline, train_cfg, output_dir))
    data = instantiate(training.train_cfg.data)
    entries = [data_entry(training.train_cfg), *ddgan_entries(training.sweep_dir), *gaussian]
    results = [evaluate(e, data.centers, data.std, cfg.evaluation.num_samples, cfg.evaluation.seed) for e in entries]
    table = trilemma_table([row for row, _ in results], torch.get_num_threads(), training.budget_note)

    def draw_panel(ax, metrics: dict, samples: torch.Tensor) -> None:
        title = (f"{metrics['model']}\n{metrics['modes_covered']}/{metrics['num_modes']} modes, "
                 f"{metrics['high_quality_fraction']:.0%} HQ, KL {metrics['mode_kl']:.2f}")
        plot_mixture_samples(samples[:5000], data.centers, data.std, output_dir / "trilemma.png", title=title, ax=ax)
        ax.set(xticks=[], yticks=[])

    return write_report(results, table, draw_panel, output_dir, "trilemma", training)


@hydra.main(version_base="1.3", config_path="../conf", config_name="trilemma")
def main(cfg: DictConfig) -> None:
    run_report(report, cfg)


if __name__ == "__main__":
    main()
