"""The Gaussian-denoiser baseline (strided DDPM on the VP schedule) and the trilemma report on tiny runs."""
import csv
import sys

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from src.ddgan.baselines.gaussian_denoiser import (
    EpsilonMLP,
    ddpm_loss,
    fine_schedule,
    sample_gaussian,
    strided_levels,
    train_denoiser,
)
from src.ddgan.diffusion import VPSchedule
from src.ddgan.report import budget_overrides, ddgan_sweep_command
from src.train import train
from src.trilemma import report
from tests.conftest import CONFIG_DIR, TINY_TOY


def test_strided_levels():
    assert strided_levels(1000, 4) == [1000, 750, 500, 250, 0]
    assert strided_levels(1000, 100)[:3] == [1000, 990, 980] and len(strided_levels(1000, 100)) == 101
    assert strided_levels(4, 4) == [4, 3, 2, 1, 0]
    with pytest.raises(ValueError, match="num_steps=0 must lie in 1..1000"):
        strided_levels(1000, 0)


def test_four_strided_levels_of_the_fine_schedule_are_ddgans_four_levels():
    fine, ddgan = fine_schedule(1000), VPSchedule(4)
    torch.testing.assert_close(fine.sqrt_alpha_bar[[0, 250, 500, 750, 1000]], ddgan.sqrt_alpha_bar, rtol=2e-4, atol=1e-6)


def test_unstrided_sampling_is_the_ddpm_posterior_of_the_schedule():
    """S = K: each step is q(x_t | x_{t+1}, x̂_0) of VPSchedule, with x̂_0 from the predicted noise."""
    schedule = VPSchedule(4)
    model = EpsilonMLP(hidden_dim=16, num_hidden_layers=1, time_embedding_dim=8)
    x_T = torch.randn(64, 2)
    ours = sample_gaussian(model, schedule, x_T, num_steps=4, rng=torch.Generator().manual_seed(0))
    rng, x = torch.Generator().manual_seed(0), x_T
    with torch.no_grad():
        for t in reversed(range(4)):  # x at level t + 1
            k = torch.full((64,), t + 1)
            x0_pred = (x - schedule.sigma_bar[t + 1] * model(x, k)) / schedule.sqrt_alpha_bar[t + 1]
            noise = torch.randn(x.shape, generator=rng) if t > 0 else torch.zeros_like(x)
            x = schedule.sample_posterior(x0_pred, x, torch.full((64,), t), noise=noise)
    torch.testing.assert_close(ours, x, rtol=1e-4, atol=1e-4)


def test_a_perfect_noise_predictor_has_zero_loss_and_one_step_recovers_x0():
    schedule = fine_schedule(100)
    x_0 = torch.randn(32, 2)
    noise_holder = {}

    def oracle(x_k, k):  # knows x_0, so it can return the exact noise
        a, s = schedule.sqrt_alpha_bar[k][:, None], schedule.sigma_bar[k][:, None]
        noise_holder["eps"] = (x_k - a * x_0) / s
        return noise_holder["eps"]

    assert ddpm_loss(oracle, schedule, x_0) < 1e-6
    x_T = schedule.q_sample(x_0, torch.full((32,), 100))
    torch.testing.assert_close(sample_gaussian(oracle, schedule, x_T, num_steps=1), x_0, rtol=1e-3, atol=1e-3)


def test_training_noise_is_drawn_after_the_data_from_one_generator():
    """Regression: separately seeded data and noise generators with equal seeds made ε equal the data's own
    offsets, a degenerate task (training loss far below the Bayes error)."""
    schedule, batches, inputs = fine_schedule(100), [], []
    model = EpsilonMLP(hidden_dim=8, num_hidden_layers=1, time_embedding_dim=4)
    model.register_forward_pre_hook(lambda module, args: inputs.append(args))

    def data(n: int, rng: torch.Generator) -> torch.Tensor:
        batches.append(torch.randn(n, 2, generator=rng))
        return batches[-1]

    train_denoiser(model, schedule, data, iterations=2, batch_size=256, seed=0)
    x_k, k = inputs[0]
    noise = (x_k - schedule.sqrt_alpha_bar[k][:, None] * batches[0]) / schedule.sigma_bar[k][:, None]
    assert abs(float(torch.corrcoef(torch.stack([noise[:, 0], batches[0][:, 0]]))[0, 1])) < 0.2
    assert not torch.equal(batches[0], batches[1])


def test_sweep_command_is_one_multirun_of_src_train():
    from omegaconf import OmegaConf

    ddgan = OmegaConf.create({"experiment": "gaussians25", "timesteps": [1, 2, 4, 8],
                              "overrides": ["trainer.enable_progress_bar=false"], "parallel_jobs": 1})
    command = ddgan_sweep_command(ddgan, "SWEEP", ["trainer.max_epochs=4"])
    assert command[:5] == [sys.executable, "-m", "src.train", "-m", "experiment=gaussians25"]
    assert command[5:] == ["diffusion.num_timesteps=1,2,4,8", "trainer.enable_progress_bar=false", "trainer.max_epochs=4",
                           "hydra.sweep.dir=SWEEP"]


@pytest.mark.parametrize("max_epochs, max_iterations, expected", [
    (None, 3000, ["trainer.max_epochs=6"]),  # 10 epochs of 500 iterations: cut to the budget
    (None, 6000, []),  # fits: the experiment's own max_epochs
    (None, None, []),
    (2, 3000, ["trainer.max_epochs=2"]),  # set explicitly
])
def test_time_budget_cuts_max_epochs_only_when_the_experiment_exceeds_it(max_epochs, max_iterations, expected):
    from omegaconf import OmegaConf

    ddgan = OmegaConf.create({"max_epochs": max_epochs, "max_iterations": max_iterations})
    train_cfg = OmegaConf.create({"trainer": {"max_epochs": 10}, "data": {"iterations_per_epoch": 500}})
    overrides, note = budget_overrides(ddgan, train_cfg)
    assert overrides == expected and "max_epochs" in note


def test_report_on_finished_runs_writes_figure_and_table(tmp_path, capsys):
    """Two tiny DDGAN runs laid out as a multirun (jobs 0, 1), a tiny baseline, 500 samples per model."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        for job, num_timesteps in enumerate([1, 2]):
            run = compose(config_name="train", overrides=TINY_TOY + [f"diffusion.num_timesteps={num_timesteps}"])
            with open_dict(run):
                run.paths.output_dir = str(tmp_path / "sweep" / str(job))
            train(run)
        cfg = compose(config_name="trilemma", overrides=[
            f"ddgan.sweep_dir={tmp_path / 'sweep'}", 'ddgan.overrides=["model.generator.hidden_dim=16"]',
            "baseline.num_levels=100", "baseline.iterations=30", "baseline.sample_steps=[2,10]", "ddgan.max_iterations=null",
            "evaluation.num_samples=500", "evaluation.num_threads=1"])
        rows = report(cfg, tmp_path / "report")
    assert [r["model"] for r in rows] == ["data", "DDGAN T=1", "DDGAN T=2", "Gaussian S=2", "Gaussian S=10"]
    assert [r["nfe"] for r in rows] == [None, 1, 2, 2, 10]
    assert rows[0]["modes_covered"] == 25 and rows[0]["high_quality_fraction"] > 0.95  # the data itself
    with open(tmp_path / "report" / "trilemma.csv") as f:
        table = list(csv.DictReader(f))
    assert {"model", "nfe", "modes_covered", "high_quality_fraction", "mode_kl", "seconds_per_10k"} <= set(table[0])
    assert all(float(r["seconds_per_10k"]) > 0 for r in table[1:])
    assert (tmp_path / "report" / "trilemma.png").stat().st_size > 10_000
    saved = torch.load(tmp_path / "report" / "gaussian_denoiser" / "model.pt", weights_only=True)
    assert saved["settings"]["hidden_dim"] == 16 and saved["iterations"] == 30  # the runs' MLP width
    printed = capsys.readouterr().out
    assert "| DDGAN T=2 | 2 |" in printed and "| Gaussian S=10 | 10 |" in printed
