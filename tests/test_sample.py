"""The sample command: per-sample determinism whatever the batch size, and the npz layout it writes."""
import json
import runpy
import sys

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from src.ddgan.checkpoint import load_ddgan, save_ddgan
from src.ddgan.images import grid_scale, to_uint8
from src.sample import generate

TINY_DIGITS_MODEL = [
    "experiment=stacked_digits",
    "diffusion.num_timesteps=4",
    "model.generator.base_channels=8",
    "model.generator.z_emb_dim=16",
    "model.discriminator.base_channels=8",
    "model.discriminator.t_emb_dim=16",
]


pytestmark = pytest.mark.usefixtures("one_thread")


def save_tiny_checkpoint(compose, tmp_path, weight_std: float | None = None):
    """A tiny stacked-digits DDGAN saved as src.train would (weights + stored run config): untrained, or with
    N(0, weight_std) EMA-generator weights (an untrained NCSN++ outputs ~0: its last layers start at zero)."""
    cfg = compose(TINY_DIGITS_MODEL, tmp_path / "run")
    model = instantiate(cfg.model, _convert_="partial")
    if weight_std is not None:
        with torch.no_grad():
            for p in model.generator_ema.parameters():
                p.normal_(0, weight_std)
    model.hparams["config"] = OmegaConf.to_container(cfg, resolve=True)
    return save_ddgan(model, tmp_path / "tiny.ckpt")


@pytest.fixture
def checkpoint(compose, tmp_path):
    return save_tiny_checkpoint(compose, tmp_path)


@pytest.fixture
def random_checkpoint(compose, tmp_path):
    return save_tiny_checkpoint(compose, tmp_path, weight_std=0.1)


def run_module(module: str, *args: str) -> None:
    """`python -m module args...` in this process (Hydra reads sys.argv)."""
    argv = sys.argv
    sys.argv = [module, *args]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=False)
    finally:
        sys.argv = argv


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # runpy: the module is already imported
def test_same_seed_gives_the_same_samples_in_batches_of_3_and_5(checkpoint, tmp_path):
    for batch_size in (3, 5):
        run_module("src.sample", f"ckpt_path={checkpoint}", "num_samples=7", f"batch_size={batch_size}", "seed=5",
                   f"output_dir={tmp_path / f'batch{batch_size}'}")
    batch3, batch5 = (np.load(tmp_path / f"batch{b}" / "samples.npz") for b in (3, 5))
    assert batch3.files == ["arr_0"]
    images = batch3["arr_0"]
    assert images.dtype == np.uint8 and images.shape == (7, 32, 32, 3)  # N×H×W×C
    assert np.array_equal(images, batch5["arr_0"])
    assert (tmp_path / "batch3" / "grid.png").stat().st_size > 0 and (tmp_path / "batch3" / "timing.json").is_file()

    model = load_ddgan(checkpoint)
    samples, timing = generate(model, 7, 3, seed=5, warmup_batches=0)
    assert samples.shape == (7, 3, 32, 32) and timing["nfe"] == 4 and timing["num_batches"] == 3
    assert np.array_equal(to_uint8(samples), images)  # the npz is the [-1, 1] samples quantised, channels last
    # batched convolutions may differ in the last float bits, never more
    torch.testing.assert_close(generate(model, 7, 5, seed=5, warmup_batches=0)[0], samples, rtol=0, atol=1e-6)


def test_sample_i_depends_only_on_seed_and_i(checkpoint):
    model = load_ddgan(checkpoint)
    first7 = to_uint8(generate(model, 7, 7, seed=5, warmup_batches=0)[0])
    first4 = to_uint8(generate(model, 4, 2, seed=5, warmup_batches=0)[0])
    other_seed = to_uint8(generate(model, 4, 4, seed=6, warmup_batches=0)[0])
    assert np.array_equal(first7[:4], first4)
    assert not np.array_equal(first4, other_seed)
    assert not np.array_equal(first4[0], first4[1])


def test_channels_last_sampling_matches_the_default_layout(checkpoint, tmp_path):
    model = load_ddgan(checkpoint)
    reference, _ = generate(model, 4, 4, seed=3, warmup_batches=0)
    run_module("src.sample", f"ckpt_path={checkpoint}", "num_samples=4", "batch_size=4", "seed=3",
               "channels_last=true", f"output_dir={tmp_path / 'cl'}", "device=cpu")
    images = np.load(tmp_path / "cl" / "samples.npz")["arr_0"]
    assert np.abs(images.astype(int) - to_uint8(reference).astype(int)).max() <= 1  # the last bit may differ
    torch.testing.assert_close(generate(model.to_channels_last(), 4, 4, seed=3, warmup_batches=0)[0], reference, rtol=0, atol=1e-4)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # runpy: the module is already imported
def test_bf16_sampling_is_close_to_fp32_but_not_identical(random_checkpoint, tmp_path):
    model = load_ddgan(random_checkpoint)
    fp32, timing = generate(model, 4, 4, seed=3, warmup_batches=0)
    bf16, bf16_timing = generate(model, 4, 4, seed=3, warmup_batches=0, precision="bf16")
    assert (timing["precision"], bf16_timing["precision"], bf16.dtype) == ("32", "bf16", torch.float32)
    assert fp32.std() > 0.05 and not torch.equal(bf16, fp32)
    torch.testing.assert_close(bf16, fp32, rtol=0, atol=0.02)
    run_module("src.sample", f"ckpt_path={random_checkpoint}", "num_samples=4", "batch_size=4", "seed=3",
               "precision=bf16", f"output_dir={tmp_path / 'bf16'}", "device=cpu")
    assert json.loads((tmp_path / "bf16" / "timing.json").read_text())["precision"] == "bf16"
    images = np.load(tmp_path / "bf16" / "samples.npz")["arr_0"].astype(int)
    assert np.abs(images - to_uint8(fp32).astype(int)).max() <= 3
    scale = grid_scale(32)  # a 2x2 grid of 32 px images, 2 px padding, upscaled for reading
    assert scale >= 2 and Image.open(tmp_path / "bf16" / "grid.png").size == (scale * (2 * 34 + 2),) * 2


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # runpy: the module is already imported
def test_unknown_precision_exits_2_with_one_line(checkpoint, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_module("src.sample", f"ckpt_path={checkpoint}", "precision=fp16", f"output_dir={tmp_path / 'out'}")
    assert exit_info.value.code == 2 and not (tmp_path / "out").exists()
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "precision=fp16" in line and "use 32" in line and "bf16" in line
