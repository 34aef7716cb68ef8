"""What the model-comparison reports share: src.trilemma (25-Gaussians) and src.digits_report (stacked digits).

A report trains DDGAN for several T as one Hydra multirun of src.train in the background while the
Gaussian-denoiser baseline trains in this process, then draws the same number of samples from one seed from
every model (an Entry), timed, and writes <name>.png, <name>.csv, <name>.md (printed) and timing.json.
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
from typing import TypeVar

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from src.ddgan.baselines.gaussian_denoiser import fine_schedule, sample_gaussian, strided_levels, train_denoiser
from src.ddgan.checkpoint import load_ddgan, read_checkpoint
from src.ddgan.cli import EXIT_BAD_INPUT
from src.ddgan.mixture import Mixture, to_data_units
from src.ddgan.plotting import plt

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


@dataclass
class Entry:
    """One model of the report: how to draw n samples (in the data's units) from a torch.Generator."""

    name: str
    family: str  # data | ddgan | gaussian
    nfe: int | None  # network evaluations per sample
    draw: Callable[[int, torch.Generator], torch.Tensor]
    train_iterations: int | None = None


class RunsFailed(RuntimeError):
    """The DDGAN multirun exited with an error."""


def run_report(report: Callable[[DictConfig, Path], list[dict]], cfg: DictConfig) -> None:
    """The body of a report command: log the config, run report(cfg, output_dir); bad input or failed runs end in one
    line (exit status 2)."""
    log.info(f"{cfg.task_name} config:\n" + OmegaConf.to_yaml(cfg))
    try:
        report(cfg, Path(cfg.output_dir))
    except (FileNotFoundError, ValueError, RunsFailed) as error:
        log.error(str(error))
        sys.exit(EXIT_BAD_INPUT)


# ---- the DDGAN runs: one Hydra multirun of src.train --------------------------------------------------------
def joblib_available() -> bool:
    try:
        import hydra_plugins.hydra_joblib_launcher  # noqa: F401
    except ImportError:
        return False
    return True


def experiment_config(ddgan: DictConfig, overrides: list[str] = ()) -> DictConfig:
    """The DDGAN runs' training config as src.train composes it, without the T override (the baseline's data and
    network come from it). Needs an initialised Hydra: inside main, or within initialize_config_dir."""
    return hydra.compose(config_name="train", overrides=[f"experiment={ddgan.experiment}", *ddgan.overrides, *overrides])


def iterations_per_epoch(data: DictConfig) -> int:
    """Iterations of one epoch on one device: data.iterations_per_epoch (streamed data), else the drop_last
    batches of data.num_images."""
    if data.get("iterations_per_epoch"):
        return data.iterations_per_epoch
    if data.get("num_images"):
        return data.num_images // data.batch_size_per_device
    raise ValueError(f"data {data.get('_target_')} sets neither iterations_per_epoch nor num_images: give ddgan.max_epochs "
                     "instead of ddgan.max_iterations")


def iteration_budget(train_cfg: DictConfig) -> DictConfig | None:
    """The runs' IterationBudget callback config, if they have one."""
    budget = OmegaConf.select(train_cfg, "callbacks.iteration_budget")
    return budget if budget is not None and "_target_" in budget else None


def length_settings(train_cfg: DictConfig) -> dict[str, int]:
    """The settings that end a src.train run: trainer.max_epochs, and the iteration budget and max_steps where set."""
    settings = {"trainer.max_epochs": train_cfg.trainer.max_epochs}
    if (budget := iteration_budget(train_cfg)) is not None and budget.max_iterations:
        settings["callbacks.iteration_budget.max_iterations"] = budget.max_iterations
    if (train_cfg.trainer.get("max_steps") or -1) > 0:
        settings["trainer.max_steps"] = train_cfg.trainer.max_steps
    return settings


def run_iterations(train_cfg: DictConfig) -> int | None:
    """Iterations a src.train config runs: the least of its iteration budget, max_epochs epochs and max_steps / 2
    (two optimizer steps per iteration); None when nothing ends it."""
    settings = length_settings(train_cfg)
    epochs = settings["trainer.max_epochs"]
    counts = [settings.get("callbacks.iteration_budget.max_iterations"), settings.get("trainer.max_steps", 0) // 2,
              epochs * iterations_per_epoch(train_cfg.data) if epochs and epochs > 0 else None]
    return min((n for n in counts if n), default=None)


def budget_overrides(ddgan: DictConfig, train_cfg: DictConfig) -> tuple[list[str], str]:
    """The time-budget overrides of the runs and a note: ddgan.max_epochs, else the experiment cut to
    ddgan.max_iterations (its iteration budget lowered, or else max_epochs rounded up and, when the budget ends
    inside an epoch, trainer.max_steps)."""
    settings = " ".join(f"{key}={value}" for key, value in length_settings(train_cfg).items())
    if ddgan.max_epochs:
        return [f"trainer.max_epochs={ddgan.max_epochs}"], f"trainer.max_epochs={ddgan.max_epochs} (set; experiment: {settings})"
    iterations, budget = run_iterations(train_cfg), ddgan.max_iterations
    if iterations is None and not budget:
        raise ValueError(f"the runs of experiment={ddgan.experiment} stop at no iteration count ({settings}): set "
                         "ddgan.max_iterations")
    if not budget or (iterations is not None and iterations <= budget):
        return [], f"the experiment's {iterations} iterations ({settings})"
    if iteration_budget(train_cfg) is not None:
        overrides = [f"callbacks.iteration_budget.max_iterations={budget}"]
    else:
        per_epoch = iterations_per_epoch(train_cfg.data)
        overrides = [f"trainer.max_epochs={-(-budget // per_epoch)}"] + ([f"trainer.max_steps={2 * budget}"] if budget % per_epoch else [])
    return overrides, f"{' '.join(overrides)} (experiment: {settings}, cut to the {budget}-iteration budget)"


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


def sweep_checkpoints(sweep_dir: Path) -> list[Path]:
    """The last.ckpt of every finished job of a multirun directory (FileNotFoundError when there is none)."""
    checkpoints = sorted(sweep_dir.glob("*/checkpoints/last.ckpt"))
    if not checkpoints:
        raise FileNotFoundError(f"no DDGAN checkpoints under {sweep_dir}/*/checkpoints/last.ckpt")
    return checkpoints


def ddgan_entries(sweep_dir: Path) -> list[Entry]:
    """One entry per finished job of the sweep (its last.ckpt, EMA generator), in order of T."""
    entries = []
    for ckpt in sweep_checkpoints(sweep_dir):
        model = load_ddgan(ckpt)
        mixture = Mixture.from_config(model.hparams["config"]["data"])
        num_timesteps = model.schedule.num_timesteps

        def draw(n: int, rng: torch.Generator, model=model, mixture=mixture) -> torch.Tensor:
            return to_data_units(model.sample(n, rng=rng), mixture)

        entries.append(Entry(f"DDGAN T={num_timesteps}", "ddgan", num_timesteps, draw, model.iteration))
    return sorted(entries, key=lambda e: e.nfe)


@dataclass
class Training:
    train_cfg: DictConfig  # the DDGAN runs' config, without the T override
    sweep_dir: Path  # their multirun directory
    budget_note: str  # how long they trained
    started: float  # perf_counter at the start of the report
    seconds: float  # wall time of training (both sides)


def train_models(cfg: DictConfig, output_dir: Path, train_baseline: Callable[[DictConfig], T]) -> tuple[Training, T]:
    """Launch the DDGAN multirun (unless cfg.ddgan.sweep_dir names finished runs), meanwhile train_baseline(train_cfg)
    on cfg.baseline.num_threads threads; wait for both, then set cfg.evaluation.num_threads (null: all cores).
    Bad sample steps and a sweep_dir without runs fail first."""
    started = time.perf_counter()
    for num_steps in cfg.baseline.sample_steps:
        strided_levels(cfg.baseline.num_levels, num_steps)
    if cfg.ddgan.sweep_dir:
        sweep_checkpoints(Path(cfg.ddgan.sweep_dir))
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
        baseline = train_baseline(train_cfg)
    finally:
        if sweep is not None and sweep.wait() != 0:
            raise RunsFailed(f"the DDGAN runs failed (exit status {sweep.returncode}); their logs are under {sweep_dir}")
    torch.set_num_threads(cfg.evaluation.num_threads or os.cpu_count() or 1)
    return Training(train_cfg, sweep_dir, budget_note, started, time.perf_counter() - started), baseline


# ---- the Gaussian-denoiser baseline -------------------------------------------------------------------------
def gaussian_entries(baseline: DictConfig, train_cfg: DictConfig, output_dir: Path, *, build_model: Callable[[], nn.Module],
                     settings: dict, data: Callable[[int, torch.Generator], torch.Tensor], iterations: int,
                     mixture: Mixture | None = None) -> list[Entry]:
    """The ε-model build_model() (initial weights from baseline.seed) on baseline.num_levels levels of the runs' VP
    schedule: loaded from baseline.ckpt_path, or trained on data(n, rng) (mapped to the networks' units of `mixture`,
    if given; samples are mapped back) at the runs' batch size and saved to <output_dir>/gaussian_denoiser/model.pt;
    one entry per number of sampling steps in baseline.sample_steps."""
    diffusion = train_cfg.diffusion
    schedule = fine_schedule(baseline.num_levels, beta_min=diffusion.beta_min, beta_max=diffusion.beta_max, eps=diffusion.eps)
    torch.manual_seed(baseline.seed)  # the initial weights
    model = build_model()
    if baseline.ckpt_path:
        state = read_checkpoint(baseline.ckpt_path, what="baseline.ckpt_path")
        model.load_state_dict(state["ema"])
        iterations = state["iterations"]
    else:
        started = time.perf_counter()
        points = (lambda n, rng: mixture.to_network(data(n, rng))) if mixture is not None else data
        model = train_denoiser(model, schedule, points, iterations=iterations,
                               batch_size=train_cfg.data.batch_size_per_device, seed=baseline.seed, lr=baseline.lr,
                               lr_min=baseline.lr_min, ema_decay=baseline.ema_decay, log_every=max(iterations // 10, 1))
        log.info(f"Gaussian denoiser: {iterations} iterations in {time.perf_counter() - started:.0f} s")
        (output_dir / "gaussian_denoiser").mkdir(parents=True, exist_ok=True)
        torch.save({"ema": model.state_dict(), "iterations": iterations, "settings": settings,
                    "num_levels": baseline.num_levels}, output_dir / "gaussian_denoiser" / "model.pt")
    model.eval()
    sample_shape = tuple(train_cfg.model.sample_shape)

    def make_draw(num_steps: int):
        def draw(n: int, rng: torch.Generator) -> torch.Tensor:
            samples = sample_gaussian(model, schedule, torch.randn(n, *sample_shape, generator=rng), num_steps, rng)
            return to_data_units(samples, mixture)
        return draw

    return [Entry(f"Gaussian S={s}", "gaussian", s, make_draw(s), iterations) for s in baseline.sample_steps]


# ---- sampling, tables, figure -------------------------------------------------------------------------------
def timed_draw(entry: Entry, num_samples: int, seed: int, batch_size: int | None = None,
               warmup: int = 500) -> tuple[torch.Tensor, float | None]:
    """num_samples samples from one generator seeded by `seed`, batch_size at a time (default: all at once), after a
    small warm-up draw from seed + 1; and the sampling seconds per 10k samples (None for the data)."""
    batch_size = batch_size or num_samples
    entry.draw(min(num_samples, batch_size, warmup), torch.Generator().manual_seed(seed + 1))
    rng = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    samples = torch.cat([entry.draw(min(batch_size, num_samples - start), rng).float().cpu()
                         for start in range(0, num_samples, batch_size)])
    seconds = time.perf_counter() - started
    return samples, (None if entry.family == "data" else seconds * 10_000 / num_samples)


def entry_row(entry: Entry, metrics: dict, seconds_per_10k: float | None) -> dict:
    return {"model": entry.name, "family": entry.family, "nfe": entry.nfe, **metrics, "seconds_per_10k": seconds_per_10k,
            "train_iterations": entry.train_iterations}


def markdown_table(rows: list[dict], metric_columns: dict[str, Callable[[dict], str]], note: str) -> str:
    """| model | NFE | <metric_columns: header -> cell of a row> | sampling s / 10k | train iterations |, then the note."""
    headers = ["model", "NFE", *metric_columns, "sampling s / 10k", "train iterations"]
    lines = ["| " + " | ".join(headers) + " |", "|---|" + "---:|" * (len(headers) - 1)]
    for r in rows:
        time_cell = "–" if r["seconds_per_10k"] is None else f"{r['seconds_per_10k']:.2f}"
        cells = [r["model"], str(r["nfe"] or "–"), *(cell(r) for cell in metric_columns.values()), time_cell,
                 str(r["train_iterations"] or "–")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join([*lines, "", note])


def plot_panels(results: list[tuple[dict, torch.Tensor]], draw_panel: Callable, path: Path,
                panel_size: tuple[float, float] = (2.6, 3.2), dpi: int = 120) -> None:
    """A panel per model, draw_panel(ax, row, samples): DDGAN in the top row, the data and the baseline below."""
    top = [r for r in results if r[0]["family"] == "ddgan"]
    bottom = [r for r in results if r[0]["family"] != "ddgan"]
    rows = [row for row in (top, bottom) if row]
    num_cols = max(len(row) for row in rows)
    fig, axes = plt.subplots(len(rows), num_cols, figsize=(panel_size[0] * num_cols, panel_size[1] * len(rows)), dpi=dpi,
                             squeeze=False)
    for ax_row, row in zip(axes, rows):
        for ax, (metrics, samples) in zip(ax_row, row):
            draw_panel(ax, metrics, samples)
        for ax in ax_row[len(row):]:
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(results: list[tuple[dict, torch.Tensor]], table: str, draw_panel: Callable, output_dir: Path, name: str,
                 training: Training, **figure) -> list[dict]:
    """<name>.png (plot_panels with draw_panel and the figure options), <name>.csv, <name>.md and timing.json; prints
    the table and where the files are. Returns the table rows."""
    rows = [row for row, _ in results]
    plot_panels(results, draw_panel, output_dir / f"{name}.png", **figure)
    with open(output_dir / f"{name}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (output_dir / f"{name}.md").write_text(table + "\n")
    total_seconds = time.perf_counter() - training.started
    (output_dir / "timing.json").write_text(json.dumps({"training_seconds": training.seconds, "total_seconds": total_seconds,
                                                        "ddgan_budget": training.budget_note}, indent=2))
    print(f"\n{table}\n\nTraining {training.seconds / 60:.1f} min, total {total_seconds / 60:.1f} min. "
          f"Figure {output_dir / f'{name}.png'}, table {output_dir / f'{name}.csv'}")
    return rows
