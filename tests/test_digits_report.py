"""The image trilemma report (src.digits_report) on tiny stacked-digits runs, its ε-network and its iteration budget."""
import csv

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict

from src.ddgan.baselines.gaussian_denoiser import EpsilonGenerator, ddpm_loss, fine_schedule
from src.ddgan.report import budget_overrides, run_iterations, run_report
from src.digits_report import report
from src.train import train
from tests.conftest import CONFIG_DIR

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_DIGITS = [  # 16 px, 3 iterations per epoch
    "data.image_size=16", "model.sample_shape=[3,16,16]", "model.generator.base_channels=8", "model.generator.channel_mult=[1,2]",
    "model.generator.z_emb_dim=16", "model.nz=8", "model.discriminator.base_channels=8", "model.discriminator.t_emb_dim=16",
    "data.num_images=48", "data.batch_size_per_device=16", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
    "logger=csv",
]


class Recorder(torch.nn.Module):
    """A stand-in generator G(x, t, z) that records its inputs and returns x."""

    nz = 5

    def forward(self, x, t, z):
        self.inputs = (x, t, z)
        return x


def test_epsilon_generator_passes_the_level_and_a_zero_latent():
    generator = Recorder()
    x_k, k = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 500, 1000])
    assert EpsilonGenerator(generator)(x_k, k) is x_k
    x, t, z = generator.inputs
    assert x is x_k and torch.equal(t, k)
    assert z.shape == (4, 5) and not z.any()


def test_epsilon_generator_refuses_a_tanh_output():
    generator = Recorder()
    generator.final_tanh = True
    with pytest.raises(ValueError, match="final_tanh=True"):
        EpsilonGenerator(generator)


def test_ddpm_loss_on_images_sums_over_every_pixel():
    """An image model and the same model on flattened images give the same loss (same k and ε)."""
    schedule, x_0 = fine_schedule(100), torch.randn(8, 3, 4, 4)

    def image_model(x_k, k):
        return torch.tanh(x_k * 3)

    def flat_model(x_k, k):
        return image_model(x_k.view(-1, 3, 4, 4), k).flatten(1)

    image_loss = ddpm_loss(image_model, schedule, x_0, torch.Generator().manual_seed(0))
    flat_loss = ddpm_loss(flat_model, schedule, x_0.flatten(1), torch.Generator().manual_seed(0))
    torch.testing.assert_close(image_loss, flat_loss)


EPOCHS = {"trainer": {"max_epochs": 8, "max_steps": -1}, "data": {"num_images": 12800, "batch_size_per_device": 64}}
BUDGET = {"trainer": {"max_epochs": -1, "max_steps": -1}, "data": {"num_images": 12800, "batch_size_per_device": 64},
          "callbacks": {"iteration_budget": {"_target_": "IterationBudget", "max_iterations": 2800}}}


@pytest.mark.parametrize("experiment, budget, expected, iterations", [
    (EPOCHS, 400, ["trainer.max_epochs=2"], 400),  # whole epochs of 200 iterations
    (EPOCHS, 250, ["trainer.max_epochs=2", "trainer.max_steps=500"], 250),  # ends inside an epoch: 2 steps per iteration
    (EPOCHS, 5000, [], 1600),  # the experiment fits the budget
    (BUDGET, 10, ["callbacks.iteration_budget.max_iterations=10"], 10),  # the runs' own iteration budget, lowered
    (BUDGET, None, [], 2800),
])
def test_budget_cuts_the_runs_to_an_iteration_count(experiment, budget, expected, iterations):
    ddgan = OmegaConf.create({"experiment": "x", "max_epochs": None, "max_iterations": budget})
    train_cfg = OmegaConf.create(experiment)
    overrides, note = budget_overrides(ddgan, train_cfg)
    assert overrides == expected and "trainer.max_epochs=" in note
    assert run_iterations(OmegaConf.merge(train_cfg, OmegaConf.from_dotlist(overrides))) == iterations


def test_budget_of_runs_that_never_end_is_an_error():
    ddgan = OmegaConf.create({"experiment": "endless", "max_epochs": None, "max_iterations": None})
    endless = OmegaConf.create({"trainer": {"max_epochs": -1}, "data": {}})
    with pytest.raises(ValueError, match="experiment=endless stop at no iteration count.*set ddgan.max_iterations"):
        budget_overrides(ddgan, endless)


def test_report_scores_ddgan_the_baseline_and_the_data(tmp_path, capsys):
    """Two tiny DDGAN runs laid out as a multirun, a tiny baseline on the same network, 64 images per model."""
    data_dir = f"paths.data_dir={tmp_path / 'data'}"  # classifier and reference cache stay in tmp_path
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        for job, num_timesteps in enumerate([1, 2]):
            run = compose(config_name="train", overrides=["experiment=stacked_digits", *TINY_DIGITS, data_dir,
                                                          "callbacks=[checkpoint]", f"diffusion.num_timesteps={num_timesteps}"])
            with open_dict(run):
                run.paths.output_dir = str(tmp_path / "sweep" / str(job))
            train(run)
        rough_classifier = "metrics.classifier_epochs=2"  # the report's own: rough is enough here
        overrides = ",".join(f'"{o}"' for o in [*TINY_DIGITS, data_dir, rough_classifier])
        cfg = compose(config_name="digits_report", overrides=[
            f"ddgan.sweep_dir={tmp_path / 'sweep'}", f"ddgan.overrides=[{overrides}]", "baseline.num_levels=100",
            "baseline.sample_steps=[2,5]", "evaluation.num_samples=64", "evaluation.batch_size=32", "evaluation.grid_size=16",
            "evaluation.num_threads=1"])
        rows = report(cfg, tmp_path / "report")
    assert [r["model"] for r in rows] == ["data", "DDGAN T=1", "DDGAN T=2", "Gaussian S=2", "Gaussian S=5"]
    assert [r["nfe"] for r in rows] == [None, 1, 2, 2, 5]
    assert [r["train_iterations"] for r in rows] == [None, 3, 3, 3, 3]  # the baseline trains as long as DDGAN
    for r in rows:
        assert 1 <= r["modes_covered"] <= 64 and 0 <= r["mode_kl"] <= 6.91 and r["fid"] >= 0
        assert 0 <= r["precision"] <= 1 and 0 <= r["recall"] <= 1
    data, *models = rows
    assert data["seconds_per_10k"] is None and all(r["seconds_per_10k"] > 0 for r in models)
    assert all(data["fid"] < r["fid"] for r in models)  # real vs real beats 3 iterations of training
    with open(tmp_path / "report" / "digits_report.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["model"] for r in table] == [r["model"] for r in rows]
    assert {"nfe", "modes_covered", "mode_kl", "fid", "precision", "recall", "seconds_per_10k"} <= set(table[0])
    assert (tmp_path / "report" / "digits_report.png").stat().st_size > 10_000
    assert (tmp_path / "report" / "digit_classifier.pt").is_file()
    saved = torch.load(tmp_path / "report" / "gaussian_denoiser" / "model.pt", weights_only=True)
    assert saved["settings"]["base_channels"] == 8 and saved["settings"]["final_tanh"] is False  # the runs' NCSN++
    printed = capsys.readouterr().out
    assert "| DDGAN T=2 | 2 |" in printed and "| Gaussian S=5 | 5 |" in printed and "/1000 |" in printed


@pytest.mark.parametrize("override, message", [
    ("baseline.sample_steps=[4,2000]", "num_steps=2000 must lie in 1..1000"),
    ('ddgan.overrides=["callbacks=[checkpoint]"]', "the runs have no callbacks.generative_metrics"),
    ("ddgan.sweep_dir=NOWHERE", "no DDGAN checkpoints under NOWHERE"),
])
def test_bad_input_fails_in_one_line_before_training(override, message, tmp_path, caplog, monkeypatch):
    monkeypatch.setattr("src.ddgan.report.launch_ddgan_sweep", lambda *args: pytest.fail("the runs were launched"))
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="digits_report", overrides=[override, f"output_dir={tmp_path}"])
        with pytest.raises(SystemExit) as exit_info:
            run_report(report, cfg)
    assert exit_info.value.code == 2
    assert message in caplog.records[-1].getMessage() and "\n" not in caplog.records[-1].getMessage()
    assert not (tmp_path / "ddgan").exists() and not (tmp_path / "gaussian_denoiser").exists()
