"""src.edit: SDEdit from level k on a briefly trained stacked_digits model; its outputs and its one-line errors."""
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import open_dict
from PIL import Image

from src.ddgan.checkpoint import load_ddgan
from src.ddgan.editing import edit, load_image
from src.ddgan.images import grid_scale
from src.edit import main
from src.train import train
from tests.conftest import CONFIG_DIR

TINY_DIGITS = [
    "experiment=stacked_digits", "diffusion.num_timesteps=4", "data.image_size=16", "model.sample_shape=[3,16,16]", "model.generator.base_channels=16",
    "model.generator.channel_mult=[1,2]", "model.generator.attn_resolutions=[8]", "model.generator.z_emb_dim=16",
    "model.nz=8", "model.discriminator.base_channels=8", "model.discriminator.t_emb_dim=16", "data.num_images=48",
    "data.batch_size_per_device=16", "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "logger=csv",
    "callbacks=[checkpoint]",
]


def compose_config(config_name: str, overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=overrides)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A stacked_digits model (16 px, T = 4) trained for 3 iterations."""
    run_dir = tmp_path_factory.mktemp("digits_run")
    cfg = compose_config("train", TINY_DIGITS)
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
    train(cfg)
    return run_dir / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def strokes(tmp_path_factory):
    path = tmp_path_factory.mktemp("inputs") / "strokes.png"
    image = Image.new("RGB", (16, 16))
    image.paste((255, 0, 0), (3, 2, 6, 14))
    image.paste((0, 255, 0), (9, 4, 13, 8))
    image.save(path)
    return path


def run_edit(ckpt, image, output_dir, *overrides):
    cfg = compose_config("edit", [f"ckpt_path={ckpt}", f"input={image}", f"output_dir={output_dir}", *overrides])
    main(cfg)


def test_edit_writes_the_grid_and_one_png_per_variation(ckpt, strokes, tmp_path):
    run_edit(ckpt, strokes, tmp_path / "a", "start_step=2", "num_variations=3", "seed=7")
    grid = Image.open(tmp_path / "a" / "grid.png")
    scale = grid_scale(16)  # the grid is upscaled (nearest) for reading, the variations are not
    assert grid.size == (scale * (4 * 18 + 2), scale * (18 + 2))  # input + 3 variations in one row, 2 px padding
    variations = sorted((tmp_path / "a" / "variations").iterdir())
    assert [p.name for p in variations] == ["000.png", "001.png", "002.png"]
    assert all(Image.open(p).size == (16, 16) and Image.open(p).mode == "RGB" for p in variations)
    input_tile = np.array(grid)[::scale, ::scale][2:18, 2:18]
    assert input_tile[4, 4, 0] == 255 and input_tile[4, 4, 1] == 0  # the first tile is the input itself
    run_edit(ckpt, strokes, tmp_path / "b", "start_step=2", "num_variations=3", "seed=7")
    assert (tmp_path / "a" / "grid.png").read_bytes() == (tmp_path / "b" / "grid.png").read_bytes()  # seeded


def test_edit_runs_the_last_k_generator_steps_from_the_diffused_input(ckpt, strokes):
    model = load_ddgan(ckpt)
    image = load_image(strokes, model.sample_shape)
    seen = []  # (t, x_{t+1}) of every generator call
    model.generator_ema.register_forward_pre_hook(lambda module, args: seen.append((args[1].tolist(), args[0].clone())))
    variations = edit(model, image, start_step=3, num_variations=2, seed=0)
    assert variations.shape == (2, 3, 16, 16)
    assert [t for t, _ in seen] == [[2, 2], [1, 1], [0, 0]]  # levels 3 -> 2 -> 1 -> 0
    x_k = seen[0][1]
    torch.testing.assert_close(x_k[0], x_k[1])  # one diffused input shared by the variations
    noise = (x_k[0] - model.schedule.sqrt_alpha_bar[3] * image) / model.schedule.sigma_bar[3]
    assert 0.7 < noise.std() < 1.3  # x_3 ~ q(x_3 | x_0): the residual is standard normal noise
    seen.clear()
    edit(model, image, start_step=1, num_variations=2, seed=0, diffuse_each=True)
    assert [t for t, _ in seen] == [[0, 0]] and not torch.equal(seen[0][1][0], seen[0][1][1])


def test_alpha_is_dropped_and_fit_input_converts_and_resizes(ckpt, tmp_path):
    shape = (3, 16, 16)
    Image.new("RGBA", (16, 16), (255, 255, 255, 0)).save(tmp_path / "rgba.png")
    assert load_image(tmp_path / "rgba.png", shape).min() == 1.0
    Image.new("L", (40, 30), 0).save(tmp_path / "gray.jpg")
    fitted = load_image(tmp_path / "gray.jpg", shape, fit=True)
    assert fitted.shape == shape and fitted.max() == -1.0


@pytest.mark.parametrize("case, expected", [
    ("missing_input", "no such file"),
    ("missing_ckpt", "ckpt_path="),
    ("too_big", "is 24×20×3 (RGB) but the model expects 16×16×3 (RGB) (H×W×C): resize it to 16×16 pixels"),
    ("grayscale", "is 16×16×1 (grayscale) but the model expects 16×16×3 (RGB) (H×W×C): convert it to RGB"),
    ("not_an_image", "is not an image"),
    ("k_zero", "start_step=0 is outside 1..4"),
    ("k_too_big", "start_step=5 is outside 1..4"),
    ("k_not_int", "start_step='two' is outside 1..4"),
])
def test_bad_input_exits_2_with_one_line(ckpt, strokes, tmp_path, capsys, case, expected):
    image, k, checkpoint = strokes, "2", ckpt
    if case == "missing_input":
        image = tmp_path / "nope.png"
    elif case == "missing_ckpt":
        checkpoint = tmp_path / "nope.ckpt"
    elif case == "too_big":
        image = tmp_path / "big.png"
        Image.new("RGB", (20, 24)).save(image)
    elif case == "grayscale":
        image = tmp_path / "gray.png"
        Image.new("L", (16, 16)).save(image)
    elif case == "not_an_image":
        image = tmp_path / "notes.png"
        image.write_text("not a png")
    else:
        k = {"k_zero": "0", "k_too_big": "5", "k_not_int": "two"}[case]
    with pytest.raises(SystemExit) as exit_info:
        run_edit(checkpoint, image, tmp_path / "out", f"start_step={k}")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and expected in err
    assert not (tmp_path / "out").exists()
