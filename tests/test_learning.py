"""Learning checks (slow, `make test-slow`): the default image experiment learns digit stacks in a few hundred
iterations on a CPU."""
import json

import pytest

from src.train import train


@pytest.mark.slow
def test_stacked_digits_learns_hundreds_of_modes_in_its_first_300_iterations(compose, tmp_path):
    overrides = ["experiment=stacked_digits", "callbacks.iteration_budget.max_iterations=300",
                 "model.lr_decay_iterations=2100",  # the default run's first 300 iterations, not a schedule squeezed into 300
                 "callbacks.generative_metrics.every_n_iterations=0", "callbacks.generative_metrics.final_num_samples=1000",
                 "metrics.names=[fid,modes]", "trainer.enable_progress_bar=false"]
    train(compose(overrides, tmp_path))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["iteration"] == 300
    # 1,000 samples of perfect data cover ~632 modes; an untrained generator covers a handful
    assert metrics["modes_covered"] >= 100 and metrics["mode_kl"] < 3.0 and metrics["fid"] < 1000
