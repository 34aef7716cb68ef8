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


def _model_classes(data) -> int:
    """A data config's classes for the model: 0 unless data.conditional; then data.num_classes, or (null, folders of
    images) the number of class subfolders of data.data_dir."""
    if not data.get("conditional", False):
        return 0
    if data.get("num_classes") is not None:
        return int(data.num_classes)
    from pathlib import Path

    from src.ddgan.data.image_folder import class_folders

    return len(class_folders(Path(data.data_dir))) if data.get("data_dir") is not None else 0


if not OmegaConf.has_resolver("ddgan.model_classes"):  # ${ddgan.model_classes:${data}}: model.num_classes
    OmegaConf.register_new_resolver("ddgan.model_classes", _model_classes)
