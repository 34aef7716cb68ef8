"""Time of the whole evaluation pass as src.evaluate runs it: sample num_samples images (EMA generator, per-sample
seeds), extract features and compute FID, IS and precision/recall against a real reference.

    python -m benchmarks.evaluation experiment=stacked_digits num_samples=500 batch_size=50 repeats=3
extractor=auto times the digit-classifier features (offline, as in the tests and the stacked_digits experiment) and,
when its weights are on disk, the FID Inception; extractor=digits|inception picks one. The classifier's weights
and the real reference (cached on disk in practice) are random: the times do not depend on them. `sampling_only`
times the sampling alone, so feature extraction and metrics take the difference. Other key=value arguments are
Hydra overrides of the experiment.
"""
import sys

import torch

from benchmarks.common import measure, parse_args, write_result
from benchmarks.train_step import inference_model
from src.ddgan.evaluation import SampleQuality, generated_batches
from src.ddgan.metrics import (
    DigitClassifier,
    DigitFeatures,
    FeatureExtractor,
    ReferenceSet,
    build_feature_extractor,
    gaussian_statistics,
)
from src.ddgan.metrics.inception import InceptionWeightsError

DEFAULTS = {"experiment": "stacked_digits", "num_samples": 500, "batch_size": 50, "repeats": 3, "warmup": 1,
            "extractor": "auto", "num_real": 1000, "device": "cpu", "name": None}


def extractors(choice: str, sample_shape: tuple[int, ...]) -> tuple[dict[str, FeatureExtractor], dict[str, str]]:
    """The extractors to time, and those skipped with the reason."""
    found, skipped = {}, {}
    if choice in ("auto", "digits"):
        found["digits"] = DigitFeatures(DigitClassifier(resolution=sample_shape[-1]), num_channels=sample_shape[0])
    if choice in ("auto", "inception"):
        try:
            found["inception"] = build_feature_extractor("inception", download=False)
        except InceptionWeightsError as error:
            if choice == "inception":
                raise
            skipped["inception"] = str(error)
    return found, skipped


def main(argv: list[str]) -> None:
    args, overrides = parse_args(argv, DEFAULTS)
    device = torch.device(args["device"])
    model = inference_model(args["experiment"], overrides, device)

    def images():
        return generated_batches(model, range(args["num_samples"]), batch_size=args["batch_size"], seed=0)

    timing = {"repeats": args["repeats"], "warmup": args["warmup"], "cuda": device.type == "cuda"}
    sampling = measure(lambda: list(images()), **timing)
    by_extractor = {}
    found, skipped = extractors(args["extractor"], model.sample_shape)
    for name, extractor in found.items():
        real = torch.randn(args["num_real"], extractor.num_features)
        reference = ReferenceSet(gaussian_statistics(real), real)
        quality = SampleQuality(extractor, ["fid", "is", "pr"], reference=reference).to(device)
        result = measure(lambda quality=quality: quality.score(images()), **timing)
        by_extractor[name] = result | {"images_per_second": args["num_samples"] / result["median_s"],
                                       "feature_extractor": extractor.name}
    write_result(args["name"] or f"evaluation_{args['experiment']}",
                 {"num_samples": args["num_samples"], "batch_size": args["batch_size"], "num_real": args["num_real"],
                  "metrics": ["fid", "is", "pr"], "device": str(device), "overrides": overrides,
                  "sampling_only": sampling, "by_extractor": by_extractor, "skipped": skipped})


if __name__ == "__main__":
    main(sys.argv[1:])
