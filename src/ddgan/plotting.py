"""Figures: 2-D samples over mixture centers."""
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
