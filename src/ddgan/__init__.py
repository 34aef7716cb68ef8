"""Denoising Diffusion GANs (Xiao, Kreis, Vahdat, ICLR 2022) in PyTorch Lightning."""
import math

from omegaconf import OmegaConf

if not OmegaConf.has_resolver("ddgan.mul"):  # configs derive values from others: ${ddgan.mul:a,b} is a × b
    OmegaConf.register_new_resolver("ddgan.mul", lambda *factors: math.prod(factors))
