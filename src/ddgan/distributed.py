"""Data-parallel DDGAN training: Lightning's DDP processes without the DistributedDataParallel wrapper.

Why not DistributedDataParallel (Lightning's `strategy="ddp"`): DDP's reducer assumes that each forward of the
wrapped module is followed by one backward over a fixed set of parameters that require grad. One DDGAN iteration
runs inside a single wrapped forward (training_step) but calls backward twice for two optimizers, switches
requires_grad of D off and on for the G step, and on R1 iterations backpropagates through a double-backward graph
(autograd.grad with create_graph=True). Under the wrapper that needs `find_unused_parameters=True` (a walk of the
autograd graph before every backward) and depends on Lightning re-arming the reducer before each manual_backward;
a mismatch shows up as "Expected to have finished reduction" errors or hangs, and static_graph cannot be used
because the graph changes on R1 iterations. Instead every process runs the same unwrapped module, and
`DDGAN.update` averages the gradients of the network it is about to step with one flat all_reduce right after
that network's backward (the approach of NVlabs' StyleGAN3 training loop). The same all_reduce carries the
logged scalars, so logged metrics are averaged over processes at no extra cost. Trade-off: communication does
not overlap with the backward pass.
"""
import itertools
import os

import numpy as np
import torch
import torch.distributed as dist
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.strategies.launchers import _MultiProcessingLauncher, _SubprocessScriptLauncher
from torch import Tensor, nn


def world_size() -> int:
    """Number of processes in the default process group (1 without one)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def all_reduce_mean_(tensors: list[Tensor]) -> None:
    """Average `tensors` in place over all processes with one flat all_reduce (a no-op in one process)."""
    n = world_size()
    if n == 1 or not tensors:
        return
    flat = torch.cat([t.reshape(-1).float() for t in tensors])
    dist.all_reduce(flat)
    flat /= n
    for tensor, chunk in zip(tensors, flat.split([t.numel() for t in tensors])):
        tensor.copy_(chunk.view_as(tensor))


def any_process_max(value: int, device: torch.device) -> int:
    """The largest `value` over all processes (value itself in one process)."""
    if world_size() == 1:
        return value
    tensor = torch.tensor([value], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())


def broadcast_module_state_(module: nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every process."""
    if world_size() == 1:
        return
    for tensor in itertools.chain(module.parameters(), module.buffers()):
        dist.broadcast(tensor.data, src=0)


def seed_process(rank: int, iteration: int) -> None:
    """Give process `rank` > 0 its own torch RNG stream for t, noise and z, from (run seed, rank, iteration).

    Rank 0 keeps the run's stream, so a one-process run draws exactly what it drew before DDP support.
    """
    if rank == 0:
        return
    run_seed = int(os.environ.get("PL_GLOBAL_SEED", "0"))
    torch.manual_seed(int(np.random.SeedSequence([run_seed, rank, iteration]).generate_state(1)[0]))


def in_hydra_multirun() -> bool:
    """True inside a job of a Hydra multirun (`python -m src.train -m ...`)."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode
    except ImportError:
        return False
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


class GANDDPStrategy(DDPStrategy):
    """Lightning's DDP (process launch, ranks, distributed sampler, rank-0 checkpointing) without the DDP wrapper.

    The DDGAN module averages gradients itself (see the module docstring of src.ddgan.distributed for why).
    `start_method`: "popen" starts one fresh `python -m src.train ...` per extra device (Lightning's "ddp");
    "spawn" uses torch.multiprocessing (Lightning's "ddp_spawn"). Jobs of a local Hydra multirun always use spawn:
    the popen children would re-run the command line, i.e. the whole sweep. Under SLURM (or torchrun) the
    scheduler starts the processes and no launcher is used.
    """

    strategy_name = "ddp_gan"

    def configure_ddp(self) -> None:
        broadcast_module_state_(self.model)  # identical starting weights on every rank; no wrapper

    def _configure_launcher(self) -> None:
        super()._configure_launcher()
        external = self.cluster_environment is not None and self.cluster_environment.creates_processes_externally
        if isinstance(self._launcher, _SubprocessScriptLauncher) and not external and in_hydra_multirun():
            self._launcher = _MultiProcessingLauncher(self, start_method="spawn")


def is_gan_ddp_strategy(strategy) -> bool:
    """True for a GANDDPStrategy instance or a config node that instantiates one."""
    if isinstance(strategy, GANDDPStrategy):
        return True
    target = strategy.get("_target_", "") if hasattr(strategy, "get") else ""
    return target.endswith("GANDDPStrategy")

