"""Networks: FIR resampling against a literal reference, embeddings, tiny G and D, paper sizes on meta."""
import math

import pytest
import torch
import torch.nn.functional as F

from src.ddgan.nets.discriminator import LargeDiscriminator, SmallDiscriminator, minibatch_stddev
from src.ddgan.nets.layers import FourierEmbedding, PositionalEmbedding
from src.ddgan.nets.ncsnpp import NCSNpp
from src.ddgan.nets.resample import FIRDownsampleConv2d, FIRUpsampleConv2d, downsample_2d, fir_kernel, upsample_2d

# Paper configurations as YAML-ready kwargs (defaults of NCSNpp / SmallDiscriminator are CIFAR-10).
CIFAR10_G = {"image_size": 32, "image_channels": 3, "base_channels": 128, "channel_mult": [1, 2, 2, 2], "num_res_blocks": 2,
                 "attn_resolutions": [16], "nz": 100, "z_emb_dim": 256, "n_mlp": 4, "time_embedding": "positional"}
CIFAR10_D = {"image_size": 32, "image_channels": 3, "base_channels": 64, "t_emb_dim": 256}
CELEBA256_G = {"image_size": 256, "image_channels": 3, "base_channels": 64, "channel_mult": [1, 1, 2, 2, 4, 4],
                   "num_res_blocks": 2, "attn_resolutions": [16], "nz": 100, "z_emb_dim": 256, "n_mlp": 3,
                   "time_embedding": "positional"}
CELEBA256_D = {"image_size": 256, "image_channels": 3, "base_channels": 64, "t_emb_dim": 256}

TINY_G = {"image_size": 16, "image_channels": 3, "base_channels": 16, "channel_mult": [1, 2], "num_res_blocks": 1,
              "attn_resolutions": [8], "nz": 4, "z_emb_dim": 16, "n_mlp": 2}


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def randomize_(module: torch.nn.Module) -> torch.nn.Module:
    """Replace the (partly near-zero) initialisation by random weights, so every path carries signal."""
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.2)
    return module


# ----------------------------------------------------------------------------- FIR resampling

def upfirdn2d_reference(x, kernel, up=1, down=1, pad=(0, 0)):
    """Literal definition: insert up-1 zeros after each pixel, zero-pad, convolve with the FIR, keep every down-th."""
    n, c, h, w = x.shape
    y = x.new_zeros(n, c, h * up, w * up)
    y[:, :, ::up, ::up] = x
    y = F.pad(y, (pad[0], pad[1], pad[0], pad[1]))
    y = F.conv2d(y.reshape(n * c, 1, *y.shape[2:]), kernel.flip(0, 1)[None, None])
    y = y[:, :, ::down, ::down]
    return y.reshape(n, c, *y.shape[2:])


@pytest.fixture
def image():
    return torch.randn(2, 5, 8, 8, dtype=torch.float64)


def test_fir_kernel_is_normalised_outer_product():
    k = fir_kernel([1, 3, 3, 1])
    assert torch.allclose(k, torch.outer(torch.tensor([1., 3, 3, 1]), torch.tensor([1., 3, 3, 1])) / 64)


def test_downsample_matches_reference(image):
    k = fir_kernel().double()
    out = downsample_2d(image, k[None, None])
    assert out.shape == (2, 5, 4, 4)
    torch.testing.assert_close(out, upfirdn2d_reference(image, k, down=2, pad=(1, 1)))
    const = downsample_2d(torch.ones(1, 1, 8, 8, dtype=torch.float64), k[None, None])
    assert torch.allclose(const[..., 1:-1, 1:-1], torch.ones((), dtype=torch.float64))  # a constant stays constant


def test_upsample_matches_reference(image):
    k = fir_kernel().double()
    out = upsample_2d(image, k[None, None])
    assert out.shape == (2, 5, 16, 16)
    torch.testing.assert_close(out, upfirdn2d_reference(image, 4 * k, up=2, pad=(2, 1)))


def test_fused_conv_downsample_matches_reference(image):
    conv = FIRDownsampleConv2d(5, 7).double()
    torch.nn.init.normal_(conv.weight)
    torch.nn.init.normal_(conv.bias)
    blurred = upfirdn2d_reference(image, fir_kernel().double(), pad=(2, 2))
    torch.testing.assert_close(conv(image), F.conv2d(blurred, conv.weight, conv.bias, stride=2))


def test_fused_upsample_conv_matches_reference(image):
    conv = FIRUpsampleConv2d(5, 7).double()
    torch.nn.init.normal_(conv.weight)
    torch.nn.init.normal_(conv.bias)
    delta = torch.ones(1, 1, dtype=torch.float64)
    zero_inserted = upfirdn2d_reference(image, delta, up=2, pad=(2, 1))          # pad once for the 3x3 conv
    h = upfirdn2d_reference(F.conv2d(zero_inserted, conv.weight), 4 * fir_kernel().double(), pad=(1, 1))
    torch.testing.assert_close(conv(image), h + conv.bias[:, None, None])


def test_resampling_channels_last(image):
    k = fir_kernel().double()[None, None]
    x = image.to(memory_format=torch.channels_last)
    torch.testing.assert_close(downsample_2d(x, k), downsample_2d(image, k))
    torch.testing.assert_close(upsample_2d(x, k), upsample_2d(image, k))


# ----------------------------------------------------------------------------- embeddings

def test_positional_embedding_values():
    emb = PositionalEmbedding(8)(torch.tensor([0, 3]))
    freqs = 10000 ** (-torch.arange(4, dtype=torch.float64) / 3)
    expected = torch.cat([torch.sin(3 * freqs), torch.cos(3 * freqs)])
    torch.testing.assert_close(emb[0], torch.tensor([0., 0, 0, 0, 1, 1, 1, 1]))
    torch.testing.assert_close(emb[1].double(), expected, atol=1e-6, rtol=0)
    assert PositionalEmbedding(7)(torch.tensor([2])).shape == (1, 7)


def test_fourier_embedding_finite_at_zero_and_released_for_t_geq_1():
    fourier = FourierEmbedding(8, scale=16.0)
    t = torch.tensor([0, 1, 2, 3, 7])
    emb = fourier(t)
    assert emb.shape == (5, 16) and torch.isfinite(emb).all()
    released = torch.log(t[1:].float())[:, None] * fourier.frequencies[None, :] * 2 * math.pi   # log t, t >= 1
    assert torch.equal(emb[1:], torch.cat([torch.sin(released), torch.cos(released)], dim=1))
    torch.testing.assert_close(emb[0], fourier(torch.tensor([0.5]))[0])                       # t = 0 -> t = 1/2


# ----------------------------------------------------------------------------- generator

@pytest.mark.parametrize("time_embedding", ["positional", "fourier"])
def test_generator_tiny_forward_backward(time_embedding):
    g = randomize_(NCSNpp(**TINY_G, time_embedding=time_embedding))
    x, t, z = torch.randn(2, 3, 16, 16), torch.tensor([0, 1]), torch.randn(2, 4)
    out = g(x, t, z)
    assert out.shape == x.shape and torch.isfinite(out).all() and out.abs().max() <= 1
    out.square().mean().backward()
    for name, p in g.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    if time_embedding == "fourier":
        assert not g.time_embed.features.frequencies.requires_grad         # fixed random features, as released


def test_generator_names_by_resolution():
    g = NCSNpp(**TINY_G)
    assert list(g.enc) == ["16x16_block0", "8x8_down", "8x8_pyramid", "8x8_block0", "8x8_attn0"]
    assert list(g.dec) == ["8x8_block0", "8x8_block1", "8x8_attn", "16x16_up", "16x16_block0", "16x16_block1"]


def test_generator_options_and_channels_last():
    g = randomize_(NCSNpp(**TINY_G))
    x, t, z = torch.rand(4, 3, 16, 16), torch.tensor([0, 1, 2, 3]), torch.randn(4, 4)
    with torch.no_grad():
        reference = g(x, t, z)
        g_cl = g.to(memory_format=torch.channels_last)
        torch.testing.assert_close(g_cl(x.to(memory_format=torch.channels_last), t, z), reference)
        raw = NCSNpp(**TINY_G, final_tanh=False, centered=False)
        raw.load_state_dict(g.state_dict())
        torch.testing.assert_close(torch.tanh(raw((x + 1) / 2, t, z)), reference)


# ----------------------------------------------------------------------------- discriminators

@pytest.mark.parametrize("cls, size, blocks", [
    (SmallDiscriminator, 32, ["32x32", "16x16_down", "8x8_down", "4x4_down"]),
    (LargeDiscriminator, 64, ["32x32_down", "16x16_down", "8x8_down", "4x4_down", "2x2_down", "1x1_down"]),
])
def test_discriminator_tiny_forward_backward(cls, size, blocks):
    d = randomize_(cls(image_size=size, image_channels=3, base_channels=2, t_emb_dim=8))
    assert list(d.blocks) == blocks
    x_t = torch.randn(4, 3, size, size, requires_grad=True)
    logits = d(x_t, torch.tensor([0, 1, 2, 3]), torch.randn(4, 3, size, size))
    assert logits.shape == (4, 1) and torch.isfinite(logits).all()
    (grad,) = torch.autograd.grad(logits.sum(), x_t, create_graph=True)      # R1 needs a double backward
    (logits.mean() + grad.square().sum()).backward()
    for name, p in d.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_minibatch_stddev_groups_and_batch_constraint():
    h = torch.randn(8, 3, 2, 2)
    out = minibatch_stddev(h, group_size=4)
    assert out.shape == (8, 4, 2, 2)
    groups = h.reshape(4, 2, 3, 2, 2)                      # sample n is grouped with n +- 2, n +- 4, ...
    expected = groups.var(dim=0, unbiased=False).add(1e-8).sqrt().mean(dim=(1, 2, 3))
    torch.testing.assert_close(out[:, 3, 0, 0], expected.repeat(4))
    assert minibatch_stddev(torch.randn(3, 3, 2, 2)).shape == (3, 4, 2, 2)     # batch < group: one group
    with pytest.raises(ValueError, match="divisible"):
        minibatch_stddev(torch.randn(6, 3, 2, 2))


# ----------------------------------------------------------------------------- paper sizes (meta device)

@pytest.mark.parametrize("cls, kwargs, expected", [
    (NCSNpp, CIFAR10_G, 48_432_515),
    (SmallDiscriminator, CIFAR10_D, 12_741_633),
    (NCSNpp, CELEBA256_G, 39_726_979),
    (LargeDiscriminator, CELEBA256_D, 27_737_217),
])
def test_paper_parameter_counts(cls, kwargs, expected):
    with torch.device("meta"):
        assert n_params(cls(**kwargs)) == expected


@pytest.mark.slow
@pytest.mark.parametrize("generator, discriminator, size", [
    (CIFAR10_G, (SmallDiscriminator, CIFAR10_D), 32),
    (CELEBA256_G, (LargeDiscriminator, CELEBA256_D), 256),
])
def test_paper_size_networks_train_a_step_on_cpu(generator, discriminator, size):
    """The full CIFAR-10 and CelebA-HQ 256 networks: forward and backward at batch 2, finite, every weight reached."""
    d_class, d_kwargs = discriminator
    g, d = NCSNpp(**generator), d_class(**d_kwargs)
    x = torch.randn(2, 3, size, size)
    t = torch.tensor([0, 1])
    x0_pred = g(x, t, torch.randn(2, generator.get("nz", 100)))
    assert x0_pred.shape == x.shape
    logits = d(x0_pred, t, x)
    logits.sum().backward()
    assert logits.shape == (2, 1) and torch.isfinite(logits).all()
    for name, param in [*g.named_parameters(), *d.named_parameters()]:
        assert param.grad is not None and torch.isfinite(param.grad).all(), name


def test_defaults_are_cifar10_and_hydra_instantiates():
    hydra_utils = pytest.importorskip("hydra.utils")
    from omegaconf import OmegaConf
    with torch.device("meta"):
        assert n_params(NCSNpp()) == 48_432_515 and n_params(SmallDiscriminator()) == 12_741_633
        cfg = OmegaConf.create({"_target_": "src.ddgan.nets.ncsnpp.NCSNpp", **TINY_G})
        assert n_params(hydra_utils.instantiate(cfg)) == n_params(NCSNpp(**TINY_G))


def _plain_downsample(x, k):
    return F.conv2d(x, k.expand(x.shape[1], 1, 4, 4), stride=2, padding=1, groups=x.shape[1])


def _plain_upsample(x, k):
    return F.conv_transpose2d(x, 4 * k.expand(x.shape[1], 1, 4, 4), stride=2, padding=1, groups=x.shape[1])


@pytest.mark.parametrize("ours, plain, size", [(downsample_2d, _plain_downsample, 8), (downsample_2d, _plain_downsample, 7),
                                               (upsample_2d, _plain_upsample, 4)])
def test_resampling_gradients_of_every_order_match_plain_convolutions(ours, plain, size):
    """downsample/upsample differentiate as their adjoints; first and second derivatives equal autograd's through
    the grouped convolutions they replace (R1 differentiates D twice), odd sizes included."""
    k = fir_kernel().double()[None, None]
    x = torch.randn(2, 3, size, size, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(ours, (x, k))
    assert torch.autograd.gradgradcheck(ours, (x, k))
    weights = torch.randn_like(plain(x, k))
    grads = []
    for op in (ours, plain):
        (g,) = torch.autograd.grad(op(x, k).sin().mul(weights).sum(), x, create_graph=True)
        grads.append((g, *torch.autograd.grad(g.square().sum(), x)))
    torch.testing.assert_close(grads[0], grads[1])


def test_patch_size_networks_keep_the_image_shape():
    """patch_size=2: G maps (N, 3, 32, 32) to the same shape through a 16x16 U-Net; D reads 16x16 patches."""
    g = NCSNpp(image_size=32, image_channels=3, base_channels=8, channel_mult=[1, 2], num_res_blocks=1,
               attn_resolutions=[], nz=4, z_emb_dim=8, n_mlp=1, patch_size=2)
    d = SmallDiscriminator(image_size=32, image_channels=3, base_channels=4, t_emb_dim=8, patch_size=2)
    x, t, z = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3]), torch.randn(4, 4)
    assert g(x, t, z).shape == x.shape and g.resolutions == (16, 8)
    assert d(x, t, x).shape == (4, 1) and "16x16" in d.blocks
    with pytest.raises(ValueError, match="patch_size"):
        NCSNpp(image_size=30, patch_size=4)
