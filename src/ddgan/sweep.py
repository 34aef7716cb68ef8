"""A Hydra callback that gathers every job's metrics.json of a multirun into one summary table."""
import csv
import json
import logging
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def summarize_sweep(sweep_dir: Path) -> list[dict]:
    """One row per job directory holding a metrics.json: the overrides that vary, then the metrics."""
    jobs = []
    for metrics_file in sorted(sweep_dir.glob("*/metrics.json"), key=lambda f: int(f.parent.name) if f.parent.name.isdigit() else f.parent.name):
        overrides_file = metrics_file.parent / ".hydra" / "overrides.yaml"
        overrides = [str(o) for o in OmegaConf.load(overrides_file)] if overrides_file.exists() else []
        jobs.append((metrics_file.parent.name, overrides, json.loads(metrics_file.read_text())))
    shared = set.intersection(*(set(o) for _, o, _ in jobs)) if len(jobs) > 1 else set()
    return [{"job": name, "overrides": " ".join(o for o in overrides if o not in shared)} | metrics for name, overrides, metrics in jobs]


def format_table(rows: list[dict]) -> str:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    cells = [[f"{row.get(c, ''):.4g}" if isinstance(row.get(c), float) else str(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


class SweepSummary(Callback):
    """At the end of a multirun, write <sweep_dir>/summary.csv and print the table."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = summarize_sweep(sweep_dir)
        if not rows:
            log.warning(f"No metrics.json under {sweep_dir}: no summary written.")
            return
        with open(sweep_dir / "summary.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
            writer.writeheader()
            writer.writerows(rows)
        print(f"\nSweep summary ({sweep_dir / 'summary.csv'}):\n{format_table(rows)}\n")
