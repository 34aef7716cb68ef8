"""Every documented generator and discriminator option of conf/model trains two iterations; frozen parameters
(requires_grad=False, e.g. the Fourier time-embedding frequencies) stay out of the gradient check, the optimizers
and the EMA average, and stay frozen."""
import lightning as L
import pytest
import torch
from hydra.utils import instantiate

from tests.conftest import TINY_TOY
from tests.test_module import fit, flat, tiny_ddgan
from tests.test_visualization import TINY_IMAGE_MODEL

# 16 px stacked digits, 2 batches of 4 (the minibatch-stddev group): two iterations; lazy_reg=15 puts R1 on the first
TINY_IMAGE = TINY_IMAGE_MODEL + ["data.image_size=16", "data.num_images=8", "data.batch_size_per_device=4"]
LARGE_D = ["model.discriminator._target_=src.ddgan.nets.discriminator.LargeDiscriminator", "model.discriminator.patch_size=1",
           "model.sample_shape=[3,64,64]", "data.image_size=64"]  # six down blocks: 64 px is its smallest input
WAVELET = ["model.space=wavelet", "model.sample_shape=[3,32,32]", "data.image_size=32",  # 12 subbands at 16 px
           "model.generator.patch_size=1", "model.discriminator.patch_size=1"]

OPTIONS = {  # id: (base config, overrides); the base configs are stacked_digits' NCSN++ (positional time embedding,
    # input pyramid, skip rescale, tanh, centered, no dropout, 2x2 patches, channels_last) and the toy MLPs
    "image-defaults": (TINY_IMAGE, []),
    "time_embedding=fourier": (TINY_IMAGE, ["model.generator.time_embedding=fourier", "model.generator.fourier_scale=4.0"]),
    "input_pyramid=false": (TINY_IMAGE, ["model.generator.input_pyramid=false"]),
    "skip_rescale=false": (TINY_IMAGE, ["model.generator.skip_rescale=false"]),
    "final_tanh=false": (TINY_IMAGE, ["model.generator.final_tanh=false"]),
    "centered=false": (TINY_IMAGE, ["model.generator.centered=false"]),
    "dropout=0.1": (TINY_IMAGE, ["model.generator.dropout=0.1"]),
    "attn_resolutions=[]": (TINY_IMAGE, ["model.generator.attn_resolutions=[]"]),
    "num_res_blocks=2,n_mlp=1": (TINY_IMAGE, ["model.generator.num_res_blocks=2", "model.generator.n_mlp=1"]),
    "fir_taps=[1,1]": (TINY_IMAGE, ["model.generator.fir_taps=[1,1]"]),
    "patch_size=1": (TINY_IMAGE, ["model.generator.patch_size=1", "model.discriminator.patch_size=1"]),
    "channels_last=false": (TINY_IMAGE, ["model.channels_last=false"]),
    "D stddev_group=2,negative_slope=0": (TINY_IMAGE, ["model.discriminator.stddev_group=2",
                                                       "model.discriminator.negative_slope=0.0"]),
    "LargeDiscriminator": (TINY_IMAGE, LARGE_D),
    "D num_layers=3": (TINY_IMAGE, ["model.discriminator.num_layers=3"]),
    "space=wavelet": (TINY_IMAGE, WAVELET),
    "space=wavelet,subband_order=dwt_idwt": (TINY_IMAGE, [*WAVELET, "model.subband_order=dwt_idwt"]),
    "generator=wavelet_ncsnpp,space=wavelet": (TINY_IMAGE, [*WAVELET, "model/generator=wavelet_ncsnpp"]),
    "wavelet_ncsnpp switches off": (TINY_IMAGE, [*WAVELET, "model/generator=wavelet_ncsnpp", "model.generator.wavelet_pyramid=false",
                                                 "model.generator.wavelet_resblocks=false", "model.generator.frequency_bottleneck=false"]),
    "toy-defaults": (TINY_TOY, ["diffusion.num_timesteps=2"]),
    "toy num_fourier_frequencies=0,data_std=null": (TINY_TOY, [
        "diffusion.num_timesteps=2", "model.generator.num_fourier_frequencies=0",
        "model.discriminator.num_fourier_frequencies=0", "model.generator.data_std=null"]),
}


def frozen(network: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in network.named_parameters() if not p.requires_grad}


@pytest.mark.parametrize("base, overrides", OPTIONS.values(), ids=OPTIONS.keys())
def test_every_documented_network_option_trains_two_iterations(compose, one_thread, tmp_path, base, overrides):
    cfg = compose(base + overrides, tmp_path)
    model = instantiate(cfg.model, _convert_="partial")
    before = {"g": flat(model.generator), "d": flat(model.discriminator), "ema": flat(model.generator_ema)}
    frozen_g = frozen(model.generator)
    trainer = L.Trainer(max_epochs=1, limit_train_batches=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=instantiate(cfg.data))
    assert model.iteration == 2 and model.nonfinite_updates == 0
    for name, network in (("g", model.generator), ("d", model.discriminator), ("ema", model.generator_ema)):
        after = flat(network)
        assert torch.isfinite(after).all() and not torch.equal(after, before[name]), name
    for name, value in frozen_g.items():  # constants: unchanged in G and copied, not averaged, into the EMA G
        assert torch.equal(model.generator.get_parameter(name), value)
        assert torch.equal(model.generator_ema.get_parameter(name), value)
    trained = {id(p) for optimizer in trainer.optimizers for group in optimizer.param_groups for p in group["params"]}
    assert all(id(p) not in trained for p in model.parameters() if not p.requires_grad)
    if "time_embedding=fourier" in overrides:
        assert set(frozen_g) == {"time_embed.features.frequencies"}


def test_frozen_generator_parameters_are_copied_into_the_ema_not_averaged(compose):
    overrides = ["model.generator.time_embedding=fourier", "model.ema_decay=0.75", "model.ema_warmup=false"]
    model = instantiate(compose(TINY_IMAGE + overrides).model, _convert_="partial")
    with torch.no_grad():
        for network, value in ((model.generator, 1.0), (model.generator_ema, 0.0)):
            for p in network.parameters():
                p.fill_(value)
    model.update_ema()
    for name, p in model.generator_ema.named_parameters():
        frozen_in_g = not model.generator.get_parameter(name).requires_grad
        torch.testing.assert_close(p, torch.full_like(p, 1.0 if frozen_in_g else 0.25), msg=name)
    assert not model.generator.time_embed.features.frequencies.requires_grad


def test_frozen_discriminator_parameters_stay_frozen_through_the_g_step(tmp_path):
    model = tiny_ddgan()
    bias = model.discriminator.net[0].bias.requires_grad_(False)
    value = bias.detach().clone()
    fit(model, tmp_path, iterations=3)  # the G step turns D's gradients off and back on: only the trainable ones
    assert not bias.requires_grad and torch.equal(bias.detach(), value)
    assert all(p.requires_grad for name, p in model.discriminator.named_parameters() if name != "net.0.bias")
