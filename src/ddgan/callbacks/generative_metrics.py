"""FID, IS, precision/recall and mode coverage of the EMA generator every N epochs and at the end of training."""
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import lightning as L

from src.ddgan.callbacks.run_metrics import record_evaluation, write_metric_curves
from src.ddgan.evaluation import MetricSettings, SampleQuality, build_sample_quality, generated_batches, rank_indices

log = logging.getLogger(__name__)
T = TypeVar("T")


def rank_zero_first(trainer: L.Trainer, name: str, make: Callable[[], T]) -> T:
    """make() on rank zero, then, after a barrier, on the other ranks: what it writes to disk is written once."""
    result = make() if trainer.is_global_zero else None
    trainer.strategy.barrier(name)
    return result if trainer.is_global_zero else make()


class GenerativeMetrics(L.Callback):
    """Samples `metrics.num_samples` images from the EMA generator (sample i seeded by (metrics.seed, i), each rank
    its share), scores them against the first `metrics.num_real` train images and logs `eval/<metric>`; rank zero
    merges the numbers into `<output_dir>/metrics.json`, appends them to `metrics_history.jsonl` and, at the end of
    training, draws `metric_curves.png`. `metrics` is the config node of the settings (MetricSettings); this
    callback adds only when to evaluate.

    At fit start (before any training step) it builds the scorer (build_sample_quality), so missing Inception
    weights fail at once; with digit features or modes it uses the run's own `<output_dir>/digit_classifier.pt`,
    else `metrics.classifier_path`, else trains one into the run directory (`metrics.train_missing_classifier`).
    The real reference is computed once per (data set, extractor) on rank zero, cached under
    `metrics.reference_cache_dir`, and loaded by every rank after a barrier.
    """

    def __init__(
        self,
        *,
        output_dir: str,  # the run directory: metrics.json, and digit_classifier.pt when one is trained here
        metrics: Mapping,  # the `metrics` node: what to measure, with which features, how many samples, ...
        every_n_epochs: int,  # evaluate after every N-th epoch (0: only at the end of fit)
        every_n_iterations: int,  # also evaluate after every N-th iteration (0: never mid-epoch)
        final_num_samples: int | None,  # generated images of the evaluation at the end of fit (None: num_samples)
    ) -> None:
        self.output_dir = Path(output_dir)
        self.settings = MetricSettings.from_config(metrics)
        self.every_n_epochs, self.every_n_iterations = every_n_epochs, every_n_iterations
        self.final_num_samples = final_num_samples or self.settings.num_samples
        self.quality: SampleQuality | None = None
        self.last_iteration: int | None = None  # iteration of the latest evaluation (checkpointed)
        self.last_num_samples: int | None = None  # its number of samples (checkpointed)

    # ---- set-up at fit start: extractor, classifier, reference ---------------------------------
    def setup_quality(self, trainer: L.Trainer, module: L.LightningModule) -> SampleQuality:
        if trainer.datamodule is None:
            raise ValueError("GenerativeMetrics takes the real data from a datamodule: "
                             "trainer.fit(model, datamodule=...)")
        quality, _ = build_sample_quality(
            self.settings, sample_shape=tuple(module.sample_shape), device=module.device, run_dir=self.output_dir,
            train_missing_classifier=True, datamodule=trainer.datamodule, num_classes=getattr(module, "num_classes", 0),
            once=lambda name, make: rank_zero_first(trainer, name, make))
        return quality

    def on_fit_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if not trainer.fast_dev_run:
            self.quality = self.setup_quality(trainer, module)

    # ---- evaluation ----------------------------------------------------------------------------
    def evaluate(self, trainer: L.Trainer, module: L.LightningModule, epochs_done: int,
                 num_samples: int | None = None) -> dict[str, float]:
        settings = self.settings
        num_samples = num_samples or settings.num_samples
        indices = rank_indices(num_samples, trainer.global_rank, trainer.world_size)
        batches = generated_batches(module, indices, batch_size=settings.batch_size_per_device, seed=settings.seed,
                                    precision=settings.precision)
        results = self.quality.score(batches)
        self.last_iteration, self.last_num_samples = module.iteration, num_samples
        if trainer.is_global_zero:
            record_evaluation(self.output_dir, results | {
                "epoch": epochs_done, "iteration": module.iteration, "num_samples": num_samples,
                "num_real": settings.num_real, "inference_precision": settings.precision} | self.quality.describe())
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
