"""The DDGAN sampler: T generator-parameterised posterior steps from noise to data."""
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from src.ddgan.diffusion import VPSchedule
from src.ddgan.precision import autocast

Generator = Callable[[Tensor, Tensor, Tensor], Tensor]  # G(x_tp1, t, z) -> x0_pred


class NoiseSource:
    """What the sampler draws z and the posterior noise from, besides a torch.Generator: randn(shape, device, dtype)."""

    def randn(self, shape, device, dtype) -> Tensor:
        raise NotImplementedError


class PerSampleGenerator(NoiseSource):
    """One torch.Generator per sample, seeded by (seed, sample index): sample i is the same whatever
    the batch it is drawn in."""

    def __init__(self, seed: int, indices: list[int], device: torch.device | str = "cpu"):
        self.generators = [torch.Generator(device=device).manual_seed(seed * 1_000_003 + i) for i in indices]

    def randn(self, shape, device, dtype) -> Tensor:
        assert shape[0] == len(self.generators), "one generator per sample"
        return torch.stack([torch.randn(shape[1:], device=device, dtype=dtype, generator=g) for g in self.generators])


RandomSource = torch.Generator | NoiseSource | None


def randn(shape, like: Tensor, rng: RandomSource) -> Tensor:
    """Standard normal noise of `shape` on like's device, from `rng`."""
    if isinstance(rng, NoiseSource):
        return rng.randn(shape, like.device, like.dtype)
    return torch.randn(shape, device=like.device, dtype=like.dtype, generator=rng)


@torch.no_grad()
def sample(
    generator: Generator,
    schedule: VPSchedule,
    x_T: Tensor,
    *,
    nz: int,
    start_step: int | None = None,
    rng: RandomSource = None,
    return_chain: bool = False,
    labels: Tensor | None = None,
) -> Tensor | tuple[Tensor, list[Tensor], list[Tensor]]:
    """DDGAN sampling: x_{t} ~ q(x_t | x_{t+1}, x_0 = G(x_{t+1}, t, z)), t = start_step-1 … 0, fresh z each step.

    Args:
        x_T: (N, …) the starting level; N(0, I) for unconditional sampling (start_step = T),
            or a diffused input for editing from an intermediate level start_step.
        rng: draws z and the posterior noise (on x_T's device), for reproducible samples.
        return_chain: also return the levels [x_start, …, x_0] and the x_0 predictions of each step.
        labels: (N,) long class labels for a class-conditional G(x, t, z, y) (None: an unconditional G).
    """
    conditioning = {} if labels is None else {"y": labels}
    x = x_T
    start_step = schedule.num_timesteps if start_step is None else start_step
    levels, predictions = [x], []
    for t in reversed(range(start_step)):  # x is at level t + 1
        t_batch = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        z = randn((x.shape[0], nz), x, rng)
        x0_pred = generator(x, t_batch, z, **conditioning).to(x.dtype)  # under autocast G gives bf16: the posterior stays fp32
        x = schedule.sample_posterior(x0_pred, x, t_batch, noise=randn(x.shape, x, rng))  # level t
        levels.append(x)
        predictions.append(x0_pred)
    return (x, levels, predictions) if return_chain else x


def cuda_graphed(fn: Callable[[], Tensor], warmup: int = 3) -> Callable[[], Tensor]:
    """fn() captured once in a CUDA graph: each call replays it and returns its output tensor, overwritten in place.

    For fixed-shape GPU work whose randomness comes from the default CUDA generator, e.g. the T-step sampler
    `lambda: model.sample(n)` (per-sample generators cannot be captured). The warm-up calls run on a side stream,
    as capture requires, and also let torch.compile build its kernels before capture.
    """
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        output = fn()

    def replay() -> Tensor:
        graph.replay()
        return output

    return replay


def index_labels(indices: Sequence[int], num_classes: int) -> Tensor | None:
    """The classes of sample indices `indices` when none are asked for: sample i has class i mod num_classes (every
    class equally often); None for an unconditional model (num_classes = 0)."""
    return torch.as_tensor(list(indices), dtype=torch.long) % num_classes if num_classes else None


def draw_samples(model, indices: Sequence[int], *, seed: int, use_ema: bool = True, precision: str = "32",
                 labels: Tensor | None = None) -> Tensor:
    """Samples of a DDGAN for the sample indices `indices`, sample i depending only on (seed, i) (not on the batch it
    is drawn in); labels: their classes (conditional models; default index_labels); precision="bf16": the generator
    runs under bf16 autocast."""
    if labels is None:
        labels = index_labels(indices, getattr(model, "num_classes", 0))
    with autocast(model.device, precision):
        return model.sample(len(indices), rng=PerSampleGenerator(seed, list(indices), model.device), use_ema=use_ema,
                            labels=labels)
