"""The standard FID InceptionV3 (TF 2015-12-05 graph, TF-1.x-compatible bilinear resize to 299), via torch-fidelity.

The same network and weights file as torchmetrics' FrechetInceptionDistance; the weights are found in (or
downloaded once to) the torch hub checkpoint directory. Offline, a missing file raises InceptionWeightsError,
which names the file, its URL and the directory to put it in.
"""
from pathlib import Path

import torch

from .extractors import FeatureExtractor, to_uint8

INCEPTION_WEIGHTS_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
)
INCEPTION_WEIGHTS_FILE = INCEPTION_WEIGHTS_URL.rsplit("/", 1)[1]


class InceptionWeightsError(RuntimeError):
    """The FID Inception weights are neither on disk nor downloadable; the message says where to put them."""


def inception_weights_dir() -> Path:
    """torch hub's checkpoint directory ($TORCH_HOME/hub/checkpoints), where torch-fidelity looks too."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def missing_weights_message(directory: Path, reason: str) -> str:
    return (f"FID Inception weights {INCEPTION_WEIGHTS_FILE} not found in {directory} ({reason}). "
            f"Download {INCEPTION_WEIGHTS_URL} on a machine with internet and copy it to "
            f"{directory / INCEPTION_WEIGHTS_FILE} "
            "(or set TORCH_HOME so that <TORCH_HOME>/hub/checkpoints holds it, or pass weights_path=<file>).")


def resolve_inception_weights(weights_path: str | Path | None = None, *, download: bool = True) -> Path:
    """Path of the Inception weights: `weights_path` if given, else the hub cache, downloading into it if allowed."""
    if weights_path is not None:
        if not Path(weights_path).is_file():
            raise InceptionWeightsError(f"Inception weights file {weights_path} does not exist; its original is "
                                        f"{INCEPTION_WEIGHTS_URL}")
        return Path(weights_path)
    directory = inception_weights_dir()
    path = directory / INCEPTION_WEIGHTS_FILE
    if path.is_file():
        return path
    if not download:
        raise InceptionWeightsError(missing_weights_message(directory, "download disabled"))
    try:
        directory.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(INCEPTION_WEIGHTS_URL, str(path), progress=False)
    except Exception as error:  # no network, proxy refusal, read-only cache: all end in the same fix
        raise InceptionWeightsError(missing_weights_message(directory, f"download failed: {error}")) from error
    return path


class InceptionFeatures(FeatureExtractor):
    """FID InceptionV3: RGB (or grey, repeated) images -> pool3 features (N, 2048) and unbiased logits (N, 1008).

    Float inputs in [-1, 1] are quantised to uint8 first, as for images saved to PNG. The logits are the
    final layer without its bias, as in the original TF Inception Score code.
    """

    name = "inception-v3-compat"
    num_features = 2048
    num_classes = 1008

    def __init__(self, *, weights_path: str | Path | None = None, download: bool = True) -> None:
        super().__init__()
        try:
            from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
        except ImportError as error:
            raise ImportError("the Inception feature extractor needs torch-fidelity: "
                              "pip install torch-fidelity") from error
        path = resolve_inception_weights(weights_path, download=download)
        self.network = FeatureExtractorInceptionV3(
            "inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=str(path)
        )

    def train(self, mode: bool = True) -> "InceptionFeatures":
        return super().train(False)  # always eval

    @torch.no_grad()
    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = to_uint8(images)
        if pixels.shape[1] == 1:
            pixels = pixels.expand(-1, 3, -1, -1)
        features, logits = self.network(pixels)
        return features, logits
