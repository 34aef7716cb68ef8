"""Sample quality against real data: FID, Inception Score, improved precision/recall (k = 3) and StackedMNIST
mode coverage, streamed over per-sample-seeded batches and scored against a cached real-data reference.

Shared by the training callback (src/ddgan/callbacks/generative_metrics.py) and `python -m src.evaluate`.
Both sides travel as uint8 (N, C, H, W), as if saved to PNG, so a checkpoint scored with seed S and the npz that
`src.sample seed=S` writes from it give the same numbers.
"""
import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from src.ddgan.data.datamodule import RandomHorizontalFlip
from src.ddgan.metrics import (
    DigitClassifier,
    FeatureExtractor,
    FrechetDistance,
    InceptionScore,
    ModeCoverage,
    PrecisionRecall,
    ReferenceSet,
    load_digit_splits,
    load_or_compute_reference,
    predict_stacked_modes,
    save_digit_classifier,
    train_digit_classifier,
)
from src.ddgan.metrics.extractors import FEATURE_EXTRACTORS, build_feature_extractor
from src.ddgan.metrics.features import to_uint8
from src.ddgan.metrics.protocol import IS_PROTOCOLS, jpeg_roundtrip, validate_is_protocol, validate_jpeg_quality
from src.ddgan.module import DDGAN
from src.ddgan.precision import autocast
from src.ddgan.sampling import PerSampleGenerator

log = logging.getLogger(__name__)

METRICS = ("fid", "is", "pr", "modes")  # FID | Inception Score | precision & recall | modes covered & KL
RUN_CLASSIFIER_FILE = "digit_classifier.pt"  # a classifier trained for a run is saved in its output_dir
# datamodule settings that change how images are served, not which images the train set holds
LOADER_SETTINGS = frozenset({"batch_size_per_device", "num_workers", "pin_memory", "persistent_workers",
                             "prefetch_factor", "download", "hflip"})


def validate_metrics(metrics: Iterable[str]) -> list[str]:
    """The metric names as a list; ValueError naming any unknown one."""
    metrics = list(metrics)
    unknown = [name for name in metrics if name not in METRICS]
    if unknown or not metrics:
        raise ValueError(f"metrics={metrics} is invalid: choose one or more of {list(METRICS)}")
    return metrics


# ---- generated and real images -----------------------------------------------------------------
def rank_indices(num_samples: int, rank: int, world_size: int) -> range:
    """The contiguous share of sample indices 0..num_samples-1 that `rank` draws (rank-major = index order)."""
    return range(rank * num_samples // world_size, (rank + 1) * num_samples // world_size)


def generated_batches(model: DDGAN, indices: Sequence[int], *, batch_size: int, seed: int,
                      use_ema: bool = True, precision: str = "32") -> Iterator[torch.Tensor]:
    """uint8 samples (n, C, H, W) of `model`, batch_size at a time; sample i depends only on (seed, i).
    precision=bf16: the generator runs under bf16 autocast."""
    for start in range(0, len(indices), batch_size):
        batch = list(indices[start:start + batch_size])
        with autocast(model.device, precision):
            samples = model.sample(len(batch), rng=PerSampleGenerator(seed, batch, model.device), use_ema=use_ema)
        yield to_uint8(samples)


def load_npz_images(path: str | Path, *, what: str = "samples") -> torch.Tensor:
    """uint8 images (N, C, H, W) of an npz written by src.sample (uint8 N×H×W×C under `arr_0`); `what` names the
    setting the path came from."""
    with np.load(path) as archive:
        if "arr_0" not in archive:
            raise ValueError(f"{what}={path}: no `arr_0` array (expected src.sample's uint8 N×H×W×C samples)")
        images = archive["arr_0"]
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"{what}={path}: expected uint8 N×H×W×C under arr_0, got {images.dtype} {images.shape}")
    return torch.from_numpy(images).permute(0, 3, 1, 2)


def reference_name(datamodule: L.LightningDataModule, num_real: int) -> str:
    """Cache name of the first num_real train images: datamodule class + digest of its content settings."""
    settings = {key: value for key, value in sorted(dict(datamodule.hparams).items()) if key not in LOADER_SETTINGS}
    digest = hashlib.sha1(repr(settings).encode()).hexdigest()[:8]
    return f"{type(datamodule).__name__}-{digest}-first{num_real}"


def real_batches(datamodule: L.LightningDataModule, num_real: int, *, batch_size: int) -> Iterator[torch.Tensor]:
    """uint8 batches (n, C, H, W) of the first num_real train images, in order and never flipped."""
    if getattr(datamodule, "train_dataset", None) is None:
        datamodule.prepare_data()
        datamodule.setup("fit")
    dataset = datamodule.train_dataset
    if isinstance(dataset, RandomHorizontalFlip):
        dataset = dataset.dataset
    subset = Subset(dataset, range(min(num_real, len(dataset))))
    for images, *_ in DataLoader(subset, batch_size=batch_size, num_workers=getattr(datamodule, "num_workers", 0)):
        yield to_uint8(images)


# ---- the digit classifier ----------------------------------------------------------------------
def find_digit_classifier(classifier_path: str | Path | None, run_dir: str | Path | None) -> Path | None:
    """The classifier a run uses: its own <run_dir>/digit_classifier.pt (trained for it), else classifier_path."""
    candidates = [Path(run_dir) / RUN_CLASSIFIER_FILE] if run_dir is not None else []
    candidates += [Path(classifier_path)] if classifier_path is not None else []
    return next((path for path in candidates if path.is_file()), None)


def train_run_classifier(destination: str | Path, *, resolution: int, dataset: str = "digits",
                         data_dir: str | Path | None = None, epochs: int = 15, seed: int = 0,
                         num_threads: int | None = 1) -> Path:
    """Train a DigitClassifier with the library's recipe and save it to `destination`; the global RNG is untouched."""
    with torch.random.fork_rng():  # training seeds torch; the run's own randomness must not depend on it
        splits = load_digit_splits(dataset, resolution=resolution, seed=seed,
                                   **({"data_dir": data_dir} if data_dir is not None else {}))
        classifier, accuracy = train_digit_classifier(splits, epochs=epochs, seed=seed, num_threads=num_threads)
    log.info(f"digit classifier trained on {dataset} at {resolution}px: held-out accuracy {accuracy:.4f}")
    if accuracy < 0.98:
        log.warning(f"digit classifier held-out accuracy {accuracy:.4f} < 0.98: digit metrics are unreliable")
    return save_digit_classifier(destination, classifier, held_out_accuracy=accuracy, dataset=dataset)


# ---- the metrics -------------------------------------------------------------------------------
def pr_extractor_name(feature_extractor: str, pr_feature_extractor: str | None) -> str:
    """The features of precision/recall: as asked, else VGG16 fc2 next to Inception (as the paper's recall, after
    Kynkäänniemi et al.), else the extractor's own (digits: no published recall to compare with)."""
    if pr_feature_extractor is not None:
        if pr_feature_extractor not in FEATURE_EXTRACTORS:
            raise ValueError(f"pr_feature_extractor={pr_feature_extractor!r} is invalid: choose one of "
                             f"{list(FEATURE_EXTRACTORS)}")
        return pr_feature_extractor
    return "vgg16" if feature_extractor == "inception" else feature_extractor


def build_extractors(feature_extractor: str, metrics: Sequence[str], *, pr_feature_extractor: str | None = None,
                     digits: Callable[[], FeatureExtractor] | None = None, inception_weights_path=None,
                     vgg16_weights_path=None, is_protocol: str = "salimans", download: bool = True,
                     ) -> tuple[FeatureExtractor | None, FeatureExtractor | None]:
    """(extractor of FID and IS, extractor of precision/recall), each None when no metric asked for needs it; one
    instance when they are the same. `digits` builds the digit extractor; Inception logits only when IS is asked."""
    logits = IS_PROTOCOLS[validate_is_protocol(is_protocol)][0] if "is" in metrics else None
    built = {}

    def make(name: str) -> FeatureExtractor:
        if name not in built:
            if name == "digits":
                if digits is None:
                    raise ValueError("digit features need a digit classifier")
                built[name] = digits()
            else:
                built[name] = build_feature_extractor(
                    name, download=download, logits=logits,
                    weights_path=inception_weights_path if name == "inception" else vgg16_weights_path)
        return built[name]

    main = make(feature_extractor) if {"fid", "is"} & set(metrics) else None
    pr = make(pr_extractor_name(feature_extractor, pr_feature_extractor)) if "pr" in metrics else None
    return main, pr


def reference_for(extractor: FeatureExtractor | None, metrics: Sequence[str], *, cache_dir: str | Path,
                  dataset_name: str, real_images, device: torch.device | str | None = None) -> ReferenceSet | None:
    """The cached real reference under `extractor` when FID or precision/recall need it, else None."""
    if extractor is None or not {"fid", "pr"} & set(metrics):
        return None
    return load_or_compute_reference(cache_dir, dataset_name, extractor, real_images, device=device)


class SampleQuality:
    """FID, IS, precision/recall and mode coverage of generated uint8 images (N, C, H, W), fed batch by batch.

    FID and IS use `extractor` (FID against `reference`), precision/recall `pr_extractor` against `pr_reference`
    (default: the same). States are torchmetrics Metrics (sums, gathered lists, a mode histogram): compute() syncs
    them across DDP ranks, so every rank feeds only its share and all get the same numbers. jpeg_quality: the
    images pass through a JPEG encode/decode first (the released protocol).
    """

    def __init__(
        self,
        extractor: FeatureExtractor | None,  # images -> features (FID) and logits (IS)
        metrics: Sequence[str],  # any of METRICS
        *,
        reference: ReferenceSet | None = None,  # real statistics of `extractor` (needed by fid)
        classifier: DigitClassifier | None = None,  # digit classifier (needed by modes)
        pr_k: int = 3,  # k of the k-NN manifolds of precision / recall
        is_splits: int = 10,  # IS is averaged over this many chunks
        precision: str = "32",  # bf16: extractor and classifier under bf16 autocast (the statistics stay fp32)
        pr_extractor: FeatureExtractor | None = None,  # features of precision / recall (None: `extractor`)
        pr_reference: ReferenceSet | None = None,  # real features of `pr_extractor` (None: `reference`)
        jpeg_quality: int | None = None,  # JPEG-compress the images before any network (None: lossless)
        is_protocol: str = "salimans",  # the name recorded for IS (its logits are the extractor's)
    ) -> None:
        self.metrics = validate_metrics(metrics)
        self.pr_extractor = pr_extractor or extractor
        self.extractor = extractor or self.pr_extractor
        self.classifier, self.precision = classifier, precision
        self.jpeg_quality = validate_jpeg_quality(jpeg_quality)
        self.is_protocol = validate_is_protocol(is_protocol)
        pr_reference = pr_reference if pr_extractor is not None else reference
        if {"fid", "is"} & set(self.metrics) and extractor is None:
            raise ValueError(f"metrics={self.metrics} need a feature extractor")
        if "fid" in self.metrics and reference is None:
            raise ValueError(f"metrics={self.metrics} need a real-data reference")
        if "pr" in self.metrics and (self.pr_extractor is None or pr_reference is None or pr_reference.features is None):
            raise ValueError("precision/recall need real features (a reference of images, not statistics only)")
        if "is" in self.metrics and extractor.num_classes is None:
            raise ValueError(f"the {extractor.name} extractor gives no logits: drop `is` from metrics")
        if "modes" in self.metrics and classifier is None:
            raise ValueError("metric `modes` needs a digit classifier (feature_extractor=digits or "
                             "classifier_path=...)")
        logits = getattr(extractor, "logits", None)  # an InceptionFeatures' IS logits
        if "is" in self.metrics and logits is not None and logits != IS_PROTOCOLS[self.is_protocol][0]:
            raise ValueError(f"is_protocol={self.is_protocol} needs {IS_PROTOCOLS[self.is_protocol][0]} logits, "
                             f"the extractor gives {logits} ones")
        self.is_splits = IS_PROTOCOLS[self.is_protocol][1] or is_splits
        self.states = {}
        if "fid" in self.metrics:
            self.states["fid"] = FrechetDistance(extractor.num_features, real_statistics=reference.statistics)
        if "is" in self.metrics:
            self.states["is"] = InceptionScore(splits=self.is_splits)
        if "pr" in self.metrics:
            self.states["pr"] = PrecisionRecall(k=pr_k, real_features=pr_reference.features)
        if "modes" in self.metrics:
            self.states["modes"] = ModeCoverage()

    def networks(self) -> list[torch.nn.Module]:
        return [net for net in dict.fromkeys([self.extractor, self.pr_extractor, self.classifier]) if net is not None]

    def describe(self) -> dict:
        """What metrics.json records next to the numbers: each metric's features, the IS protocol, JPEG or not."""
        used = {"fid": self.extractor, "is": self.extractor, "pr": self.pr_extractor}
        record = {"feature_extractor": self.extractor.name if self.extractor is not None else None,
                  "metric_features": {name: used[name].name for name in self.metrics if name in used}
                  | ({"modes": "digit-classifier"} if "modes" in self.metrics else {}),
                  "jpeg_quality": self.jpeg_quality}
        sources = {net.name: net.weights_source for net in self.networks() if hasattr(net, "weights_source")}
        if sources:
            record["feature_weights"] = sources
        if "is" in self.metrics:
            record["is_protocol"] = f"{self.is_protocol}: {self.extractor.num_classes} logits, {self.is_splits} splits"
        return record

    def to(self, device: torch.device | str) -> "SampleQuality":
        for net in self.networks():
            net.to(device)
        for state in self.states.values():
            state.to(device)
        return self

    @torch.no_grad()
    def update(self, images: torch.Tensor) -> None:
        """Add generated uint8 images (N, C, H, W)."""
        device = next(self.networks()[0].parameters()).device
        if self.jpeg_quality is not None:
            images = jpeg_roundtrip(images, self.jpeg_quality)
        images = images.to(device)
        with autocast(device, self.precision):
            features, logits = self.extractor.features_and_logits(images) if {"fid", "is"} & set(self.states) \
                else (None, None)
            pr_features = None
            if "pr" in self.states:
                pr_features = features if self.pr_extractor is self.extractor and features is not None \
                    else self.pr_extractor.features_and_logits(images)[0]
            modes = predict_stacked_modes(self.classifier, images).to(device) if "modes" in self.states else None
        if "fid" in self.states:
            self.states["fid"].update(features.float(), real=False)
        if "is" in self.states:
            self.states["is"].update(logits.float())
        if "pr" in self.states:
            self.states["pr"].update(pr_features.float(), real=False)
        if "modes" in self.states:
            self.states["modes"].update(modes)

    def compute(self) -> dict[str, float]:
        """{fid, is, is_std, precision, recall, modes_covered, mode_kl} (those asked for), over all ranks."""
        results = {}
        if "fid" in self.states:
            results["fid"] = float(self.states["fid"].compute())
        if "is" in self.states:
            mean, std = self.states["is"].compute()
            results |= {"is": float(mean), "is_std": float(std)}
        if "pr" in self.states:
            results |= {k: float(v) for k, v in self.states["pr"].compute().items()}
        if "modes" in self.states:
            coverage = self.states["modes"].compute()
            results |= {"modes_covered": int(coverage["modes_covered"]), "mode_kl": float(coverage["kl_to_uniform"])}
        return results

    def reset(self) -> None:
        for state in self.states.values():
            state.reset()

    def score(self, batches: Iterable[torch.Tensor]) -> dict[str, float]:
        """Feed every batch, compute, reset."""
        for images in batches:
            self.update(images)
        try:
            return self.compute()
        finally:
            self.reset()
