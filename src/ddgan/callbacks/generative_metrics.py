"""FID, IS, precision/recall and mode coverage of the EMA generator every N epochs and at the end of training."""
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import lightning as L

from src.ddgan.callbacks.run_metrics import record_evaluation, write_metric_curves
from src.ddgan.evaluation import (
    RUN_CLASSIFIER_FILE,
    SampleQuality,
    build_extractors,
    find_digit_classifier,
    generated_batches,
    pr_extractor_name,
    rank_indices,
    real_batches,
    reference_for,
    reference_name,
    train_run_classifier,
    validate_metrics,
)
from src.ddgan.metrics import DigitFeatures, load_digit_classifier
from src.ddgan.metrics.extractors import FEATURE_EXTRACTORS
from src.ddgan.metrics.protocol import validate_is_protocol, validate_jpeg_quality
from src.ddgan.precision import validate_precision

log = logging.getLogger(__name__)
T = TypeVar("T")


def rank_zero_first(trainer: L.Trainer, name: str, make: Callable[[], T]) -> T:
    """make() on rank zero, then, after a barrier, on the other ranks: what it writes to disk is written once."""
    result = make() if trainer.is_global_zero else None
    trainer.strategy.barrier(name)
    return result if trainer.is_global_zero else make()


class GenerativeMetrics(L.Callback):
    """Samples `num_samples` images from the EMA generator (sample i seeded by (seed, i), each rank its share),
    scores them against the first `num_real` train images and logs `eval/<metric>`; rank zero merges the numbers
    into `<output_dir>/metrics.json`, appends them to `metrics_history.jsonl` and, at the end of training, draws
    `metric_curves.png`.

    At fit start (before any training step) it builds the feature extractor, so missing Inception weights fail
    at once; for `feature_extractor="digits"` it uses the run's own `<output_dir>/digit_classifier.pt`, else
    `classifier_path`, else trains one into the run directory (`train_missing_classifier`). The real reference
    is computed once per (data set, extractor) on rank zero, cached under `reference_cache_dir`, and loaded by
    every rank after a barrier.
    """

    def __init__(
        self,
        *,
        output_dir: str,  # the run directory: metrics.json, and digit_classifier.pt when one is trained here
        every_n_epochs: int = 10,  # evaluate after every N-th epoch (0: only at the end of fit)
        every_n_iterations: int = 0,  # also evaluate after every N-th iteration (0: never mid-epoch)
        final_num_samples: int | None = None,  # generated images of the evaluation at the end of fit (None: num_samples)
        precision: str = "32",  # 32 | bf16: the generator and the feature networks under bf16 autocast
        metrics: Sequence[str] = ("fid", "is", "pr"),  # any of fid | is | pr | modes
        num_samples: int = 50_000,  # generated images per evaluation, over all ranks
        num_real: int = 50_000,  # the first num_real train images form the reference
        batch_size_per_device: int = 500,  # samples per generator call on each rank
        seed: int = 1234,  # sample i depends only on (seed, i): evaluations are comparable
        feature_extractor: str = "inception",  # inception | digits: FID and IS
        pr_feature_extractor: str | None = None,  # precision/recall (None: vgg16 next to inception, else the same)
        classifier_path: str | None = None,  # digits / modes: a src.train_classifier checkpoint
        train_missing_classifier: bool = True,  # digits / modes: train one when no classifier file exists
        classifier_dataset: str = "digits",  # ... on digits (scikit-learn, offline) or mnist
        classifier_data_dir: str | None = None,  # ... mnist: the folder holding MNIST/
        classifier_epochs: int = 15,  # ... passes over the classifier's training split
        inception_weights_path: str | None = None,  # inception: a weights file instead of the torch hub cache
        vgg16_weights_path: str | None = None,  # vgg16: a weights file instead of the torch hub cache
        reference_cache_dir: str = "data/reference_cache",  # real-feature cache, shared between runs
        dataset_name: str | None = None,  # cache name of the real data (None: datamodule class + settings digest)
        pr_k: int = 3,  # k of the precision / recall k-NN manifolds
        is_splits: int = 10,  # IS chunks
        is_protocol: str = "salimans",  # salimans (1008 unbiased logits, is_splits) | released (1000 logits, 1 split)
        jpeg_quality: int | None = None,  # JPEG-compress the samples first, as the released code (None: lossless)
    ) -> None:
        self.output_dir = Path(output_dir)
        self.every_n_epochs, self.every_n_iterations = every_n_epochs, every_n_iterations
        self.final_num_samples = final_num_samples or num_samples
        self.precision = validate_precision(precision)
        self.metrics = validate_metrics(metrics)
        self.num_samples, self.num_real = num_samples, num_real
        self.batch_size_per_device, self.seed = batch_size_per_device, seed
        if feature_extractor not in FEATURE_EXTRACTORS:
            raise ValueError(f"feature_extractor={feature_extractor!r} is invalid: "
                             f"choose one of {list(FEATURE_EXTRACTORS)}")
        self.feature_extractor = feature_extractor
        self.pr_feature_extractor = pr_extractor_name(feature_extractor, pr_feature_extractor)
        self.vgg16_weights_path = vgg16_weights_path
        self.is_protocol, self.jpeg_quality = validate_is_protocol(is_protocol), validate_jpeg_quality(jpeg_quality)
        self.classifier_path = classifier_path
        self.train_missing_classifier = train_missing_classifier
        self.classifier_dataset, self.classifier_data_dir = classifier_dataset, classifier_data_dir
        self.classifier_epochs = classifier_epochs
        self.inception_weights_path = inception_weights_path
        self.reference_cache_dir, self.dataset_name = reference_cache_dir, dataset_name
        self.pr_k, self.is_splits = pr_k, is_splits
        self.quality: SampleQuality | None = None
        self.last_iteration: int | None = None  # iteration of the latest evaluation (checkpointed)
        self.last_num_samples: int | None = None  # its number of samples (checkpointed)

    # ---- set-up at fit start: extractor, classifier, reference ---------------------------------
    def needs_classifier(self) -> bool:
        return "digits" in (self.feature_extractor, self.pr_feature_extractor) or "modes" in self.metrics

    def classifier_file(self, trainer: L.Trainer, image_size: int) -> Path:
        """The run's digit classifier file; rank zero trains one into output_dir when none exists."""

        def find_or_train() -> Path:
            path = find_digit_classifier(self.classifier_path, self.output_dir)
            if path is not None:
                return path
            if not self.train_missing_classifier:
                raise FileNotFoundError(f"no digit classifier at {self.classifier_path} nor in {self.output_dir}: "
                                        "train one with `python -m src.train_classifier` or set "
                                        "callbacks.generative_metrics.train_missing_classifier=true")
            return train_run_classifier(self.output_dir / RUN_CLASSIFIER_FILE, resolution=image_size,
                                        dataset=self.classifier_dataset, data_dir=self.classifier_data_dir,
                                        epochs=self.classifier_epochs)

        return rank_zero_first(trainer, "digit_classifier", find_or_train)

    def setup_quality(self, trainer: L.Trainer, module: L.LightningModule) -> SampleQuality:
        datamodule = trainer.datamodule
        if datamodule is None:
            raise ValueError("GenerativeMetrics takes the real data from a datamodule: "
                             "trainer.fit(model, datamodule=...)")
        classifier = None
        if self.needs_classifier():
            classifier = load_digit_classifier(self.classifier_file(trainer, datamodule.image_size))
        # rank zero fetches the weights (or raises with the fix), the others find them cached
        extractor, pr_extractor = rank_zero_first(trainer, "feature_extractor", lambda: build_extractors(
            self.feature_extractor, self.metrics, pr_feature_extractor=self.pr_feature_extractor,
            digits=lambda: DigitFeatures(classifier, num_channels=datamodule.num_channels),
            inception_weights_path=self.inception_weights_path, vgg16_weights_path=self.vgg16_weights_path,
            is_protocol=self.is_protocol))
        name = self.dataset_name or reference_name(datamodule, self.num_real)

        def reference(net, metrics):
            return rank_zero_first(trainer, "reference", lambda: reference_for(
                net and net.to(module.device), metrics, cache_dir=self.reference_cache_dir, dataset_name=name,
                real_images=lambda: real_batches(datamodule, self.num_real, batch_size=self.batch_size_per_device)))

        fid_reference = reference(extractor, [m for m in self.metrics if m == "fid"])
        pr_reference = reference(pr_extractor, [m for m in self.metrics if m == "pr"])
        quality = SampleQuality(extractor, self.metrics, reference=fid_reference, classifier=classifier,
                                pr_k=self.pr_k, is_splits=self.is_splits, precision=self.precision,
                                pr_extractor=pr_extractor, pr_reference=pr_reference, jpeg_quality=self.jpeg_quality,
                                is_protocol=self.is_protocol)
        return quality.to(module.device)

    def on_fit_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if not trainer.fast_dev_run:
            self.quality = self.setup_quality(trainer, module)

    # ---- evaluation ----------------------------------------------------------------------------
    def evaluate(self, trainer: L.Trainer, module: L.LightningModule, epochs_done: int,
                 num_samples: int | None = None) -> dict[str, float]:
        num_samples = num_samples or self.num_samples
        indices = rank_indices(num_samples, trainer.global_rank, trainer.world_size)
        batches = generated_batches(module, indices, batch_size=self.batch_size_per_device, seed=self.seed,
                                    precision=self.precision)
        results = self.quality.score(batches)
        self.last_iteration, self.last_num_samples = module.iteration, num_samples
        if trainer.is_global_zero:
            record_evaluation(self.output_dir, results | {
                "epoch": epochs_done, "iteration": module.iteration, "num_samples": num_samples,
                "num_real": self.num_real, "inference_precision": self.precision} | self.quality.describe())
            log.info(f"iteration {module.iteration}: " + ", ".join(f"{k} {v:.4g}" for k, v in results.items()))
        return {f"eval/{k}": float(v) for k, v in results.items()}

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self.quality is None or self.every_n_epochs <= 0 or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        module.log_dict(self.evaluate(trainer, module, trainer.current_epoch + 1), sync_dist=True)  # equal on all ranks

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        if self.quality is None or self.every_n_iterations <= 0 or module.iteration % self.every_n_iterations:
            return
        module.log_dict(self.evaluate(trainer, module, trainer.current_epoch), sync_dist=True)

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        """The final evaluation (unless the last epoch had one), still on the training devices, unlike on_fit_end;
        then the metric curves."""
        if self.quality is None:
            return
        if (self.last_iteration, self.last_num_samples) != (module.iteration, self.final_num_samples):
            logged = self.evaluate(trainer, module, trainer.current_epoch, self.final_num_samples)
            for logger in trainer.loggers:
                logger.log_metrics(logged, step=trainer.global_step)
                logger.save()
        if trainer.is_global_zero:
            write_metric_curves(self.output_dir)

    # ---- checkpointed state: an already evaluated final iteration is not evaluated again on resume --
    def state_dict(self) -> dict:
        return {"last_iteration": self.last_iteration, "last_num_samples": self.last_num_samples}

    def load_state_dict(self, state_dict: dict) -> None:
        self.last_iteration = state_dict.get("last_iteration")
        self.last_num_samples = state_dict.get("last_num_samples")
