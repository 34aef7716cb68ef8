"""Figures: 2-D samples over mixture centers, evaluation metrics against iteration."""
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch


def plot_mixture_samples(samples: torch.Tensor, centers: torch.Tensor, std: float, path: Path, title: str = "", ax=None) -> None:
    """Scatter of 2-D samples with each center's high-quality disc (3 std) drawn in red."""
    own_figure = ax is None
    if own_figure:
        fig, ax = plt.subplots(figsize=(5, 5), dpi=120)
    ax.scatter(samples[:, 0], samples[:, 1], s=1, alpha=0.3, color="tab:blue", rasterized=True)
    for cx, cy in centers.tolist():
        ax.add_patch(plt.Circle((cx, cy), 3 * std, fill=False, color="tab:red", lw=0.8))
    lo, hi = float(centers.min()) - 1.5, float(centers.max()) + 1.5
    ax.set(xlim=(lo, hi), ylim=(lo, hi), aspect="equal", title=title)
    ax.title.set_fontsize(8)
    if own_figure:
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)


CURVES = {"modes_covered": "modes covered", "high_quality_fraction": "high-quality fraction", "mode_kl": "mode KL",
          "fid": "FID", "is": "Inception Score", "precision": "precision", "recall": "recall"}


def plot_metric_curves(history: list[dict], path: Path) -> bool:
    """One small panel per metric of CURVES found in `history` (records with `iteration`), against iteration;
    False (nothing written) when there is none."""
    names = [name for name in CURVES if any(name in record for record in history)]
    if not names:
        return False
    cols = min(len(names), 4)
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2.4 * rows), dpi=100, squeeze=False)
    for ax, name in zip(axes.flat, names):
        sizes = sorted({record.get("num_samples") for record in history if name in record}, key=lambda n: n or 0)
        for size in sizes:  # evaluations on different sample counts are not comparable: one line each
            points = [(r["iteration"], r[name]) for r in history if name in r and r.get("num_samples") == size]
            ax.plot(*zip(*points), marker="o", ms=3, lw=1, label=f"{size} samples" if size else None)
        if len(sizes) > 1:
            ax.legend(fontsize=7)
        title = CURVES[name] + (f" (of {history[-1]['num_modes']})" if name == "modes_covered" and "num_modes" in history[-1] else "")
        ax.set(title=title, xlabel="iteration")
        ax.title.set_fontsize(9)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True
