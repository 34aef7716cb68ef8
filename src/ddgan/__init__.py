"""Denoising Diffusion GANs (Xiao, Kreis, Vahdat, ICLR 2022) in PyTorch Lightning."""
import math

from omegaconf import OmegaConf

if not OmegaConf.has_resolver("ddgan.mul"):  # configs derive values from others: ${ddgan.mul:a,b} is a × b
    OmegaConf.register_new_resolver("ddgan.mul", lambda *factors: math.prod(factors))


def _network_shape(shape, space: str) -> list[int]:
    from src.ddgan.wavelets import network_shape  # torch only when a config resolves it

    return network_shape(shape, space)


if not OmegaConf.has_resolver("ddgan.network_shape"):  # ${ddgan.network_shape:shape,space}: what the networks see
    OmegaConf.register_new_resolver("ddgan.network_shape", _network_shape)
if not OmegaConf.has_resolver("ddgan.item"):  # ${ddgan.item:list,i}: list[i] (a resolver's list cannot be indexed)
    OmegaConf.register_new_resolver("ddgan.item", lambda sequence, index: sequence[index])
