"""Weights files of the pretrained metric networks (FID Inception, VGG16): found in the torch hub cache, downloaded
into it when allowed, read with weights_only=True. Offline, a missing file raises FeatureWeightsError, one line that
names the file, its URL and the directory to put it in.
"""
import io
from pathlib import Path

import torch

from src.ddgan.checkpoint import CheckpointError, read_checkpoint


class FeatureWeightsError(RuntimeError):
    """A metric network's weights are neither on disk nor downloadable; the message says where to put them."""


def hub_checkpoint_dir() -> Path:
    """torch hub's checkpoint directory ($TORCH_HOME/hub/checkpoints), where torch-fidelity and torchvision look."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def missing_weights_message(what: str, url: str, directory: Path, reason: str, hint: str = "") -> str:
    file_name = url.rsplit("/", 1)[1]
    return (f"{what} weights {file_name} not found in {directory} ({reason}). Download {url} on a machine with "
            f"internet and copy it to {directory / file_name} (or set TORCH_HOME so that <TORCH_HOME>/hub/checkpoints "
            f"holds it, or pass the file's path){hint}.")


def resolve_hub_weights(what: str, url: str, weights_path: str | Path | None = None, *, download: bool = True,
                        hint: str = "") -> Path:
    """Path of the weights file at `url`: `weights_path` if given, else the hub cache, downloading into it if allowed.
    `what` names the network in the message, `hint` ends it (another way to get the weights)."""
    if weights_path is not None:
        if not Path(weights_path).is_file():
            raise FeatureWeightsError(f"{what} weights file {weights_path} does not exist; its original is {url}")
        return Path(weights_path)
    directory = hub_checkpoint_dir()
    path = directory / url.rsplit("/", 1)[1]
    if path.is_file():
        return path
    if not download:
        raise FeatureWeightsError(missing_weights_message(what, url, directory, "download disabled", hint))
    try:
        directory.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(path), progress=False)
    except Exception as error:  # no network, proxy refusal, read-only cache: all end in the same fix
        path.unlink(missing_ok=True)
        raise FeatureWeightsError(missing_weights_message(what, url, directory, f"download failed: {error}",
                                                          hint)) from error
    return path


def read_state_dict(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    """The tensors of a weights file, loaded with weights_only=True (FeatureWeightsError if it is not one)."""
    try:
        state_dict = read_checkpoint(path, what=f"{what} weights")
    except CheckpointError as error:
        raise FeatureWeightsError(str(error)) from None
    if not isinstance(state_dict, dict):
        raise FeatureWeightsError(f"{what} weights {path} hold a {type(state_dict).__name__}, not a state dict")
    return state_dict


def state_dict_stream(state_dict: dict[str, torch.Tensor]) -> io.BytesIO:
    """A state dict serialised in memory: torch-fidelity's extractors take a weights "path" that torch.load reads
    (without weights_only), so they get our own, already safely loaded tensors rather than the user's file."""
    stream = io.BytesIO()
    torch.save(state_dict, stream)
    stream.seek(0)
    return stream
