"""Denoising Diffusion GANs (Xiao, Kreis, Vahdat, ICLR 2022) in PyTorch Lightning."""
