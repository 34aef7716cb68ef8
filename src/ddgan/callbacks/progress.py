"""A rich progress bar that shows iterations per second and the latest training losses."""
from lightning.pytorch.callbacks import RichProgressBar


class LossProgressBar(RichProgressBar):
    """RichProgressBar (it/s on the bar) plus the latest values of `metrics` from trainer.callback_metrics,
    so the module can keep logging with prog_bar=False."""

    def __init__(self, metrics: list[str] = ("train/loss_d", "train/loss_g"), leave: bool = False, **kwargs):
        super().__init__(leave=leave, **kwargs)
        self.shown_metrics = list(metrics)

    def get_metrics(self, trainer, pl_module) -> dict:
        shown = super().get_metrics(trainer, pl_module)
        for name in self.shown_metrics:
            value = trainer.callback_metrics.get(name)
            if value is not None:
                shown[name.split("/")[-1]] = f"{float(value):.3f}"
        return shown
