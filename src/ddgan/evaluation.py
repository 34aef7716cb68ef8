"""Sample quality against real data: FID, Inception Score, improved precision/recall (k = 3) and StackedMNIST
mode coverage, streamed over per-sample-seeded batches and scored against a cached real-data reference.

Shared by the training callback (src/ddgan/callbacks/generative_metrics.py) and `python -m src.evaluate`: both
read their settings from the `metrics` config node (MetricSettings; defaults in conf/metrics/default.yaml) and build
their scorer with build_sample_quality.
Both sides travel as uint8 (N, C, H, W), as if saved to PNG, so a checkpoint scored with seed S and the npz that
`src.sample seed=S` writes from it give the same numbers.
"""
import dataclasses
import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from src.ddgan.data.datamodule import RandomHorizontalFlip
from src.ddgan.metrics import (
    DigitClassifier,
    DigitFeatures,
    FeatureExtractor,
    FrechetDistance,
    InceptionScore,
    ModeCoverage,
    PrecisionRecall,
    ReferenceSet,
    extract_features,
    gaussian_statistics,
    load_digit_classifier,
    load_digit_splits,
    load_or_compute_reference,
    predict_stacked_modes,
    save_digit_classifier,
    train_digit_classifier,
)
from src.ddgan.metrics.conditional import ConditionalScores, class_statistics
from src.ddgan.metrics.extractors import FEATURE_EXTRACTORS, build_feature_extractor
from src.ddgan.metrics.features import to_uint8
from src.ddgan.metrics.protocol import (
    IS_PROTOCOLS,
    jpeg_roundtrip,
    load_statistics,
    validate_is_protocol,
    validate_jpeg_quality,
)
from src.ddgan.module import DDGAN
from src.ddgan.precision import autocast, validate_precision
from src.ddgan.sampling import draw_samples, index_labels

log = logging.getLogger(__name__)
T = TypeVar("T")

# FID | Inception Score | precision & recall | modes covered & KL | conditional accuracy & intra-class FID
METRICS = ("fid", "is", "pr", "modes", "conditional")
RUN_CLASSIFIER_FILE = "digit_classifier.pt"  # a classifier trained for a run is saved in its output_dir
# datamodule settings that change how images are served, not which images the train set holds
LOADER_SETTINGS = frozenset({"batch_size_per_device", "num_workers", "pin_memory", "persistent_workers",
                             "prefetch_factor", "download", "hflip"})


def validate_metrics(metrics: Iterable[str]) -> list[str]:
    """The metric names as a list; ValueError naming any unknown one."""
    metrics = list(metrics)
    unknown = [name for name in metrics if name not in METRICS]
    if unknown or not metrics:
        raise ValueError(f"metrics.names={metrics} is invalid: choose one or more of {list(METRICS)}")
    return metrics


def default_metric_names(feature_extractor: str) -> list[str]:
    """metrics.names=null: FID, IS and precision/recall, and mode coverage next to digit features."""
    return ["fid", "is", "pr"] + (["modes"] if feature_extractor == "digits" else [])


# ---- the settings: the `metrics` config node ---------------------------------------------------
@dataclasses.dataclass
class MetricSettings:
    """The `metrics` node, validated: what to measure (names), with which features, on how many samples, against
    which reference, at which precision. Its defaults stand in conf/metrics/default.yaml only (no field has one here).
    names and pr_feature_extractor hold the resolved choices (null in the config: see default_metric_names and
    pr_extractor_name)."""

    names: list[str]
    num_samples: int
    num_real: int
    batch_size_per_device: int
    seed: int
    precision: str
    feature_extractor: str
    pr_feature_extractor: str
    classifier_path: str | None
    train_missing_classifier: bool
    classifier_dataset: str
    classifier_data_dir: str | None
    classifier_epochs: int
    inception_weights_path: str | None
    vgg16_weights_path: str | None
    reference_cache_dir: str
    dataset_name: str | None
    pr_k: int
    is_splits: int
    is_protocol: str
    jpeg_quality: int | None

    def __post_init__(self) -> None:
        if self.feature_extractor not in FEATURE_EXTRACTORS:
            raise ValueError(f"feature_extractor={self.feature_extractor!r} is invalid: "
                             f"choose one of {list(FEATURE_EXTRACTORS)}")
        self.names = validate_metrics(self.names if self.names is not None
                                      else default_metric_names(self.feature_extractor))
        self.pr_feature_extractor = pr_extractor_name(self.feature_extractor, self.pr_feature_extractor)
        self.precision = validate_precision(self.precision, key="metrics.precision")
        self.is_protocol = validate_is_protocol(self.is_protocol)
        self.jpeg_quality = validate_jpeg_quality(self.jpeg_quality)

    @classmethod
    def from_config(cls, node: Mapping) -> "MetricSettings":
        """The settings of a `metrics` node (a DictConfig or a dict); ValueError naming an unknown or missing key."""
        values = dict(node.items())
        fields = [field.name for field in dataclasses.fields(cls)]
        if unknown := sorted(set(values) - set(fields)):
            raise ValueError(f"metrics.{unknown[0]} is not a setting of the metrics node: choose from {fields}")
        if missing := [name for name in fields if name not in values]:
            raise ValueError(f"the metrics node lacks {missing} (conf/metrics/default.yaml holds every setting)")
        return cls(**{name: list(value) if name == "names" and value is not None else value
                      for name, value in values.items()})

    @property
    def needs_classifier(self) -> bool:
        return "digits" in (self.feature_extractor, self.pr_feature_extractor) or bool({"modes", "conditional"} & set(self.names))


# what a run's GenerativeMetrics callback held besides the metric settings (checkpoints written before the node)
CALLBACK_SCHEDULE = frozenset({"_target_", "output_dir", "every_n_epochs", "every_n_iterations", "final_num_samples"})


def stored_metric_settings(run_config: Mapping | None) -> dict:
    """The `metrics` node of a checkpoint's stored run config ({} when the run measured no sample quality).

    Compatibility path, for checkpoints written before the node existed: their settings stood in the run's
    GenerativeMetrics callback (the callbacks entry whose _target_ ends in .GenerativeMetrics, the metric list under
    `metrics`); they are read from there, without the callback's schedule."""
    run_config = run_config or {}
    if isinstance(run_config.get("metrics"), Mapping):
        return dict(run_config["metrics"])
    callbacks = run_config.get("callbacks") or {}
    legacy = next((c for c in callbacks.values() if str((c or {}).get("_target_", "")).endswith(".GenerativeMetrics")),
                  {})
    return {("names" if key == "metrics" else key): value for key, value in legacy.items()
            if key not in CALLBACK_SCHEDULE}


# ---- generated and real images -----------------------------------------------------------------
def rank_indices(num_samples: int, rank: int, world_size: int) -> range:
    """The contiguous share of sample indices 0..num_samples-1 that `rank` draws (rank-major = index order)."""
    return range(rank * num_samples // world_size, (rank + 1) * num_samples // world_size)


def generated_batches(model: DDGAN, indices: Sequence[int], *, batch_size: int, seed: int, use_ema: bool = True,
                      precision: str = "32") -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """(uint8 samples (n, C, H, W), their class labels (n,) or None) of `model`, batch_size at a time; sample i depends
    only on (seed, i) and, for a conditional model, has class i mod num_classes. precision=bf16: the generator runs
    under bf16 autocast."""
    for start in range(0, len(indices), batch_size):
        batch = indices[start:start + batch_size]
        labels = index_labels(batch, getattr(model, "num_classes", 0))
        yield to_uint8(draw_samples(model, batch, seed=seed, use_ema=use_ema, precision=precision, labels=labels)), labels


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


def load_npz_labels(path: str | Path) -> torch.Tensor | None:
    """The class labels (N,) a conditional model's samples were drawn for (src.sample's `labels`), None if absent."""
    with np.load(path) as archive:
        return torch.from_numpy(archive["labels"]).long() if "labels" in archive.files else None


def reference_name(datamodule: L.LightningDataModule, num_real: int) -> str:
    """Cache name of the first num_real train images: datamodule class + digest of its content settings."""
    settings = {key: value for key, value in sorted(dict(datamodule.hparams).items()) if key not in LOADER_SETTINGS}
    digest = hashlib.sha1(repr(settings).encode()).hexdigest()[:8]
    return f"{type(datamodule).__name__}-{digest}-first{num_real}"


def real_batches(datamodule: L.LightningDataModule, num_real: int, *, batch_size: int,
                 labels: bool = False) -> Iterator[torch.Tensor | tuple[torch.Tensor, torch.Tensor]]:
    """uint8 batches (n, C, H, W) of the first num_real train images, in order and never flipped (labels: with their
    class labels (n,))."""
    if getattr(datamodule, "train_dataset", None) is None:
        datamodule.prepare_data()
        datamodule.setup("fit")
    dataset = datamodule.train_dataset
    if isinstance(dataset, RandomHorizontalFlip):
        dataset = dataset.dataset
    subset = Subset(dataset, range(min(num_real, len(dataset))))
    for images, classes in DataLoader(subset, batch_size=batch_size, num_workers=getattr(datamodule, "num_workers", 0)):
        yield (to_uint8(images), classes) if labels else to_uint8(images)


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
    """FID, IS, precision/recall, mode coverage and (class-conditional models) conditional accuracy and intra-class
    FID of generated uint8 images (N, C, H, W), fed batch by batch (with their class labels for `conditional`).

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
        class_extractor: FeatureExtractor | None = None,  # conditional: features + logits whose arg-max is the class
        num_classes: int = 0,  # conditional: the model's classes
        class_reference: dict | None = None,  # conditional: real GaussianStatistics per class (intra-class FID)
    ) -> None:
        self.metrics = validate_metrics(metrics)
        self.reference = reference  # kept: src.evaluate save_statistics= writes its statistics
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
        if "conditional" in self.metrics and (class_extractor is None or not num_classes):
            raise ValueError("metric `conditional` needs a class-conditional model (model.num_classes > 0) and the "
                             "data set's classifier (a digit classifier: feature_extractor=digits or classifier_path=...)")
        self.class_extractor = class_extractor
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
        if "conditional" in self.metrics:
            self.states["conditional"] = ConditionalScores(num_classes=num_classes, real_classes=class_reference)

    def networks(self) -> list[torch.nn.Module]:
        nets = [self.extractor, self.pr_extractor, self.classifier, self.class_extractor]
        return [net for net in dict.fromkeys(nets) if net is not None]

    def describe(self) -> dict:
        """What metrics.json records next to the numbers: each metric's features, the IS protocol, JPEG or not."""
        used = {"fid": self.extractor, "is": self.extractor, "pr": self.pr_extractor}
        record = {"feature_extractor": self.extractor.name if self.extractor is not None else None,
                  "metric_features": {name: used[name].name for name in self.metrics if name in used}
                  | {name: "digit-classifier" for name in ("modes", "conditional") if name in self.metrics},
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
    def update(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        """Add generated uint8 images (N, C, H, W), with the classes they were generated for (N,) (conditional)."""
        if "conditional" in self.states and labels is None:
            raise ValueError("metric `conditional` needs the class labels the samples were generated for")
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
            if "conditional" in self.states:
                class_features, class_logits = self.class_extractor.features_and_logits(images)
        if "fid" in self.states:
            self.states["fid"].update(features.float(), real=False)
        if "is" in self.states:
            self.states["is"].update(logits.float())
        if "pr" in self.states:
            self.states["pr"].update(pr_features.float(), real=False)
        if "modes" in self.states:
            self.states["modes"].update(modes)
        if "conditional" in self.states:
            self.states["conditional"].update(class_features.float(), class_logits.argmax(dim=1), labels.to(device))

    def compute(self) -> dict[str, float]:
        """{fid, is, is_std, precision, recall, modes_covered, mode_kl, conditional_accuracy, intra_class_fid} (those
        asked for), over all ranks."""
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
        if "conditional" in self.states:
            results |= self.states["conditional"].compute()
        return results

    def reset(self) -> None:
        for state in self.states.values():
            state.reset()

    def score(self, batches: Iterable[torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]]) -> dict[str, float]:
        """Feed every batch (images, or (images, labels)), compute, reset."""
        for batch in batches:
            self.update(*(batch if isinstance(batch, tuple) else (batch,)))
        try:
            return self.compute()
        finally:
            self.reset()


# ---- the one builder of the scorer -------------------------------------------------------------
def run_here(name: str, make: Callable[[], T]) -> T:
    """make() at once: the single-process `once` of build_sample_quality (the callback's runs rank zero first)."""
    return make()


def digit_classifier_for(settings: MetricSettings, run_dir: str | Path | None, *, resolution: int,
                         train_missing: bool = False, once=run_here) -> DigitClassifier | None:
    """The digit classifier the settings need (None when none): the run's own <run_dir>/digit_classifier.pt, else
    settings.classifier_path, else (train_missing and settings.train_missing_classifier) one trained into run_dir."""
    if not settings.needs_classifier:
        return None

    def find_or_train() -> Path:
        path = find_digit_classifier(settings.classifier_path, run_dir)
        if path is not None:
            return path
        if not (train_missing and settings.train_missing_classifier and run_dir is not None):
            where = f" nor in {run_dir}" if run_dir is not None else ""
            train = " or set metrics.train_missing_classifier=true" if train_missing else ""
            raise FileNotFoundError(f"feature_extractor=digits and metric modes need a digit classifier: none at "
                                    f"metrics.classifier_path={settings.classifier_path}{where}; give "
                                    f"metrics.classifier_path=<.pt> (python -m src.train_classifier writes one){train}")
        return train_run_classifier(Path(run_dir) / RUN_CLASSIFIER_FILE, resolution=resolution,
                                    dataset=settings.classifier_dataset, data_dir=settings.classifier_data_dir,
                                    epochs=settings.classifier_epochs)

    return load_digit_classifier(once("digit_classifier", find_or_train))


def image_reference(extractor: FeatureExtractor, images: torch.Tensor, batch_size: int) -> ReferenceSet:
    """The reference of real images given as a tensor (not cached)."""
    features, _ = extract_features(extractor, images, batch_size=batch_size)
    return ReferenceSet(gaussian_statistics(features), features)


def build_sample_quality(
    settings: MetricSettings,
    *,
    sample_shape: Sequence[int],  # (C, H, W) of the images scored
    device: torch.device | str,
    run_dir: str | Path | None = None,  # where the run's own digit classifier is (or is trained into)
    train_missing_classifier: bool = False,  # train one into run_dir when none is found (training only)
    datamodule: L.LightningDataModule | None = None,  # the real side: its first num_real train images (cached) ...
    reference_images: torch.Tensor | None = None,  # ... or these uint8 images ...
    statistics_file: str | Path | None = None,  # ... or FID statistics (mu, sigma) from a file
    fid_reference: bool = False,  # also compute FID's reference when fid is not measured (to save its statistics)
    num_classes: int = 0,  # the classes of a conditional model (metric `conditional`)
    once: Callable[[str, Callable[[], T]], T] = run_here,  # once(name, make): the callback's rank-zero-first
) -> tuple[SampleQuality, int | None]:
    """The scorer of `settings` (states, extractors, classifier, real references) on `device`, and num_real (None
    when the reference is a statistics file)."""
    names = settings.names
    if statistics_file is not None and "pr" in names:
        raise ValueError(f"reference={statistics_file} holds FID statistics (mu, sigma) only: precision/recall need "
                         "images; drop pr from metrics.names")
    classifier = digit_classifier_for(settings, run_dir, resolution=sample_shape[-1],
                                      train_missing=train_missing_classifier, once=once)
    needs = list(names) + (["fid"] if fid_reference and "fid" not in names else [])
    # rank zero fetches the weights (or raises with the fix), the others find them cached
    extractor, pr_extractor = once("feature_extractor", lambda: build_extractors(
        settings.feature_extractor, needs, pr_feature_extractor=settings.pr_feature_extractor,
        digits=lambda: DigitFeatures(classifier, num_channels=sample_shape[0]),
        inception_weights_path=settings.inception_weights_path, vgg16_weights_path=settings.vgg16_weights_path,
        is_protocol=settings.is_protocol))
    for net in (extractor, pr_extractor):
        if net is not None:
            net.to(device)
    num_real = settings.num_real
    if statistics_file is not None:
        fid = ReferenceSet(load_statistics(statistics_file, extractor.num_features)) if "fid" in needs else None
        pr, num_real = None, None
    elif reference_images is not None:
        batch = settings.batch_size_per_device
        fid = image_reference(extractor, reference_images, batch) if "fid" in needs else None
        pr = image_reference(pr_extractor, reference_images, batch) if "pr" in needs else None
        num_real = len(reference_images)
    else:
        name = settings.dataset_name or reference_name(datamodule, num_real)

        def cached(net: FeatureExtractor | None, metric: str) -> ReferenceSet | None:
            return once("reference", lambda: reference_for(
                net, [metric] if metric in needs else [], cache_dir=settings.reference_cache_dir, dataset_name=name,
                real_images=lambda: real_batches(datamodule, num_real, batch_size=settings.batch_size_per_device)))

        fid, pr = cached(extractor, "fid"), cached(pr_extractor, "pr")
    class_extractor, class_reference = None, None
    if "conditional" in names and classifier is not None:
        class_extractor = extractor if isinstance(extractor, DigitFeatures) else \
            DigitFeatures(classifier, num_channels=sample_shape[0]).to(device)
        if datamodule is not None and not getattr(datamodule, "model_classes", 0):
            raise ValueError("metric `conditional` scores against the data's labels: set data.conditional=true")
        class_reference = class_references(class_extractor, datamodule, num_real, settings.batch_size_per_device) \
            if datamodule is not None else None
    quality = SampleQuality(extractor if {"fid", "is"} & set(names) else None, names, reference=fid,
                            classifier=classifier, pr_k=settings.pr_k, is_splits=settings.is_splits,
                            precision=settings.precision, pr_extractor=pr_extractor, pr_reference=pr,
                            jpeg_quality=settings.jpeg_quality, is_protocol=settings.is_protocol,
                            class_extractor=class_extractor, num_classes=num_classes, class_reference=class_reference)
    return quality.to(device), num_real


def class_references(extractor: FeatureExtractor, datamodule: L.LightningDataModule, num_real: int,
                     batch_size: int) -> dict:
    """Real Gaussian statistics per class of the first num_real train images, in `extractor`'s features (not cached:
    digit features of a labelled set take seconds)."""
    device = next(extractor.parameters()).device
    features, labels = [], []
    for images, classes in real_batches(datamodule, num_real, batch_size=batch_size, labels=True):
        features.append(extractor.features_and_logits(images.to(device))[0].float().cpu())
        labels.append(classes)
    return class_statistics(torch.cat(features), torch.cat(labels))
