"""The feature extractors by name (FEATURE_EXTRACTORS), all behind metrics/features.py's interface:

"inception": the TF-compatible FID InceptionV3 (pool3 2048-d features; logits of an Inception Score protocol).
"vgg16": VGG16 fc2 4096-d features (after ReLU) at 224 px, for precision/recall as Kynkäänniemi et al.; no logits.
"digits": the DigitClassifier applied to every channel separately; features are the channels' penultimate
activations concatenated, logits of a C-channel image are the joint log-probabilities of the C digits
(10^C classes in the order 100a + 10b + c for RGB: StackedMNIST's 1000 modes).
"""
import hashlib
from pathlib import Path

import torch
from torch import nn

from .digit_classifier import DigitClassifier, load_digit_classifier
from .features import FeatureExtractor, extract_features, to_model_range, to_uint8

__all__ = ["FEATURE_EXTRACTORS", "DigitFeatures", "FeatureExtractor", "build_feature_extractor", "extract_features",
           "joint_log_probs", "state_dict_digest", "to_model_range", "to_uint8"]
FEATURE_EXTRACTORS = ("inception", "digits", "vgg16")


def joint_log_probs(log_probs: torch.Tensor) -> torch.Tensor:
    """Per-channel log p (N, C, K) -> joint log p (N, K^C), class index sum_c y_c K^(C-1-c) (channel 0 most
    significant: 100a + 10b + c for RGB digits)."""
    joint = log_probs[:, 0]
    for channel in range(1, log_probs.shape[1]):
        joint = (joint[:, :, None] + log_probs[:, channel, None, :]).flatten(1)
    return joint


def state_dict_digest(module: nn.Module, length: int = 8) -> str:
    """Short hash of a module's weights: cache keys change when the weights do."""
    digest = hashlib.sha1()
    for key, value in sorted(module.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:length]


class DigitFeatures(FeatureExtractor):
    """DigitClassifier features of each channel, concatenated: (N, C * feature_dim); logits over 10^C classes."""

    def __init__(self, classifier: DigitClassifier, *, num_channels: int = 3) -> None:
        super().__init__()
        self.classifier = classifier.eval().requires_grad_(False)
        self.num_channels = num_channels
        self.num_features = num_channels * classifier.num_features
        self.num_classes = classifier.num_classes ** num_channels
        self.name = f"digits-r{classifier.resolution}-c{num_channels}-{state_dict_digest(classifier)}"

    def train(self, mode: bool = True) -> "DigitFeatures":
        return super().train(False)  # always eval: batch norm statistics and dropout stay fixed

    @torch.no_grad()
    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, c, h, w = images.shape
        if c != self.num_channels:
            raise ValueError(f"expected {self.num_channels}-channel images, got {tuple(images.shape)}")
        grey = to_model_range(images).reshape(n * c, 1, h, w)
        features = self.classifier.features(grey)  # (N * C, F)
        log_probs = self.classifier.head(features).log_softmax(dim=1).reshape(n, c, -1)
        return features.reshape(n, -1), joint_log_probs(log_probs)


def build_feature_extractor(
    name: str,
    *,
    classifier_path: str | Path | None = None,  # "digits": a checkpoint of src.train_classifier
    num_channels: int = 3,  # "digits": channels per image (1 grey digit, 3 stacked digits)
    weights_path: str | Path | None = None,  # "inception" / "vgg16": an explicit weights file instead of the hub cache
    download: bool = True,  # "inception" / "vgg16": fetch the weights into the torch hub cache when missing
    logits: str | None = "unbiased",  # "inception": the Inception Score's logits (unbiased | released | None)
) -> FeatureExtractor:
    """The feature extractor called `name` (one of FEATURE_EXTRACTORS), frozen and in eval mode."""
    if name == "inception":
        from .inception import InceptionFeatures

        return InceptionFeatures(weights_path=weights_path, download=download, logits=logits)
    if name == "vgg16":
        from .vgg import VGG16Features

        return VGG16Features(weights_path=weights_path, download=download)
    if name == "digits":
        if classifier_path is None:
            raise ValueError("the digits feature extractor needs classifier_path (train one with src.train_classifier)")
        return DigitFeatures(load_digit_classifier(classifier_path), num_channels=num_channels)
    raise ValueError(f"unknown feature extractor {name!r}; expected one of {FEATURE_EXTRACTORS}")
