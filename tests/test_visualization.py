"""Denoising chain (grid, GIF), latent interpolation, the visualization callback with CSV / TensorBoard / wandb,
the rich progress bar, and the src.visualize command."""
import json

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from PIL import Image

from src.ddgan.images import grid_scale
from src.ddgan.sampling import sample
from src.ddgan.visualization import ReplayedNoise, latent_interpolation, slerp, visualize
from src.train import train
from tests.conftest import TINY_TOY

TINY_IMAGE_MODEL = [
    "experiment=stacked_digits", "model.sample_shape=[3,16,16]", "model.generator.base_channels=16",
    "model.generator.channel_mult=[1,2]", "model.generator.attn_resolutions=[8]", "model.generator.z_emb_dim=16",
    "model.nz=8", "model.discriminator.base_channels=8", "model.discriminator.t_emb_dim=16", "diffusion.num_timesteps=2",
]


@pytest.fixture
def toy_model(compose):
    return instantiate(compose(TINY_TOY + ["diffusion.num_timesteps=2"]).model, _convert_="partial").eval()


@pytest.fixture
def image_model(compose):
    model = instantiate(compose(TINY_IMAGE_MODEL).model, _convert_="partial").eval()
    with torch.no_grad():  # random weights so that z matters
        for p in model.generator_ema.parameters():
            p.normal_(0, 0.2)
    return model


def test_slerp_ends_at_the_endpoints_and_keeps_the_norm_of_orthogonal_latents():
    z_a, z_b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    path = slerp(z_a, z_b, torch.linspace(0, 1, 5))  # (1, 5, 2)
    torch.testing.assert_close(path[0, 0], z_a[0])
    torch.testing.assert_close(path[0, -1], z_b[0])
    torch.testing.assert_close(path.norm(dim=-1), torch.ones(1, 5))
    parallel = slerp(z_a, 2 * z_a, torch.tensor([0.5]))  # falls back to the straight line
    torch.testing.assert_close(parallel[0, 0], torch.tensor([1.5, 0.0]))


def test_replayed_noise_follows_the_samplers_order_of_draws(image_model):
    """Replaying z, noise, z, noise … drawn from one generator reproduces sample() with that generator."""
    nz, shape, n = image_model.hparams.nz, (3, 16, 16), 2
    x_T = torch.randn(n, *shape)
    expected = sample(image_model.generator_ema, image_model.schedule, x_T, nz=nz, rng=torch.Generator().manual_seed(5))
    rng = torch.Generator().manual_seed(5)
    draws = [torch.randn(s, generator=rng) for _ in range(2) for s in ((n, nz), (n, *shape))]
    replayed = sample(image_model.generator_ema, image_model.schedule, x_T, nz=nz, rng=ReplayedNoise(draws))
    torch.testing.assert_close(replayed, expected)


@pytest.mark.parametrize("shared_z", [False, True])
def test_interpolation_endpoints_do_not_depend_on_the_number_of_steps(image_model, shared_z):
    coarse = latent_interpolation(image_model, 2, 2, seed=3, shared_z=shared_z)
    fine = latent_interpolation(image_model, 2, 5, seed=3, shared_z=shared_z)
    assert fine.shape == (2, 5, 3, 16, 16)
    torch.testing.assert_close(fine[:, [0, -1]], coarse)
    assert (fine[:, 0] - fine[:, -1]).abs().max() > 1e-3  # z changes the sample


def test_image_chain_grid_gif_and_interpolation_files(image_model, tmp_path):
    files = visualize(image_model, tmp_path, num_samples=3, num_rows=2, num_steps=4, seed=0)
    tile, scale = 16 + 2, grid_scale(16)  # grids of small images are upscaled (nearest) for reading
    chain = Image.open(files["chain"])  # per sample two rows (levels, predictions) of T + 1 = 3 tiles
    assert chain.size == (scale * (3 * tile + 2), scale * (2 * 3 * tile + 2)) and chain.mode == "RGB"
    pixels = np.asarray(chain)
    assert np.array_equal(pixels, pixels[::scale, ::scale].repeat(scale, axis=0).repeat(scale, axis=1))  # nearest
    gif = Image.open(files["chain_gif"])
    assert gif.n_frames == 3  # levels x_2, x_1, x_0
    assert Image.open(files["interpolation"]).size == (scale * (4 * tile + 2), scale * (2 * tile + 2))


def test_point_chain_and_interpolation_are_scatter_plots(toy_model, tmp_path):
    files = visualize(toy_model, tmp_path, prefix="toy_", num_samples=200, num_steps=3, seed=0,
                      centers=torch.tensor([[0.0, 0.0], [2.0, 2.0]]))
    assert {p.name for p in files.values()} == {"toy_chain.png", "toy_chain.gif", "toy_interpolation.png"}
    assert Image.open(files["chain_gif"]).n_frames == toy_model.schedule.num_timesteps + 1
    assert all(Image.open(p).size[0] > 200 for p in files.values())


def test_callback_writes_pngs_and_logs_to_csv_and_tensorboard(compose, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    overrides = [o for o in TINY_TOY if not o.startswith("logger=")] + [
        "logger=[csv,tensorboard]", "callbacks=[mixture_eval,visualization,rich_progress]", "trainer.max_epochs=2",
        "trainer.enable_progress_bar=true", "callbacks.visualization.every_n_epochs=1",
        "callbacks.visualization.num_samples=100", "callbacks.visualization.gif=false"]
    train(compose(overrides, tmp_path))
    written = sorted(p.name for p in (tmp_path / "visualizations").iterdir())
    assert written == [f"epoch000{e}_{n}.png" for e in (1, 2) for n in ("chain", "interpolation")]
    assert (tmp_path / "csv" / "metrics.csv").exists() and json.loads((tmp_path / "metrics.json").read_text())["iteration"] == 6
    (events,) = (tmp_path / "tensorboard").glob("events.out.tfevents.*")
    accumulator = EventAccumulator(str(events), size_guidance={"images": 0})
    accumulator.Reload()
    assert set(accumulator.Tags()["images"]) == {"visualization/chain", "visualization/interpolation"}
    assert [e.step for e in accumulator.Images("visualization/chain")] == [6, 12]  # two optimizer steps per iteration


def test_wandb_offline_run_gets_metrics_and_images(compose, tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_dir"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    (tmp_path / "wandb_dir").mkdir()
    overrides = [o for o in TINY_TOY if not o.startswith("logger=")] + [
        "logger=wandb", "logger.wandb.offline=true", "callbacks=[mixture_eval,visualization]",
        "callbacks.visualization.num_samples=50", "callbacks.visualization.gif=false"]
    try:
        train(compose(overrides, tmp_path))  # finishes its wandb run
        assert wandb.run is None
    finally:
        wandb.teardown()  # waits until the wandb service has written the run's files
    (run_dir,) = tmp_path.glob("wandb/offline-run-*")  # logger.wandb.save_dir is the run directory
    (records,) = run_dir.glob("run-*.wandb")
    assert b"train/loss_d" in records.read_bytes() and b"eval/modes_covered" in records.read_bytes()  # metrics
    images = list(run_dir.glob("files/media/images/visualization/*.png"))
    assert len(images) == 2  # chain and interpolation after the last epoch


def test_callback_after_the_last_epoch_only_and_the_visualize_command(tmp_path, compose):
    from src.visualize import main

    run_overrides = TINY_TOY + ["callbacks=[checkpoint,mixture_eval,visualization]", "callbacks.visualization.every_n_epochs=0",
                                "callbacks.visualization.num_samples=50", "callbacks.visualization.gif=false"]
    train(compose(run_overrides, tmp_path / "run"))  # every_n_epochs=0: only after the last epoch
    visualized = sorted(p.name for p in (tmp_path / "run" / "visualizations").iterdir())
    assert visualized == ["epoch0001_chain.png", "epoch0001_interpolation.png"]
    cfg = compose([f"ckpt_path={tmp_path / 'run/checkpoints/last.ckpt'}", f"output_dir={tmp_path / 'pictures'}",
                   "num_samples=100", "num_steps=3"], config_name="visualize")
    main(cfg)
    assert sorted(p.name for p in (tmp_path / "pictures").iterdir()) == ["chain.gif", "chain.png", "interpolation.png"]
    cfg.ckpt_path = str(tmp_path / "missing.ckpt")
    with pytest.raises(SystemExit) as exit_info:
        main(cfg)
    assert exit_info.value.code == 2
