"""VGG16 fc2 features for improved precision/recall, as Kynkäänniemi et al. 2019 and StyleGAN2-ADA's pr50k3: images
resized to 224 (TF-1.x-compatible bilinear), ImageNet-normalised, the 4096-d output of fc2 after its ReLU (Keras'
`fc2` layer, torch-fidelity's default `fc2_relu` for precision/recall). The network and preprocessing are
torch-fidelity's FeatureExtractorVGG16 with torchvision's ImageNet weights (vgg16-397923af.pth); StyleGAN2-ADA uses
a TorchScript export of the original Oxford weights instead, so recalls agree in protocol, not to the digit.

The weights are found in (or downloaded once to) the torch hub checkpoint directory; offline, a missing file raises
FeatureWeightsError naming the file, its URL and the directory.
"""
from pathlib import Path

import torch
from torch_fidelity.feature_extractor_vgg16 import FeatureExtractorVGG16

from .features import FeatureExtractor, to_uint8
from .weights import read_state_dict, resolve_hub_weights, state_dict_stream

VGG16_WEIGHTS_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"  # torchvision IMAGENET1K_V1
VGG16_WEIGHTS_FILE = VGG16_WEIGHTS_URL.rsplit("/", 1)[1]
VGG16_FEATURE = "fc2_relu"


class VGG16Features(FeatureExtractor):
    """VGG16: RGB (or grey, repeated) images, uint8 or float in [-1, 1] -> fc2 features after ReLU (N, 4096); no logits."""

    name = "vgg16-fc2-relu"
    num_features = 4096
    num_classes = None

    def __init__(self, *, weights_path: str | Path | None = None, download: bool = True) -> None:
        super().__init__()
        path = resolve_hub_weights("VGG16", VGG16_WEIGHTS_URL, weights_path, download=download)
        state = read_state_dict(path, "VGG16")
        self.network = FeatureExtractorVGG16("vgg16", [VGG16_FEATURE],
                                             feature_extractor_weights_path=state_dict_stream(state))
        self.weights_source = f"torchvision {path.name}"

    def train(self, mode: bool = True) -> "VGG16Features":
        return super().train(False)  # always eval

    @torch.no_grad()
    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, None]:
        pixels = to_uint8(images)
        if pixels.shape[1] == 1:
            pixels = pixels.expand(-1, 3, -1, -1)
        return self.network(pixels)[0], None
