"""Quality and mode coverage of the EMA generator on 2-D Gaussian mixtures, during and after training."""
from pathlib import Path

import lightning as L
import torch

from src.ddgan.callbacks.run_metrics import record_evaluation, write_metric_curves
from src.ddgan.mixture import mixture_metrics
from src.ddgan.plotting import plot_mixture_samples


class MixtureEvaluation(L.Callback):
    """Every `every_n_epochs` epochs and at the end: sample, score against the mixture, log, plot.

    Writes `<output_dir>/metrics.json` (latest numbers), `metrics_history.jsonl` (every evaluation),
    `<output_dir>/samples_epoch{E}.png` (`samples.png` at the end) and, at the end, `metric_curves.png`.
    Samples are drawn with a fixed seed, so epochs are comparable.
    """

    def __init__(self, output_dir: str, every_n_epochs: int = 5, num_samples: int = 10_000, seed: int = 1234):
        self.output_dir = Path(output_dir)
        self.every_n_epochs = every_n_epochs
        self.num_samples = num_samples
        self.seed = seed

    def evaluate(self, trainer: L.Trainer, module, plot_name: str) -> dict:
        data = trainer.datamodule
        rng = torch.Generator(device=module.device).manual_seed(self.seed)
        labels = module.default_labels(self.num_samples, None)  # a conditional model: sample i of mode i mod K
        samples = data.mixture.from_network(module.sample(self.num_samples, rng=rng, labels=labels).float().cpu())
        metrics = mixture_metrics(samples, data.centers, data.std,  # in the mixture's units
                                  labels=labels.cpu() if labels is not None else None)
        if trainer.is_global_zero:
            record_evaluation(self.output_dir, metrics | {"epoch": trainer.current_epoch, "iteration": module.iteration})
            title = f"T={module.schedule.num_timesteps}, iteration {module.iteration}: {metrics['modes_covered']}/{metrics['num_modes']} modes, {metrics['high_quality_fraction']:.1%} high quality"
            plot_mixture_samples(samples, data.centers, data.std, self.output_dir / plot_name, title=title)
        return metrics

    def on_train_epoch_end(self, trainer: L.Trainer, module) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs == 0 and not trainer.fast_dev_run:
            metrics = self.evaluate(trainer, module, f"samples_epoch{trainer.current_epoch + 1}.png")
            module.log_dict({f"eval/{k}": float(v) for k, v in metrics.items()}, rank_zero_only=True)

    def on_fit_end(self, trainer: L.Trainer, module) -> None:
        metrics = self.evaluate(trainer, module, "samples.png")
        if trainer.is_global_zero:
            write_metric_curves(self.output_dir)
        if trainer.logger is not None:
            trainer.logger.log_metrics({f"eval/{k}": float(v) for k, v in metrics.items()}, step=trainer.global_step)
            trainer.logger.save()
