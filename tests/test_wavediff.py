"""WaveDiff: the Haar transform pair, the wavelet generator and the released-network import (equal outputs, names)."""
import json

import pytest
import torch
import torch.nn.functional as F

from src.ddgan.nets.discriminator import LargeDiscriminator, SmallDiscriminator
from src.ddgan.nets.ncsnpp import NCSNpp
from src.ddgan.nets.official import from_official_state_dict, to_official_state_dict
from src.ddgan.nets.wavediff import (
    load_wavediff_discriminator,
    load_wavediff_generator,
    parse_wavediff_args,
    wavediff_discriminator_kind,
    wavediff_discriminator_kwargs,
    wavediff_generator_kwargs,
    wavediff_subband_order,
)
from src.ddgan.nets.wavelet_ncsnpp import WaveletNCSNpp
from src.ddgan.wavelets import from_wavelet_space, haar_dwt, haar_idwt, to_wavelet_space
from tests.conftest import compose_config

CASES = ["generator_wavelet", "generator_normal_12ch", "discriminator_small_3layers", "discriminator_large_4layers"]
FIXTURE_ORDERS = {"pytorch_wavelets": "pytorch_wavelets", "dwt_idwt_layer": "dwt_idwt"}
TINY_WAVELET = {"image_size": 16, "image_channels": 12, "base_channels": 16, "channel_mult": (1, 2, 2),
                "num_res_blocks": 1, "attn_resolutions": (8,), "nz": 8, "z_emb_dim": 16, "n_mlp": 1}


@pytest.fixture(scope="module")
def tiny(reference_dir):
    return torch.load(reference_dir / "wavediff_nets_tiny.pt", weights_only=True)


def load(case: dict, state_dict=None) -> torch.nn.Module:
    state_dict = case["state_dict"] if state_dict is None else state_dict
    if "kind" in case:
        return load_wavediff_discriminator(state_dict, case["kind"], case["config"])
    return load_wavediff_generator(state_dict, case["config"])


def run(model: torch.nn.Module, case: dict) -> torch.Tensor:
    inputs = case["inputs"]
    with torch.no_grad():
        if "kind" in case:
            return model(inputs["x_prev"], inputs["t"], inputs["x_t"])  # released (x_prev, t, x_t) = our (x_t, t, x_tp1)
        return model(inputs["x"], inputs["t"], inputs["z"])


# ----------------------------------------------------------------------------- Haar transform

@pytest.mark.parametrize("impl", list(FIXTURE_ORDERS))
def test_haar_pair_matches_both_released_transforms(tiny, impl):
    haar, order = tiny["haar"], FIXTURE_ORDERS[impl]
    bands = haar_dwt(haar["image"], order)
    for ours, key in zip(bands, ("ll", "lh", "hl", "hh")):
        assert (ours - haar[impl][key]).abs().max() <= 1e-6, key
    released_bands = [haar[impl][k] for k in ("ll", "lh", "hl", "hh")]
    assert (haar_idwt(*released_bands, subband_order=order) - haar[impl]["inverse"]).abs().max() <= 1e-6


def test_haar_is_orthonormal_and_exactly_invertible():
    x = torch.randn(2, 3, 8, 6, dtype=torch.float64)
    for order in ("dwt_idwt", "pytorch_wavelets"):
        bands = haar_dwt(x, order)
        assert torch.allclose(sum((b ** 2).sum() for b in bands), (x ** 2).sum())     # energy kept
        assert (haar_idwt(*bands, subband_order=order) - x).abs().max() <= 1e-12
        w = to_wavelet_space(x, order)
        assert w.shape == (2, 12, 4, 3) and (from_wavelet_space(w, order) - x).abs().max() <= 1e-12
    ll, lh, hl, hh = haar_dwt(x, "dwt_idwt")
    assert all(torch.equal(a, b) for a, b in zip(haar_dwt(x, "pytorch_wavelets"), (ll, hl, lh, hh)))  # LH, HL swapped
    assert to_wavelet_space(torch.ones(1, 1, 2, 2), "dwt_idwt").flatten().tolist() == [1, 0, 0, 0]   # [-1, 1] in, out


def test_haar_bad_inputs_name_the_fix():
    with pytest.raises(ValueError, match=r"even height and width, got 15x16: resize or crop"):
        haar_dwt(torch.zeros(1, 3, 15, 16))
    with pytest.raises(ValueError, match=r"subband_order='haar' is not a Haar subband order; use one of dwt_idwt"):
        to_wavelet_space(torch.zeros(1, 3, 4, 4), "haar")
    with pytest.raises(ValueError, match="4 x C channels"):
        from_wavelet_space(torch.zeros(1, 6, 4, 4), "dwt_idwt")


# ----------------------------------------------------------------------------- released networks

@pytest.mark.parametrize("name", CASES)
def test_reproduces_released_outputs(tiny, name):
    case = tiny[name]
    model = load(case)
    assert sum(p.numel() for p in model.parameters()) == case["num_parameters"]
    out = run(model, case)
    assert (out - case["output"]).abs().max() / max(1.0, case["output"].abs().max().item()) <= 1e-5
    assert isinstance(model, {"generator_wavelet": WaveletNCSNpp, "generator_normal_12ch": NCSNpp,
                              "discriminator_small_3layers": SmallDiscriminator,
                              "discriminator_large_4layers": LargeDiscriminator}[name])


@pytest.mark.parametrize("name", CASES)
def test_round_trip_and_ddp_prefix(tiny, name):
    case = tiny[name]
    model = load(case, {f"module.{k}": v for k, v in case["state_dict"].items()})
    exported = to_official_state_dict(model)
    assert exported.keys() == case["state_dict"].keys()
    assert all(torch.equal(exported[k], v) for k, v in case["state_dict"].items())


@pytest.mark.parametrize("run_name", ["cifar10", "stl10", "celeba_256", "lsun"])
def test_paper_nets_match_released_manifest(reference_dir, run_name):
    entry = json.loads((reference_dir / "wavediff_state_dict_manifest.json").read_text())["runs"][run_name]
    config = parse_wavediff_args(entry["train_args"])
    cls, kwargs = wavediff_generator_kwargs(config)
    kind = wavediff_discriminator_kind(config["dataset"])
    with torch.device("meta"):
        g = cls(**kwargs)
        d = {"small": SmallDiscriminator, "large": LargeDiscriminator}[kind](**wavediff_discriminator_kwargs(kind, config))
    assert cls.__name__ == {"normal": "NCSNpp", "wavelet": "WaveletNCSNpp"}[entry["net_type"]]
    assert type(d).__name__ == entry["discriminator"].replace("Discriminator_", "").title() + "Discriminator"
    assert wavediff_subband_order(config) == entry["wavelet_impl"].lower()
    for model, names, total in ((g, entry["generator"], entry["generator_num_parameters"]),
                                (d, entry["discriminator_state"], entry["discriminator_num_parameters"])):
        assert {k: list(v.shape) for k, v in to_official_state_dict(model).items()} == names
        assert sum(p.numel() for p in model.parameters()) == total


def test_paper_totals_are_the_papers(reference_dir):
    runs = json.loads((reference_dir / "wavediff_state_dict_manifest.json").read_text())["runs"]
    assert (runs["cifar10"]["generator_num_parameters"], runs["cifar10"]["discriminator_num_parameters"]) == (33_370_124, 7_630_593)
    assert (runs["celeba_256"]["generator_num_parameters"], runs["celeba_256"]["discriminator_num_parameters"]) == (31_485_452, 22_626_177)


# ----------------------------------------------------------------------------- bad input

def test_subband_order_of_another_run_names_the_setting(tiny):
    case = tiny["generator_wavelet"]
    config = {**case["config"], "use_pytorch_wavelet": True}
    load_wavediff_generator(case["state_dict"], config, subband_order="pytorch_wavelets")
    with pytest.raises(ValueError, match=r"subband_order='dwt_idwt' does not match the released run, .*"
                                         r"--use_pytorch_wavelet .*set subband_order='pytorch_wavelets'"):
        load_wavediff_generator(case["state_dict"], config, subband_order="dwt_idwt")


def test_a_file_of_the_other_network_type_names_the_choice(tiny):
    wavelet, normal = tiny["generator_wavelet"], tiny["generator_normal_12ch"]
    with pytest.raises(ValueError, match=r"holds a WaveDiff wavelet generator, not a plain NCSN\+\+ generator: "
                                         r"use model/generator=wavelet_ncsnpp \(WaveDiff: --net_type wavelet\); missing keys"):
        load_wavediff_generator(wavelet["state_dict"], normal["config"])
    with pytest.raises(ValueError, match=r"holds a plain NCSN\+\+ generator, not a WaveDiff wavelet generator: "
                                         r"use model/generator=ncsnpp"):
        load_wavediff_generator(normal["state_dict"], wavelet["config"])
    small, large = tiny["discriminator_small_3layers"], tiny["discriminator_large_4layers"]
    with pytest.raises(ValueError, match=r"holds a small discriminator, not a large discriminator: "
                                         r"use model/discriminator=small \(loader kind 'small'\)"):
        load_wavediff_discriminator(small["state_dict"], "large", small["config"])
    with pytest.raises(ValueError, match=r"holds a large discriminator, not a small discriminator"):
        load_wavediff_discriminator(large["state_dict"], "small", large["config"])
    with pytest.raises(ValueError, match=r"holds a small discriminator, not a WaveDiff wavelet generator: "
                                         r"import the generator file \(netG_\*\.pth\)"):
        load_wavediff_generator(small["state_dict"], wavelet["config"])
    with pytest.raises(ValueError, match=r"import the discriminator file \(netD_\*\.pth\)"):
        load_wavediff_discriminator(wavelet["state_dict"], "small", small["config"])
    with pytest.raises(ValueError, match="net_type='unet'"):
        load_wavediff_generator(wavelet["state_dict"], {**wavelet["config"], "net_type": "unet"})


def test_odd_resolution_and_bad_depth_name_the_fix():
    with pytest.raises(ValueError, match=r"image_size=24 gives an odd resolution 3 .* divisible by 16"):
        WaveletNCSNpp(**{**TINY_WAVELET, "image_size": 24, "channel_mult": (1, 2, 2, 2)})
    with pytest.raises(ValueError, match=r"num_layers=5 must be between 3 and 4"):
        SmallDiscriminator(num_layers=5)
    with pytest.raises(ValueError, match=r"num_layers=2 must be between 3 and 6"):
        LargeDiscriminator(num_layers=2)


# ----------------------------------------------------------------------------- our networks

def test_discriminator_depth_drops_the_last_blocks():
    assert list(SmallDiscriminator(image_size=16, base_channels=4, num_layers=3).blocks) == ["16x16", "8x8_down", "4x4_down"]
    assert list(LargeDiscriminator(image_size=32, base_channels=4, num_layers=3).blocks) == ["16x16_down", "8x8_down", "4x4_down"]
    full = LargeDiscriminator(image_size=256, base_channels=4)
    assert {k: v.shape for k, v in full.state_dict().items()} == \
        {k: v.shape for k, v in LargeDiscriminator(image_size=256, base_channels=4, num_layers=6).state_dict().items()}


def test_wavelet_generator_with_every_switch_off_is_ncsnpp():
    torch.manual_seed(0)
    plain = NCSNpp(**TINY_WAVELET)
    off = WaveletNCSNpp(wavelet_pyramid=False, wavelet_resblocks=False, frequency_bottleneck=False, **TINY_WAVELET)
    for p in plain.parameters():                       # leave the zero-initialised output convs' regime
        p.data.add_(0.05 * torch.randn_like(p))
    off.load_state_dict(plain.state_dict())
    x, t, z = torch.randn(2, 12, 16, 16), torch.tensor([0, 3]), torch.randn(2, 8)
    with torch.no_grad():
        assert torch.equal(off(x, t, z), plain(x, t, z))


def test_wavelet_generator_trains_and_the_switches_change_its_modules():
    g = WaveletNCSNpp(**TINY_WAVELET)
    x, t, z = torch.randn(2, 12, 16, 16), torch.tensor([0, 3]), torch.randn(2, 8)
    g(x, t, z).square().mean().backward()
    assert all(p.grad is not None for p in g.parameters())
    assert type(g.enc["8x8_down"]).__name__ == "WaveletResBlock" and hasattr(g.dec["16x16_up"], "high_conv")
    assert type(g.enc["8x8_pyramid"]).__name__ == "WaveletDownsample"
    no_pyramid = WaveletNCSNpp(wavelet_pyramid=False, **TINY_WAVELET)
    assert type(no_pyramid.enc["8x8_pyramid"]).__name__ == "FIRDownsampleConv2d"
    assert no_pyramid(x, t, z).shape == x.shape


@pytest.mark.parametrize("cls", [WaveletNCSNpp, NCSNpp])
def test_patch_size_imports_in_the_released_patch_order(cls):
    """The released net patchifies as (p1 p2 c) and unpatchifies as (c p1 p2): its patch-2 network is a
    patch-1 network on the (p1 p2 c) channels followed by pixel_shuffle. Our patch-2 net, exported to the
    released layout and loaded as that patch-1 network, computes the same function."""
    torch.manual_seed(0)
    kwargs = {**TINY_WAVELET, "image_size": 32, "image_channels": 3}
    ours = cls(**kwargs, patch_size=2)
    for p in ours.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    core = cls(**{**kwargs, "image_size": 16, "image_channels": 12})
    core.load_state_dict(from_official_state_dict(to_official_state_dict(ours), core))
    x, t, z = torch.randn(2, 3, 32, 32), torch.tensor([1, 2]), torch.randn(2, 8)
    released_patches = x.reshape(2, 3, 16, 2, 16, 2).permute(0, 3, 5, 1, 2, 4).reshape(2, 12, 16, 16)  # (p1 p2 c)
    with torch.no_grad():
        expected = F.pixel_shuffle(core(released_patches, t, z), 2)
        assert (ours(x, t, z) - expected).abs().max() <= 1e-5
    round_trip = cls(**kwargs, patch_size=2)
    round_trip.load_state_dict(from_official_state_dict(to_official_state_dict(ours), round_trip))
    assert all(torch.equal(a, b) for a, b in zip(round_trip.state_dict().values(), ours.state_dict().values()))


# ----------------------------------------------------------------------------- released files -> our checkpoints

TINY_WAVELET_EXPERIMENT = [  # experiment=cifar10 with the fixture's wavelet generator (12 subbands at 16 px)
    "experiment=cifar10",
    "model/generator=wavelet_ncsnpp",
    "model.space=wavelet",  # the 32 px images as 12 subbands at 16 px
    "model.generator.base_channels=16",
    "model.generator.channel_mult=[1,2,2]",
    "model.generator.num_res_blocks=1",
    "model.generator.attn_resolutions=[8]",
    "model.nz=20",
    "model.generator.z_emb_dim=32",
    "model.generator.n_mlp=2",
    "model.discriminator.base_channels=8",
]
TINY_WAVELET_ARGS = ("--net_type wavelet --num_channels 12 --num_channels_dae 16 --ch_mult 1 2 2 --num_res_blocks 1 "
                     "--attn_resolution 8 --nz 20 --z_emb_dim 32 --n_mlp 2 --image_size 32 --current_resolution 16 "
                     "--use_pytorch_wavelet --exp tiny --rec_loss")


def test_released_wavelet_generator_file_converts_and_round_trips(compose, tiny, tmp_path):
    from src.convert_official import convert
    from src.ddgan.checkpoint import load_ddgan

    case = tiny["generator_wavelet"]
    released = tmp_path / "netG_500.pth"
    torch.save({f"module.{k}": v for k, v in case["state_dict"].items()}, released)       # as saved by DDP
    cfg = compose([*TINY_WAVELET_EXPERIMENT, f"official_args='{TINY_WAVELET_ARGS}'"], config_name="convert_official")
    convert(cfg, released, tmp_path / "converted.ckpt")

    model = load_ddgan(tmp_path / "converted.ckpt")
    assert isinstance(model.generator_ema, WaveletNCSNpp)
    out = run(model.generator_ema, case)
    assert (out - case["output"]).abs().max() <= 1e-5
    exported = to_official_state_dict(model.generator_ema)                                   # and back, unchanged
    assert exported.keys() == case["state_dict"].keys()
    assert all(torch.equal(exported[k], v) for k, v in case["state_dict"].items())
    stored = torch.load(tmp_path / "converted.ckpt", weights_only=True)["ddgan"]
    assert stored["subband_order"] == "pytorch_wavelets" and stored["converted_from"] == str(released)


def test_conversion_names_the_setting_that_does_not_fit(compose, tiny, tmp_path):
    from src.convert_official import convert

    released = tmp_path / "netG.pth"
    torch.save(tiny["generator_normal_12ch"]["state_dict"], released)
    cfg = compose(TINY_WAVELET_EXPERIMENT, config_name="convert_official")
    with pytest.raises(ValueError, match=r"does not fit experiment=cifar10: .*holds a plain NCSN\+\+ generator, "
                                         r"not a WaveDiff wavelet generator: use model/generator=ncsnpp"):
        convert(cfg, released, tmp_path / "x.ckpt")
    normal_args = TINY_WAVELET_ARGS.replace("--net_type wavelet", "--net_type normal")
    with pytest.raises(ValueError, match=r"official_args build NCSNpp \(--net_type normal\), .*add model/generator=ncsnpp"):
        convert(compose([*TINY_WAVELET_EXPERIMENT, f"official_args='{normal_args}'"], config_name="convert_official"),
                released, tmp_path / "x.ckpt")
    deeper = TINY_WAVELET_ARGS.replace("--ch_mult 1 2 2", "--ch_mult 1 2 2 2")
    with pytest.raises(ValueError, match=r"official_args give channel_mult=\[1, 2, 2, 2\], .*"
                                         r"set model.generator.channel_mult=\[1, 2, 2, 2\]"):
        convert(compose([*TINY_WAVELET_EXPERIMENT, f"official_args='{deeper}'"], config_name="convert_official"),
                released, tmp_path / "x.ckpt")
    with pytest.raises(ValueError, match=r"subband_order='dwt_idwt' does not match .*set subband_order='pytorch_wavelets'"):
        convert(compose([*TINY_WAVELET_EXPERIMENT, "model.subband_order=dwt_idwt", f"official_args='{TINY_WAVELET_ARGS}'"],
                        config_name="convert_official"), released, tmp_path / "x.ckpt")
    assert not (tmp_path / "x.ckpt").exists()


# ----------------------------------------------------------------------------- training and sampling in wavelet space

def test_network_shape_of_each_space_and_bad_shapes_name_the_fix():
    from src.ddgan.wavelets import network_shape

    assert network_shape([3, 32, 32], "pixel") == [3, 32, 32] and network_shape([2], "pixel") == [2]
    assert network_shape([3, 256, 256], "wavelet") == [12, 128, 128]
    with pytest.raises(ValueError, match=r"model.space='fourier' is not a data space; use one of pixel, wavelet"):
        network_shape([3, 32, 32], "fourier")
    with pytest.raises(ValueError, match=r"even height and width, the data is 31x32: .*data.image_size"):
        network_shape([3, 31, 32], "wavelet")
    with pytest.raises(ValueError, match=r"needs \(C, H, W\) images, .*\[2\]: use model.space=pixel"):
        network_shape([2], "wavelet")


RELEASED_RUNS = {"wavediff_cifar10": "cifar10", "wavediff_stl10": "stl10", "wavediff_celebahq256": "celeba_256",
                 "wavediff_lsun_church256": "lsun"}


@pytest.mark.parametrize("experiment", list(RELEASED_RUNS))
def test_experiments_have_the_released_run_settings(compose, reference_dir, experiment):
    from src.convert_official import check_official_args

    run = json.loads((reference_dir / "wavediff_state_dict_manifest.json").read_text())["runs"][RELEASED_RUNS[experiment]]
    released = parse_wavediff_args(run["train_args"])
    cfg = compose([f"experiment={experiment}"])
    assert check_official_args(cfg, run["train_args"]) == cfg.model.subband_order    # the generator and the order
    assert cfg.model.subband_order == {"DWT_IDWT": "dwt_idwt"}.get(run["wavelet_impl"], run["wavelet_impl"])
    kind = wavediff_discriminator_kind(released["dataset"])
    assert cfg.model.discriminator._target_.endswith({"small": "SmallDiscriminator", "large": "LargeDiscriminator"}[kind])
    for key, value in wavediff_discriminator_kwargs(kind, released).items():
        assert cfg.model.discriminator[key] == value, key
    assert cfg.model.space == "wavelet" and cfg.model.reconstruction_weight == 1.0                   # --rec_loss
    assert list(cfg.model.network_shape) == [released["num_channels"], released["current_resolution"],
                                             released["current_resolution"]]
    settings = {"num_timesteps": cfg.diffusion.num_timesteps, "lr_g": cfg.model.lr_g, "lr_d": cfg.model.lr_d,
                "r1_gamma": cfg.model.r1_gamma, "lazy_reg": cfg.model.lazy_reg, "ema_decay": cfg.model.ema_decay,
                "nz": cfg.model.nz, "batch_size": cfg.data.batch_size_per_device, "num_epoch": cfg.trainer.max_epochs}
    flags = training_flags(run["train_args"])
    assert settings == {key: float(flags.get(key, TRAINING_DEFAULTS.get(key))) for key in settings}


TRAINING_DEFAULTS = {"ema_decay": 0.9999, "nz": 100}  # the released train_wddgan.py's, for flags run.sh leaves out


def training_flags(args: str) -> dict[str, str]:
    """`--key value` pairs of a run.sh training command (store-true flags map to "")."""
    tokens, flags = args.split(), {}
    for i, token in enumerate(tokens):
        if token.startswith("--"):
            value = tokens[i + 1] if i + 1 < len(tokens) and not tokens[i + 1].startswith("--") else ""
            flags[token[2:]] = value
    return flags


TINY_WAVELET_DIGITS = [  # 32 px stacked digits as 12 subbands at 16 px; 2 batches of 4: two iterations
    "experiment=stacked_digits", "model.space=wavelet", "model/generator=wavelet_ncsnpp", "data.image_size=32",
    "model.sample_shape=[3,32,32]", "data.num_images=8", "data.batch_size_per_device=4", "diffusion.num_timesteps=2",
    "model.generator.base_channels=16", "model.generator.channel_mult=[1,2]", "model.generator.attn_resolutions=[4]",
    "model.generator.z_emb_dim=16", "model.nz=8", "model.discriminator.base_channels=8", "model.discriminator.t_emb_dim=16",
]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # runpy: the module is already imported
def test_tiny_wavelet_run_trains_and_every_consumer_gets_images(compose, one_thread, tmp_path):
    import lightning as L
    import numpy as np
    from hydra.utils import instantiate
    from omegaconf import OmegaConf
    from PIL import Image

    from src.ddgan.checkpoint import save_ddgan
    from src.ddgan.editing import edit
    from src.ddgan.visualization import denoising_chain, latent_interpolation
    from tests.test_sample import run_module

    cfg = compose(TINY_WAVELET_DIGITS, tmp_path / "run")
    model = instantiate(cfg.model, _convert_="partial")
    assert isinstance(model.generator, WaveletNCSNpp) and model.network_shape == (12, 16, 16)
    assert model.sample_shape == (3, 32, 32) and cfg.model.generator.image_channels == 12
    trainer = L.Trainer(max_epochs=1, limit_train_batches=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=instantiate(cfg.data))
    assert model.iteration == 2 and model.nonfinite_updates == 0

    rng = torch.Generator().manual_seed(0)
    samples = model.sample(3, rng=rng)
    assert samples.shape == (3, 3, 32, 32)                            # images, through the inverse transform
    assert model.to_network_space(samples).shape == (3, 12, 16, 16)
    torch.testing.assert_close(model.to_data_space(model.to_network_space(samples)), samples, rtol=0, atol=1e-6)
    levels, predictions = denoising_chain(model, 2, seed=0)
    assert all(x.shape == (2, 3, 32, 32) for x in levels + predictions) and len(levels) == 3
    assert latent_interpolation(model, 2, 3, seed=0).shape == (2, 3, 3, 32, 32)
    assert edit(model, samples[0], start_step=1, num_variations=2, seed=0).shape == (2, 3, 32, 32)

    model.hparams["config"] = OmegaConf.to_container(cfg, resolve=True)
    checkpoint = save_ddgan(model, tmp_path / "wavelet.ckpt")
    run_module("src.sample", f"ckpt_path={checkpoint}", "num_samples=3", "batch_size=2", f"output_dir={tmp_path / 'out'}")
    images = np.load(tmp_path / "out" / "samples.npz")["arr_0"]
    assert images.dtype == np.uint8 and images.shape == (3, 32, 32, 3)   # N x H x W x RGB
    assert Image.open(tmp_path / "out" / "grid.png").mode == "RGB"


def test_a_network_shape_override_that_does_not_follow_names_the_fix(compose):
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    with pytest.raises(InstantiationException, match=r"model.network_shape=\[3, 32, 32\] does not follow .*model.space=wavelet "
                                         r"\(\[12, 16, 16\]\): drop the model.network_shape override"):
        instantiate(compose([*TINY_WAVELET_DIGITS, "model.network_shape=[3,32,32]"]).model, _convert_="partial")


def test_stl10_datamodule_resizes_the_unlabelled_split_and_labels_the_train_split(tmp_path, monkeypatch):
    """The STL-10 binary layout (a fake split here): uint8 3 x 96 x 96 images, column-major; labels 1..10 on disk."""
    import numpy as np
    from torchvision.datasets import STL10

    from src.ddgan.data.stl10 import STL10DataModule

    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    rng = np.random.default_rng(0)
    rng.integers(0, 256, (6, 3, 96, 96), dtype=np.uint8).tofile(folder / "unlabeled_X.bin")
    rng.integers(0, 256, (4, 3, 96, 96), dtype=np.uint8).tofile(folder / "train_X.bin")
    np.array([1, 2, 3, 10], dtype=np.uint8).tofile(folder / "train_y.bin")
    monkeypatch.setattr(STL10, "_check_integrity", lambda self: True)  # the fake files have other checksums
    unlabelled = STL10DataModule(data_dir=str(tmp_path), download=False, batch_size_per_device=2, num_workers=0)
    unlabelled.setup("fit")
    image, label = unlabelled.train_dataset[0]
    assert len(unlabelled.train_dataset) == 6 and image.shape == (3, 64, 64) and label == -1
    assert -1 <= image.min() and image.max() <= 1
    labelled = STL10DataModule(data_dir=str(tmp_path), download=False, split="train", batch_size_per_device=2,
                               num_workers=0, conditional=True, num_classes=10)
    labelled.setup("fit")
    assert [labelled.train_dataset[i][1] for i in range(4)] == [0, 1, 2, 9] and labelled.model_classes == 10
    cfg = compose_config(["experiment=wavediff_stl10"])
    assert list(cfg.model.network_shape) == [12, 32, 32] and cfg.data.image_size == 64
