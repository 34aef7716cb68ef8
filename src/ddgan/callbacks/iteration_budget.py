"""Stop training after a number of DDGAN iterations, whatever the data set's epoch length."""
import lightning as L


class IterationBudget(L.Callback):
    """Sets trainer.should_stop once the module has run `max_iterations` iterations (None: no budget).

    An iteration is one D and one G update (trainer.max_steps would count two optimizer steps per iteration).
    The budget is the same on any data set: a folder of 300 images and one of 60,000 train equally long.
    """

    def __init__(self, max_iterations: int | None = None) -> None:
        if max_iterations is not None and (not isinstance(max_iterations, int) or max_iterations < 1):
            raise ValueError(f"callbacks.iteration_budget.max_iterations={max_iterations!r} is invalid: "
                             "use an integer >= 1, or null for no budget")
        self.max_iterations = max_iterations

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        if self.max_iterations is not None and module.iteration >= self.max_iterations:
            trainer.should_stop = True
