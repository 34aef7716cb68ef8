"""The generative learning trilemma on 25-Gaussians, with numbers: python -m src.trilemma (make trilemma).

1. DDGAN for T in ddgan.timesteps: one Hydra multirun of `python -m src.train -m experiment=gaussians25
   diffusion.num_timesteps=1,2,4,8` with the experiment's defaults at run time plus `ddgan.overrides`; the one
   time-budget override: max_epochs cut so that a run takes at most ddgan.max_iterations iterations.
   Written to <output_dir>/ddgan/<job>/ (checkpoints, metrics.json, samples.png) and summary.csv.
2. Meanwhile, in this process, the Gaussian-denoiser baseline (src/ddgan/baselines/gaussian_denoiser.py): the
   DDGAN toy generator's MLP trained with the DDPM objective on `baseline.num_levels` levels of the same VP
   schedule, on the same mixture (the experiment's data config), then sampled with each of baseline.sample_steps.
3. Every model draws evaluation.num_samples samples from one seed, timed, scored with `mixture_metrics`:
   <output_dir>/trilemma.png (a panel per model over the mode centres), trilemma.csv and trilemma.md (printed).
"""
import csv
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from src.ddgan.baselines.gaussian_denoiser import EpsilonMLP, fine_schedule, sample_gaussian, train_denoiser
from src.ddgan.checkpoint import load_ddgan
from src.ddgan.mixture import mixture_metrics, sample_mixture
from src.ddgan.plotting import plot_mixture_samples, plt

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Entry:
    """One model of the report: how to draw n samples (in the mixture's units) from a torch.Generator."""

    name: str
    family: str  # data | ddgan | gaussian
    nfe: int | None  # network evaluations per sample
    draw: Callable[[int, torch.Generator], torch.Tensor]
    train_iterations: int | None = None


# ---- 1. DDGAN: one Hydra multirun -------------------------------------------------------------------------
def joblib_available() -> bool:
    try:
        import hydra_plugins.hydra_joblib_launcher  # noqa: F401
    except ImportError:
        return False
    return True


def experiment_config(ddgan: DictConfig, overrides: list[str] = ()) -> DictConfig:
    """The DDGAN runs' training config as src.train composes it, without the T override (the baseline's data and
    MLP come from it). Needs an initialised Hydra: inside main, or within initialize_config_dir."""
    return hydra.compose(config_name="train", overrides=[f"experiment={ddgan.experiment}", *ddgan.overrides, *overrides])


def budget_overrides(ddgan: DictConfig, train_cfg: DictConfig) -> tuple[list[str], str]:
    """The time-budget override of the runs (ddgan.max_epochs, else max_epochs cut to ddgan.max_iterations) and a note."""
    epochs, per_epoch = train_cfg.trainer.max_epochs, train_cfg.data.iterations_per_epoch
    if ddgan.max_epochs:
        return [f"trainer.max_epochs={ddgan.max_epochs}"], f"trainer.max_epochs={ddgan.max_epochs} (set; experiment: {epochs})"
    if ddgan.max_iterations and epochs * per_epoch > ddgan.max_iterations:
        cut = max(1, ddgan.max_iterations // per_epoch)
        return [f"trainer.max_epochs={cut}"], (f"trainer.max_epochs={cut} (experiment: {epochs} epochs of {per_epoch} "
                                               f"iterations, cut to the {ddgan.max_iterations}-iteration budget)")
    return [], f"the experiment's trainer.max_epochs={epochs} ({epochs * per_epoch} iterations)"


def ddgan_sweep_command(ddgan: DictConfig, sweep_dir: Path | str, budget: list[str] = ()) -> list[str]:
    """The `python -m src.train -m ...` command line of the DDGAN runs."""
    command = [sys.executable, "-m", "src.train", "-m", f"experiment={ddgan.experiment}",
               "diffusion.num_timesteps=" + ",".join(str(t) for t in ddgan.timesteps),
               *ddgan.overrides, *budget, f"hydra.sweep.dir={sweep_dir}"]
    if ddgan.parallel_jobs > 1 and joblib_available():
        command += ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={ddgan.parallel_jobs}"]
    return command


def launch_ddgan_sweep(ddgan: DictConfig, sweep_dir: Path, budget: list[str]) -> subprocess.Popen:
    """Start the multirun in the background, ddgan.threads_per_job CPU threads per job."""
    command = ddgan_sweep_command(ddgan, sweep_dir, budget)
    log.info("DDGAN runs: " + " ".join(command[1:]))
    env = os.environ | {"OMP_NUM_THREADS": str(ddgan.threads_per_job), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(command, cwd=ROOT, env=env)


def ddgan_entries(sweep_dir: Path) -> list[Entry]:
    """One entry per finished job of the sweep (its last.ckpt, EMA generator), in order of T."""
    entries = []
    for ckpt in sweep_dir.glob("*/checkpoints/last.ckpt"):
        model = load_ddgan(ckpt)
        scale = float(model.hparams["config"]["data"].get("scale", 1.0))
        num_timesteps = model.schedule.num_timesteps

        def draw(n: int, rng: torch.Generator, model=model, scale=scale) -> torch.Tensor:
            return model.sample(n, rng=rng) / scale

        entries.append(Entry(f"DDGAN T={num_timesteps}", "ddgan", num_timesteps, draw, model.iteration))
    if not entries:
        raise FileNotFoundError(f"no DDGAN checkpoints under {sweep_dir}/*/checkpoints/last.ckpt")
    return sorted(entries, key=lambda e: e.nfe)


# ---- 2. the Gaussian-denoiser baseline --------------------------------------------------------------------
def baseline_entries(baseline: DictConfig, train_cfg: DictConfig, output_dir: Path) -> list[Entry]:
    """Train (or load) the ε-prediction MLP on the experiment's mixture; one entry per number of sampling steps."""
    data = instantiate(train_cfg.data)
    generator_cfg = train_cfg.model.generator
    settings = {"data_dim": data.centers.shape[1], "hidden_dim": generator_cfg.hidden_dim,
                "num_hidden_layers": generator_cfg.num_hidden_layers, "time_embedding_dim": generator_cfg.time_embedding_dim,
                "num_fourier_frequencies": generator_cfg.get("num_fourier_frequencies", 0)}
    schedule = fine_schedule(baseline.num_levels, beta_min=train_cfg.diffusion.beta_min,
                             beta_max=train_cfg.diffusion.beta_max, eps=train_cfg.diffusion.eps)
    torch.manual_seed(baseline.seed)  # the initial weights
    model = EpsilonMLP(**settings)
    if baseline.ckpt_path:
        state = torch.load(baseline.ckpt_path, weights_only=True)
        model.load_state_dict(state["ema"])
        iterations = state["iterations"]
    else:
        iterations = baseline.iterations

        def points(n: int, rng: torch.Generator) -> torch.Tensor:
            return sample_mixture(data.centers, data.std, n, generator=rng)[0] * data.scale

        started = time.perf_counter()
        model = train_denoiser(model, schedule, points, iterations=iterations, batch_size=data.batch_size_per_device,
                               seed=baseline.seed, lr=baseline.lr, lr_min=baseline.lr_min, ema_decay=baseline.ema_decay,
                               log_every=max(iterations // 10, 1))
        log.info(f"Gaussian denoiser: {iterations} iterations in {time.perf_counter() - started:.0f} s")
        (output_dir / "gaussian_denoiser").mkdir(parents=True, exist_ok=True)
        torch.save({"ema": model.state_dict(), "iterations": iterations, "settings": settings,
                    "num_levels": baseline.num_levels}, output_dir / "gaussian_denoiser" / "model.pt")
    model.eval()

    def make_draw(num_steps: int):
        def draw(n: int, rng: torch.Generator) -> torch.Tensor:
            x_T = torch.randn(n, settings["data_dim"], generator=rng)
            return sample_gaussian(model, schedule, x_T, num_steps, rng) / data.scale
        return draw

    return [Entry(f"Gaussian S={s}", "gaussian", s, make_draw(s), iterations) for s in baseline.sample_steps]


def data_entry(train_cfg: DictConfig) -> Entry:
    data = instantiate(train_cfg.data)
    return Entry("data", "data", None, lambda n, rng: sample_mixture(data.centers, data.std, n, generator=rng)[0])


# ---- 3. evaluation, table and figure ----------------------------------------------------------------------
def evaluate(entry: Entry, centers: torch.Tensor, std: float, num_samples: int, seed: int) -> tuple[dict, torch.Tensor]:
    """Samples from `seed` (after a small warm-up draw), their mixture metrics and the sampling time per 10k."""
    entry.draw(min(num_samples, 500), torch.Generator().manual_seed(seed + 1))  # warm-up
    started = time.perf_counter()
    samples = entry.draw(num_samples, torch.Generator().manual_seed(seed)).float().cpu()
    seconds = time.perf_counter() - started
    metrics = mixture_metrics(samples, centers, std)
    row = {"model": entry.name, "family": entry.family, "nfe": entry.nfe, **metrics,
           "seconds_per_10k": seconds * 10_000 / num_samples if entry.family != "data" else None,
           "train_iterations": entry.train_iterations}
    return row, samples


def markdown_table(rows: list[dict], num_threads: int, budget_note: str = "") -> str:
    lines = ["| model | NFE | modes covered | high-quality fraction | mode KL | sampling s / 10k | train iterations |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        time_cell = "–" if r["seconds_per_10k"] is None else f"{r['seconds_per_10k']:.2f}"
        lines.append(f"| {r['model']} | {r['nfe'] or '–'} | {r['modes_covered']}/{r['num_modes']} | "
                     f"{r['high_quality_fraction']:.3f} | {r['mode_kl']:.3f} | {time_cell} | {r['train_iterations'] or '–'} |")
    lines.append(f"\nHigh quality: within 3 std of the nearest centre; covered: at least a quarter of a mode's uniform share of "
                 f"the high-quality samples; times on the CPU with {num_threads} thread(s). DDGAN training: {budget_note}.")
    return "\n".join(lines)


def write_table(rows: list[dict], output_dir: Path, num_threads: int, budget_note: str = "") -> str:
    with open(output_dir / "trilemma.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    table = markdown_table(rows, num_threads, budget_note)
    (output_dir / "trilemma.md").write_text(table + "\n")
    return table


def plot_panels(results: list[tuple[dict, torch.Tensor]], centers: torch.Tensor, std: float, path: Path, max_points: int = 5000) -> None:
    """DDGAN in the top row; the data and the Gaussian denoiser in the bottom row."""
    top = [r for r in results if r[0]["family"] == "ddgan"]
    bottom = [r for r in results if r[0]["family"] != "ddgan"]
    rows = [row for row in (top, bottom) if row]
    num_cols = max(len(row) for row in rows)
    fig, axes = plt.subplots(len(rows), num_cols, figsize=(2.6 * num_cols, 3.2 * len(rows)), dpi=120, squeeze=False)
    for ax_row, row in zip(axes, rows):
        for ax, (metrics, samples) in zip(ax_row, row):
            title = f"{metrics['model']}\n{metrics['modes_covered']}/{metrics['num_modes']} modes, {metrics['high_quality_fraction']:.0%} HQ, KL {metrics['mode_kl']:.2f}"
            plot_mixture_samples(samples[:max_points], centers, std, path, title=title, ax=ax)
            ax.set(xticks=[], yticks=[])
        for ax in ax_row[len(row):]:
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def report(cfg: DictConfig, output_dir: Path) -> list[dict]:
    """Train what is missing, evaluate every model, write the figure and the table; returns the table rows."""
    started = time.perf_counter()
    output_dir.mkdir(parents=True, exist_ok=True)
    torch.set_flush_denormal(True)  # denormals make CPU training up to 6x slower
    budget, budget_note = budget_overrides(cfg.ddgan, experiment_config(cfg.ddgan))
    train_cfg = experiment_config(cfg.ddgan, budget)
    sweep_dir = Path(cfg.ddgan.sweep_dir) if cfg.ddgan.sweep_dir else output_dir / "ddgan"
    sweep = None if cfg.ddgan.sweep_dir else launch_ddgan_sweep(cfg.ddgan, sweep_dir, budget)
    if sweep is None:
        budget_note = f"the runs of {sweep_dir}"
    try:
        torch.set_num_threads(cfg.baseline.num_threads)
        gaussian = baseline_entries(cfg.baseline, train_cfg, output_dir)
    finally:
        if sweep is not None and sweep.wait() != 0:
            raise RuntimeError(f"the DDGAN runs failed (exit status {sweep.returncode}); their logs are under {sweep_dir}")
    training_seconds = time.perf_counter() - started
    if cfg.evaluation.num_threads:
        torch.set_num_threads(cfg.evaluation.num_threads)
    else:
        torch.set_num_threads(os.cpu_count() or 1)
    data = instantiate(train_cfg.data)
    entries = [data_entry(train_cfg), *ddgan_entries(sweep_dir), *gaussian]
    results = [evaluate(e, data.centers, data.std, cfg.evaluation.num_samples, cfg.evaluation.seed) for e in entries]
    rows = [row for row, _ in results]
    table = write_table(rows, output_dir, torch.get_num_threads(), budget_note)
    plot_panels(results, data.centers, data.std, output_dir / "trilemma.png")
    total_seconds = time.perf_counter() - started
    (output_dir / "timing.json").write_text(json.dumps({"training_seconds": training_seconds, "total_seconds": total_seconds,
                                                             "ddgan_budget": budget_note}, indent=2))
    print(f"\n{table}\n\nTraining {training_seconds / 60:.1f} min, total {total_seconds / 60:.1f} min. "
          f"Figure {output_dir / 'trilemma.png'}, table {output_dir / 'trilemma.csv'}")
    return rows


@hydra.main(version_base="1.3", config_path="../conf", config_name="trilemma")
def main(cfg: DictConfig) -> None:
    log.info("trilemma config:\n" + OmegaConf.to_yaml(cfg))
    report(cfg, Path(cfg.output_dir))


if __name__ == "__main__":
    main()
