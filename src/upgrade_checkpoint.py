"""Re-store a checkpoint's data objects as plain data: python -m src.upgrade_checkpoint ckpt_path=OLD.ckpt [output=NEW.ckpt].

Every other command opens checkpoints with weights_only=True and refuses pickled objects. A checkpoint written
before that rule, or by code that stored data objects (OmegaConf containers, Lightning's AttributeDict, paths,
numpy arrays and scalars, argparse namespaces), is opened here with weights_only=True plus exactly those data
classes allowed (DATA_TYPES): still no function or other class is unpickled, so opening it runs no code. Those
objects are then stored again as tensors and plain containers. Bad input: one line, exit status 2.
"""
import argparse
import collections
import enum
import pathlib
import typing
from pathlib import Path, PurePath
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from src.ddgan.checkpoint import CheckpointError, check_targets, read_checkpoint, save_checkpoint_file
from src.ddgan.cli import fail


def data_types() -> tuple:
    """The classes (and numpy's array / scalar reconstruction functions) an old checkpoint's data may be built from."""
    from lightning.fabric.utilities.data import AttributeDict
    from omegaconf import base, dictconfig, listconfig, nodes

    numpy_core = getattr(np, "_core", None) or np.core  # numpy 2 moved it
    numpy_dtypes = tuple(getattr(np.dtypes, name) for name in dir(np.dtypes) if name.endswith("DType"))
    return (dictconfig.DictConfig, listconfig.ListConfig, base.ContainerMetadata, base.Metadata, nodes.AnyNode,
            nodes.StringNode, nodes.IntegerNode, nodes.FloatNode, nodes.BooleanNode, typing.Any, dict, list, set, int,
            collections.defaultdict, collections.OrderedDict, pathlib.PosixPath, pathlib.WindowsPath,
            argparse.Namespace, AttributeDict, np.ndarray, np.dtype, numpy_core.multiarray._reconstruct,
            numpy_core.multiarray.scalar, *numpy_dtypes)


PLAIN = (torch.Tensor, bool, int, float, complex, str, bytes, type(None), torch.dtype, torch.device)


def to_plain(obj: Any, where: str = "checkpoint") -> Any:
    """`obj` with every container and value turned into what torch.load(weights_only=True) reads back."""
    if isinstance(obj, DictConfig | ListConfig):
        return to_plain(OmegaConf.to_container(obj, resolve=True), where)
    if isinstance(obj, PLAIN):
        return obj
    if isinstance(obj, dict):
        return {to_plain(key, where): to_plain(value, f"{where}.{key}") for key, value in obj.items()}
    if isinstance(obj, list | tuple | set):
        return type(obj)(to_plain(value, f"{where}[{index}]") for index, value in enumerate(obj))
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, argparse.Namespace):
        return to_plain(vars(obj), where)
    if isinstance(obj, enum.Enum):
        return to_plain(obj.value, where)
    raise CheckpointError(f"{where} holds a {type(obj).__module__}.{type(obj).__qualname__}, which has no plain-data "
                          "form; remove it from the checkpoint first.")


def upgrade(ckpt_path: Path, output: Path) -> Path:
    """Write `output`: checkpoint `ckpt_path` with its data objects as tensors and plain containers, checked to load safely."""
    content = read_checkpoint(ckpt_path, data_types=data_types())
    save_checkpoint_file(to_plain(content), output, fix="Free space there or choose another output=")
    upgraded = read_checkpoint(output, what="output")
    config = upgraded.get("hyper_parameters", {}).get("config") if isinstance(upgraded, dict) else None
    if isinstance(config, dict) and isinstance(config.get("model"), dict):
        check_targets(config["model"], output)  # ddgan's commands would refuse other networks anyway
    return output


@hydra.main(version_base="1.3", config_path="../conf", config_name="upgrade_checkpoint")
def main(cfg: DictConfig) -> None:
    ckpt_path = Path(cfg.ckpt_path)
    output = Path(cfg.output) if cfg.output else ckpt_path.with_name(ckpt_path.stem + ".safe.ckpt")
    try:
        upgrade(ckpt_path, output)
    except CheckpointError as error:
        fail(str(error))
    print(f"{ckpt_path} -> {output} (tensors and plain containers only; every ddgan command opens it)")


if __name__ == "__main__":
    main()
