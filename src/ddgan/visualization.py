"""Pictures of the sampler: the denoising chain (grid and GIF) and latent interpolation, for images and 2-D points.

Chain: one sampling run with return_chain=True gives the levels [x_T, …, x_0] and the generator's prediction
x̂_0 = G(x_{t+1}, t, z) made from each level x_{t+1}. Image models get a grid (per sample: the levels in one row,
below each level the x̂_0 predicted from it) and a GIF (one frame per level); 2-D models get a row of scatter
plots per quantity instead.

Latent interpolation: x_T and the posterior noise of every step are fixed and only z moves, along a slerp from
z_a to z_b. DDGAN draws a fresh z at each step, so by default every step t interpolates between its own two
endpoints z_a[t] and z_b[t] (`shared_z=False`): both ends of a row are then ordinary samples of the model.
`shared_z=True` uses one z at every step instead.
"""
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchvision.utils import make_grid

from src.ddgan.images import save_grid_image, to_uint8
from src.ddgan.plotting import plt  # the Agg backend
from src.ddgan.sampling import NoiseSource

GIF_MIN_WIDTH = 384  # image GIF frames are upscaled (nearest) to at least this width


def is_image_model(model) -> bool:
    """True for (C, H, W) samples, False for flat (D,) points."""
    return len(model.sample_shape) == 3


# ---- the denoising chain ----------------------------------------------------------------------------------
@torch.no_grad()
def denoising_chain(model, num_samples: int, *, seed: int, class_label: int | None = None) -> tuple[list[Tensor], list[Tensor]]:
    """Levels [x_T, …, x_0] and predictions [x̂_0 from x_T, …, x̂_0 from x_1] of num_samples EMA samples (CPU); a
    conditional model's samples are of class `class_label` (default: sample i of class i mod num_classes)."""
    rng = torch.Generator(device=model.device).manual_seed(seed)
    _, levels, predictions = model.sample(num_samples, rng=rng, return_chain=True,
                                          labels=class_labels(model, num_samples, class_label))
    return [x.float().cpu() for x in levels], [x.float().cpu() for x in predictions]


def chain_grid(levels: Sequence[Tensor], predictions: Sequence[Tensor]) -> Tensor:
    """(3, H', W') image in [-1, 1]: per sample a row of levels x_T … x_0 and, below each x_{t+1}, its x̂_0."""
    blank = torch.ones_like(levels[0][0])  # white, under x_0 (no prediction is made from it)
    tiles = []
    for i in range(levels[0].shape[0]):
        tiles += [x[i] for x in levels]
        tiles += [x[i] for x in predictions] + [blank]
    grid = make_grid(torch.stack(tiles).clamp(-1, 1), nrow=len(levels), padding=2, pad_value=1.0)
    return grid


def save_chain_grid(levels: Sequence[Tensor], predictions: Sequence[Tensor], path: Path) -> None:
    save_grid_image(chain_grid(levels, predictions), path, max(levels[0].shape[-2:]))


def save_gif(frames: Sequence[np.ndarray], path: Path, frame_ms: int = 700, last_frame_ms: int = 1800) -> None:
    """(H, W, 3) uint8 frames as a looping GIF."""
    images = [Image.fromarray(frame) for frame in frames]
    durations = [frame_ms] * (len(images) - 1) + [last_frame_ms]
    images[0].save(path, save_all=True, append_images=images[1:], duration=durations, loop=0)


def save_chain_gif(levels: Sequence[Tensor], predictions: Sequence[Tensor], path: Path) -> None:
    """One frame per level k = T … 0: the samples at level k (top row) and the x̂_0 predicted from them (bottom)."""
    frames = []
    for k, x in enumerate(levels):
        x0_pred = predictions[k] if k < len(predictions) else x  # x_0 is its own prediction
        grid = make_grid(torch.cat([x, x0_pred]).clamp(-1, 1), nrow=x.shape[0], padding=2, pad_value=1.0)
        frame = to_uint8(grid[None])[0]
        if frame.shape[-1] == 1:
            frame = frame.repeat(3, axis=-1)
        scale = max(1, math.ceil(GIF_MIN_WIDTH / frame.shape[1]))
        frames.append(frame.repeat(scale, axis=0).repeat(scale, axis=1))
    save_gif(frames, path)


def point_limits(arrays: Sequence[Tensor], centers: Tensor | None) -> float:
    """Half-width of a square view holding the centers and nearly all points."""
    radius = max(float(torch.quantile(x.abs().max(dim=1).values, 0.995)) for x in arrays)
    if centers is not None:
        radius = max(radius, float(centers.abs().max()) + 1.0)
    return 1.1 * radius


def scatter_panel(ax, points: Tensor, title: str, limit: float, centers: Tensor | None, **kwargs) -> None:
    if centers is not None:
        ax.scatter(centers[:, 0], centers[:, 1], s=12, marker="x", color="tab:red", lw=0.8, zorder=3)
    ax.scatter(points[:, 0], points[:, 1], s=kwargs.pop("s", 1), alpha=kwargs.pop("alpha", 0.3), rasterized=True, **kwargs)
    ax.set(xlim=(-limit, limit), ylim=(-limit, limit), aspect="equal", xticks=[], yticks=[])
    ax.set_title(title, fontsize=8)


def level_titles(num_timesteps: int) -> list[str]:
    return [f"$x_{{{k}}}$" for k in range(num_timesteps, -1, -1)]


def chain_points_figure(levels: Sequence[Tensor], predictions: Sequence[Tensor], centers: Tensor | None = None):
    """2-D chain: scatter of each level x_T … x_0 (top row) and of the x̂_0 predicted from it (bottom row)."""
    num_timesteps = len(predictions)
    limit = point_limits(list(levels) + list(predictions), centers)
    fig, axes = plt.subplots(2, num_timesteps + 1, figsize=(2.2 * (num_timesteps + 1), 4.6), dpi=100, squeeze=False)
    for k, (title, x) in enumerate(zip(level_titles(num_timesteps), levels)):
        scatter_panel(axes[0, k], x, title, limit, centers, color="tab:blue")
        if k < num_timesteps:
            scatter_panel(axes[1, k], predictions[k], f"$\\hat x_0$ from {title}", limit, centers, color="tab:green")
        else:
            axes[1, k].axis("off")
    fig.tight_layout()
    return fig


def figure_to_array(fig) -> np.ndarray:
    """(H, W, 3) uint8 pixels of a drawn matplotlib figure."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def save_figure(fig, path: Path) -> None:
    fig.savefig(path)
    plt.close(fig)


def save_chain_points_gif(levels: Sequence[Tensor], predictions: Sequence[Tensor], path: Path, centers: Tensor | None = None) -> None:
    """One frame per level: scatter of x_k next to the x̂_0 predicted from it."""
    num_timesteps = len(predictions)
    limit = point_limits(list(levels) + list(predictions), centers)
    frames = []
    for k, (title, x) in enumerate(zip(level_titles(num_timesteps), levels)):
        fig, axes = plt.subplots(1, 2, figsize=(6, 3.2), dpi=80)
        scatter_panel(axes[0], x, title, limit, centers, color="tab:blue")
        x0_pred = predictions[k] if k < num_timesteps else x
        scatter_panel(axes[1], x0_pred, f"$\\hat x_0$ from {title}", limit, centers, color="tab:green")
        fig.tight_layout()
        frames.append(figure_to_array(fig))
        plt.close(fig)
    save_gif(frames, path)


# ---- latent interpolation ---------------------------------------------------------------------------------
def slerp(z_a: Tensor, z_b: Tensor, alpha: Tensor) -> Tensor:
    """Spherical interpolation between latents (…, nz) at fractions alpha (S,): (…, S, nz)."""
    a, b, alpha = z_a.unsqueeze(-2), z_b.unsqueeze(-2), alpha.reshape(-1, 1).to(z_a)
    cos_theta = (z_a * z_b).sum(-1) / (z_a.norm(dim=-1) * z_b.norm(dim=-1)).clamp(min=1e-12)
    theta = torch.arccos(cos_theta.clamp(-1, 1))[..., None, None]
    sin_theta = torch.sin(theta)
    linear = (1 - alpha) * a + alpha * b  # the limit for (anti)parallel latents
    spherical = (torch.sin((1 - alpha) * theta) * a + torch.sin(alpha * theta) * b) / sin_theta.clamp(min=1e-6)
    return torch.where(sin_theta > 1e-6, spherical, linear)


def class_labels(model, num_samples: int, class_label: int | None) -> Tensor | None:
    """num_samples labels: all `class_label` (checked), else None (the model's default: sample i of class
    i mod num_classes; none for an unconditional model)."""
    if class_label is None:
        return None
    return torch.full((num_samples,), model.check_class_label(class_label), dtype=torch.long)


class ReplayedNoise(NoiseSource):
    """A random source for `sample` that hands out given tensors in order of request.

    The sampler asks, at each step t = T-1 … 0, for z (N, nz) and then the posterior noise (N, …).
    """

    def __init__(self, draws: Sequence[Tensor]):
        self.draws = list(draws)
        self.position = 0

    def randn(self, shape, device, dtype) -> Tensor:
        draw = self.draws[self.position]
        assert tuple(draw.shape) == tuple(shape), f"draw {self.position}: expected {tuple(shape)}, have {tuple(draw.shape)}"
        self.position += 1
        return draw.to(device=device, dtype=dtype)


@torch.no_grad()
def latent_interpolation(model, num_rows: int, num_steps: int, *, seed: int, shared_z: bool = False,
                         class_label: int | None = None) -> Tensor:
    """(num_rows, num_steps, *sample_shape) samples: per row one x_T and posterior noise, z slerped from z_a to z_b;
    a conditional model's rows are of class `class_label` (default: row r of class r mod num_classes)."""
    device, nz, num_timesteps = model.device, model.hparams.nz, model.schedule.num_timesteps
    rng = torch.Generator(device=device).manual_seed(seed)
    shape = tuple(model.network_shape)  # the sampler's draws are in the networks' space
    x_T = torch.randn((num_rows, *shape), device=device, generator=rng)
    endpoints = torch.randn((2, 1 if shared_z else num_timesteps, num_rows, nz), device=device, generator=rng)
    alpha = torch.linspace(0, 1, num_steps, device=device)
    draws = []
    for step in range(num_timesteps):  # the sampler's order: t = T-1 … 0, z then noise
        z_a, z_b = endpoints[:, 0 if shared_z else step]
        draws.append(slerp(z_a, z_b, alpha).reshape(num_rows * num_steps, nz))
        noise = torch.randn((num_rows, *shape), device=device, generator=rng)
        draws.append(noise.repeat_interleave(num_steps, dim=0))
    labels = class_labels(model, num_rows, class_label)
    x = model.sample(num_rows * num_steps, x_start=x_T.repeat_interleave(num_steps, dim=0), rng=ReplayedNoise(draws),
                     labels=labels.repeat_interleave(num_steps) if labels is not None else None)
    return x.reshape(num_rows, num_steps, *model.sample_shape).float().cpu()


def save_interpolation_grid(samples: Tensor, path: Path) -> None:
    """(rows, steps, C, H, W) as a grid, one interpolation per row."""
    grid = make_grid(samples.flatten(0, 1).clamp(-1, 1), nrow=samples.shape[1], padding=2, pad_value=1.0)
    save_grid_image(grid, path, max(samples.shape[-2:]))


def interpolation_points_figure(samples: Tensor, centers: Tensor | None = None):
    """(rows, steps, 2): each row's path through the plane as z moves, coloured from z_a (dark) to z_b (yellow)."""
    rows, steps = samples.shape[:2]
    limit = point_limits([samples.flatten(0, 1)], centers)
    fig, ax = plt.subplots(figsize=(4.6, 4.6), dpi=100)
    for path in samples:
        ax.plot(path[:, 0], path[:, 1], color="0.6", lw=0.5, zorder=1)
    colours = torch.linspace(0, 1, steps).repeat(rows)
    scatter_panel(ax, samples.flatten(0, 1), f"latent interpolation ({rows} paths, {steps} steps)", limit, centers,
                  s=6, alpha=0.9, c=colours, cmap="viridis", zorder=2)
    fig.tight_layout()
    return fig


# ---- everything for one model -----------------------------------------------------------------------------
def visualize(
    model,
    output_dir: Path,
    *,
    prefix: str = "",  # file name prefix, e.g. "epoch0005_"
    num_samples: int | None = None,  # chain samples (default: 8 images, 2000 points)
    num_rows: int = 4,  # interpolation rows (independent x_T)
    num_steps: int = 8,  # interpolation points per row, z_a … z_b
    seed: int = 1234,  # fixes x_T, z and the noise: same pictures for the same weights
    shared_z: bool = False,  # interpolation: one z for every step instead of per-step endpoints
    centers: Tensor | None = None,  # 2-D models: mode centers in the networks' units, drawn as red crosses
    gif: bool = True,  # also write the chain as an animated GIF
    class_label: int | None = None,  # class-conditional models: every sample of this class (None: row i of class i mod K)
) -> dict[str, Path]:
    """Write {prefix}chain.png, {prefix}chain.gif and {prefix}interpolation.png; returns them by name."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    images = is_image_model(model)
    num_samples = num_samples or (8 if images else 2000)
    files = {"chain": output_dir / f"{prefix}chain.png", "interpolation": output_dir / f"{prefix}interpolation.png"}
    if gif:
        files["chain_gif"] = output_dir / f"{prefix}chain.gif"
    levels, predictions = denoising_chain(model, num_samples, seed=seed, class_label=class_label)
    interpolation = latent_interpolation(model, num_rows if images else max(num_rows, 64), num_steps, seed=seed,
                                         shared_z=shared_z, class_label=class_label)
    if images:
        save_chain_grid(levels, predictions, files["chain"])
        save_interpolation_grid(interpolation, files["interpolation"])
        if gif:
            save_chain_gif(levels, predictions, files["chain_gif"])
    else:
        save_figure(chain_points_figure(levels, predictions, centers), files["chain"])
        save_figure(interpolation_points_figure(interpolation, centers), files["interpolation"])
        if gif:
            save_chain_points_gif(levels, predictions, files["chain_gif"], centers)
    return files


def mixture_centers(config: dict) -> Tensor | None:
    """Mode centers in the networks' units (centers × scale) from a run config whose data is a 2-D mixture, else None."""
    from src.ddgan.mixture import Mixture

    mixture = Mixture.from_config(config.get("data") or {})
    return mixture.network_centers() if mixture is not None else None
