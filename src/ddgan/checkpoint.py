"""Open checkpoint files safely: a file that comes in is data, never code.

- read_checkpoint: torch.load with weights_only=True (tensors and plain containers only). A pickled object of any
  other type is refused before it is built, as is a truncated file or one that is not a torch file; both raise
  CheckpointError, one line naming the file and what was refused.
- build_model: a DDGAN from a checkpoint's stored run config, instantiating only ALLOWED_TARGETS (our own classes).
- load_ddgan: both, then the weights.
- save_checkpoint_file / save_ddgan: atomic writes; a disk that fills raises CheckpointWriteError (one line: the file,
  the cause, what was kept, the fix) and leaves the previous file in place.
A checkpoint written before this (or by other code) that holds data objects: `python -m src.upgrade_checkpoint`.
"""
import errno
import pickle
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from hydra.utils import instantiate

from src.ddgan.files import atomic_torch_save

if TYPE_CHECKING:
    from src.ddgan.module import DDGAN

ALLOWED_TARGETS = frozenset({
    "src.ddgan.module.DDGAN",
    "src.ddgan.diffusion.VPSchedule",
    "src.ddgan.nets.ncsnpp.NCSNpp",
    "src.ddgan.nets.wavelet_ncsnpp.WaveletNCSNpp",
    "src.ddgan.nets.discriminator.SmallDiscriminator",
    "src.ddgan.nets.discriminator.LargeDiscriminator",
    "src.ddgan.nets.toy.ToyGenerator",
    "src.ddgan.nets.toy.ToyDiscriminator",
})
UPGRADE_HINT = "if it holds only data objects (an older checkpoint), convert it once with `python -m src.upgrade_checkpoint ckpt_path={}`"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be opened safely or does not fit: one line for the user, exit code 2."""


class CheckpointWriteError(CheckpointError):
    """A checkpoint could not be written (disk full); one line naming the file and the fix (the commands: exit 2)."""


DISK_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}  # no space left, file size limit (ulimit -f), quota


def disk_full_cause(error: BaseException) -> OSError | None:
    """The disk-full OSError behind `error` (torch's zip writer reports it as a RuntimeError), if any."""
    while error is not None:
        if isinstance(error, OSError) and error.errno in DISK_FULL:
            return error
        error = error.__cause__ or error.__context__
    return None


def save_checkpoint_file(obj: Any, path: str | Path, *, fix: str) -> Path:
    """files.atomic_torch_save for checkpoints: a disk that fills (or a file size limit) raises CheckpointWriteError
    naming the file, what was kept and `fix`; `path` is left as it was."""
    path = Path(path)
    try:
        return atomic_torch_save(obj, path)
    except BaseException as error:
        if (cause := disk_full_cause(error)) is not None:
            kept = f"the previous {path.name} is intact" if path.exists() else f"no {path.name} was written"
            raise CheckpointWriteError(f"could not write checkpoint {path}: disk full ({cause.strerror}); {kept}. {fix}") from error
        raise


def read_checkpoint(path: str | Path, map_location: Any = "cpu", *, what: str = "ckpt_path", mmap: bool = False,
                    data_types: tuple = ()) -> Any:
    """The content of a torch file, loaded with weights_only=True; CheckpointError for a missing, truncated,
    foreign or code-carrying file. `what` names the setting the path came from (for the message); mmap: map the
    tensors instead of reading them (a cheap look at a large file); data_types: further classes (and their
    reconstruction functions) allowed to be unpickled, plain data only (src.upgrade_checkpoint's)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what}={str(path)!r}: no such file.")
    try:
        with torch.serialization.safe_globals(list(data_types)):
            return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except (pickle.UnpicklingError, RuntimeError, EOFError, LookupError, ValueError, OSError, TypeError, AttributeError) as error:
        message = str(error)
        if refused := re.search(r"GLOBAL (\S+)", message):  # the weights-only unpickler met a class or function
            hint = ("it is none of the data types src.upgrade_checkpoint converts; remove it from the checkpoint first"
                    if data_types else UPGRADE_HINT.format(path))
            raise CheckpointError(f"{what}={str(path)!r} was refused: it holds the pickled object {refused.group(1)}, "
                                  "which could run code when opened (only tensors and plain containers are loaded); "
                                  f"{hint}.") from None
        unpickler = re.search(r"WeightsUnpickler error: ([^\n]+)", message)
        reason = unpickler.group(1) if unpickler else message.strip().split(". ")[0]
        raise CheckpointError(f"{what}={str(path)!r} is not a complete PyTorch checkpoint (truncated, or not a "
                              f"torch file): {type(error).__name__}{f': {reason}' if reason else ''}") from None


def run_config(checkpoint: Any, path: str | Path) -> dict:
    """The run config stored in a DDGAN checkpoint (hyper_parameters.config)."""
    config = checkpoint.get("hyper_parameters", {}).get("config") if isinstance(checkpoint, dict) else None
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise CheckpointError(f"ckpt_path={str(path)!r} holds no DDGAN run config (hyper_parameters.config): it was "
                              "not written by src.train or src.convert_official.")
    return config


def check_targets(node: Any, path: str | Path, where: str = "model") -> None:
    """CheckpointError unless every `_target_` under `node` is in ALLOWED_TARGETS (and no string interpolates)."""
    if isinstance(node, dict):
        target = node.get("_target_")
        if target is not None and target not in ALLOWED_TARGETS:
            raise CheckpointError(f"ckpt_path={str(path)!r} was refused: its stored config builds {where}._target_="
                                  f"{target!r}, which is not one of ddgan's networks ({', '.join(sorted(ALLOWED_TARGETS))}).")
        for key, value in node.items():
            check_targets(value, path, f"{where}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            check_targets(value, path, f"{where}[{index}]")
    elif isinstance(node, str) and "${" in node:
        raise CheckpointError(f"ckpt_path={str(path)!r} was refused: its stored config has an interpolation at "
                              f"{where} ({node!r}); stored configs are resolved.")


def build_model(config: dict, path: str | Path) -> "DDGAN":
    """The DDGAN of a stored run config, after checking that it names only allowlisted targets."""
    check_targets(config["model"], path)
    return instantiate(config["model"], _convert_="partial")


def network_summary(config: dict) -> str:
    """`experiment 'NAME' (generator G, discriminator D)` from a run config."""
    model = config.get("model", {})
    names = [f"{role} {str(model.get(role, {}).get('_target_', '?')).rsplit('.', 1)[-1]}"
             for role in ("generator", "discriminator")]
    return f"experiment {config.get('task_name', '?')!r} ({', '.join(names)})"


def mismatch(state_dict: dict, model: torch.nn.Module) -> str | None:
    """How a checkpoint's parameter names and shapes differ from `model`'s (None when they fit)."""
    expected = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    stored = {name: tuple(tensor.shape) for name, tensor in state_dict.items()}
    missing, unexpected = expected.keys() - stored.keys(), stored.keys() - expected.keys()
    reshaped = [name for name in expected.keys() & stored.keys() if expected[name] != stored[name]]
    if not (missing or unexpected or reshaped):
        return None
    examples = sorted(missing)[:1] + sorted(unexpected)[:1] + sorted(reshaped)[:1]
    return (f"{len(missing)} missing, {len(unexpected)} unexpected, {len(reshaped)} reshaped tensors "
            f"(e.g. {', '.join(examples)})")


def check_resumable(ckpt_path: str | Path, model: torch.nn.Module, run: dict) -> None:
    """CheckpointError unless `ckpt_path` opens safely and holds weights for `model` (the networks of config `run`)."""
    checkpoint = read_checkpoint(ckpt_path, mmap=True)
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise CheckpointError(f"ckpt_path={str(ckpt_path)!r} is not a training checkpoint (no state_dict).")
    if difference := mismatch(checkpoint["state_dict"], model):
        stored = checkpoint.get("hyper_parameters", {}).get("config")
        written_by = network_summary(stored) if isinstance(stored, dict) else "another program"
        raise CheckpointError(f"ckpt_path={str(ckpt_path)!r} was written by {written_by} and does not fit this run, "
                              f"{network_summary(run)}: {difference}. Resume with the settings it was written with, "
                              "or start a new run (ckpt_path=null).")


def load_ddgan(ckpt_path: str | Path, map_location: str | torch.device = "cpu") -> "DDGAN":
    """Rebuild the DDGAN of a training checkpoint (networks from its stored config) and load its weights."""
    checkpoint = read_checkpoint(ckpt_path, map_location)
    config = run_config(checkpoint, ckpt_path)
    model = build_model(config, ckpt_path)
    if difference := mismatch(checkpoint.get("state_dict", {}), model):
        raise CheckpointError(f"ckpt_path={str(ckpt_path)!r}: its weights do not fit the networks of its own stored "
                              f"config, {network_summary(config)}: {difference}.")
    model.load_state_dict(checkpoint["state_dict"])
    model.iteration = checkpoint.get("ddgan", {}).get("iteration", 0)
    model.hparams["config"] = config
    return model.eval()


def save_ddgan(model: "DDGAN", path: str | Path, **provenance: Any) -> Path:
    """Write `model` as a checkpoint that load_ddgan reads (the subset of a training checkpoint it needs: weights, the
    hyperparameters with the run config, and the `ddgan` state with the iteration and any `provenance`), atomically."""
    state = {"iteration": model.iteration} | provenance
    return save_checkpoint_file({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams), "ddgan": state},
                                path, fix="Free space there or choose another output path")
