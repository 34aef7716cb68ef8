import pytest

from src.ddgan.callbacks.iteration_budget import IterationBudget
from tests.test_module import fit, tiny_ddgan


def test_budget_stops_mid_epoch_at_the_iteration(tmp_path):
    model = tiny_ddgan()
    fit(model, tmp_path, epochs=5, iterations=4, callbacks=[IterationBudget(max_iterations=6)])
    assert model.iteration == 6  # 5 epochs of 4 would be 20


def test_budget_must_be_a_positive_integer():
    with pytest.raises(ValueError, match="max_iterations=0 is invalid"):
        IterationBudget(max_iterations=0)
