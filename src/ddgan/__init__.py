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
    images and LMDBs) the class subfolders of data.data_dir or the classes its LMDB stores."""
    if not data.get("conditional", False):
        return 0
    if data.get("num_classes") is not None:
        return int(data.num_classes)
    if data.get("data_dir") is None:
        return 0
    from pathlib import Path

    from src.ddgan.data.images import class_folders
    from src.ddgan.data.lmdb_format import is_lmdb

    root = Path(data.data_dir)
    if root.exists() and is_lmdb(root):
        from src.ddgan.data.lmdb_dataset import inspect_lmdb

        return len(inspect_lmdb(root).classes or [])
    return len(class_folders(root))


if not OmegaConf.has_resolver("ddgan.model_classes"):  # ${ddgan.model_classes:${data}}: model.num_classes
    OmegaConf.register_new_resolver("ddgan.model_classes", _model_classes)
