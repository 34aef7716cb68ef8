"""A run's evaluation files: metrics.json (the latest numbers, merged) and metrics_history.jsonl (one line per
evaluation), written by the evaluation callbacks; metric_curves.png is drawn from the history."""
import json
from pathlib import Path

from src.ddgan.files import atomic_write_text
from src.ddgan.plotting import plot_metric_curves

HISTORY_FILE = "metrics_history.jsonl"
CURVES_FILE = "metric_curves.png"


def update_metrics_file(path: Path, metrics: dict) -> None:
    """Merge `metrics` into the JSON file at `path`, written atomically."""
    existing = json.loads(path.read_text()) if path.exists() else {}
    atomic_write_text(path, json.dumps(existing | metrics, indent=2))


def record_evaluation(output_dir: Path, record: dict) -> None:
    """Merge `record` (metrics, epoch, iteration, ...) into <output_dir>/metrics.json and append it to the history."""
    output_dir.mkdir(parents=True, exist_ok=True)
    update_metrics_file(output_dir / "metrics.json", record)
    with open(output_dir / HISTORY_FILE, "a") as history:
        history.write(json.dumps(record) + "\n")


def read_history(output_dir: Path) -> list[dict]:
    """The run's evaluations in iteration order, the latest one per (iteration, sample count) (a resumed run may
    repeat one)."""
    path = Path(output_dir) / HISTORY_FILE
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    latest = {(record.get("iteration"), record.get("num_samples")): record for record in records}
    return sorted(latest.values(), key=lambda r: r.get("iteration") or 0)


def write_metric_curves(output_dir: Path) -> Path | None:
    """<output_dir>/metric_curves.png from the history (None when nothing was evaluated)."""
    path = Path(output_dir) / CURVES_FILE
    return path if plot_metric_curves(read_history(output_dir), path) else None
