"""The module's speed options: channels_last and torch.compile give the eager results, and checkpoints keep plain
parameter names (no torch.compile `_orig_mod.` prefix); the CUDA-graphed sampler (GPU only)."""
import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from src.ddgan.diffusion import VPSchedule
from src.ddgan.losses import r1_penalty
from src.ddgan.module import DDGAN
from src.ddgan.nets.discriminator import SmallDiscriminator
from src.ddgan.nets.ncsnpp import NCSNpp
from src.ddgan.sampling import PerSampleGenerator, cuda_graphed
from tests.test_module import fit, tiny_ddgan


def tiny_image_ddgan(**kwargs) -> DDGAN:
    torch.manual_seed(0)
    return DDGAN(
        generator=NCSNpp(image_size=32, image_channels=3, base_channels=8, channel_mult=[1, 2], num_res_blocks=1,
                         attn_resolutions=[16], nz=4, z_emb_dim=16, n_mlp=2),
        discriminator=SmallDiscriminator(image_size=32, image_channels=3, base_channels=4, t_emb_dim=8),
        schedule=VPSchedule(2), sample_shape=[3, 32, 32], nz=4, cosine_lr_decay=False, lazy_reg=1, **kwargs)


def d_outputs(model: DDGAN) -> tuple[torch.Tensor, torch.Tensor]:
    """D's logits and R1 penalty on fixed pairs."""
    generator = torch.Generator().manual_seed(1)
    x_t, x_tp1 = torch.randn(2, 4, 3, 32, 32, generator=generator)
    x_t = model.memory_format(x_t).requires_grad_(True)
    logits = model.discriminator(x_t, torch.tensor([0, 1, 0, 1]), model.memory_format(x_tp1))
    return logits, r1_penalty(logits, x_t)


def samples(model: DDGAN) -> torch.Tensor:
    return model.sample(4, rng=PerSampleGenerator(0, [0, 1, 2, 3]))


def test_channels_last_gives_the_same_samples_and_discriminator_and_trains(tmp_path):
    eager, fast = tiny_image_ddgan(), tiny_image_ddgan(channels_last=True)
    for network in (fast.generator, fast.discriminator, fast.generator_ema):
        convs = [p for p in network.parameters() if p.ndim == 4]
        assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    assert list(fast.state_dict()) == list(eager.state_dict())
    torch.testing.assert_close(samples(fast), samples(eager), rtol=1e-4, atol=1e-5)
    for fast_value, eager_value in zip(d_outputs(fast), d_outputs(eager)):
        torch.testing.assert_close(fast_value, eager_value, rtol=1e-4, atol=1e-6)
    # training draws its noise with randn_like, which fills channels_last tensors in memory order: other
    # (equally distributed) noise than in the eager run, so only finiteness is compared here
    trainer = L.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(fast, train_dataloaders=DataLoader(TensorDataset(torch.rand(4, 3, 32, 32) * 2 - 1), batch_size=4))
    assert all(torch.isfinite(trainer.callback_metrics[name]) for name in ("train/loss_d", "train/loss_g", "train/r1"))


@pytest.fixture(scope="module")
def compiler():
    """Skips when torch.compile cannot build a kernel here (e.g. no C compiler for the CPU backend)."""
    try:
        torch.compile(lambda x: x * 2 + 1)(torch.zeros(3))
    except Exception as error:  # noqa: BLE001 - any backend failure means compile cannot be tested here
        pytest.skip(f"torch.compile does not work on this machine: {type(error).__name__}: {error}"[:300])


def test_compile_matches_eager_training_sampling_and_checkpoints(compiler, tmp_path):
    torch.manual_seed(0)
    eager = tiny_ddgan(lazy_reg=2)  # iteration 0 has R1 (D runs eagerly), iteration 1 does not
    compiled = tiny_ddgan(lazy_reg=2, compile=True)
    compiled.load_state_dict(eager.state_dict())
    trainers = []
    for model in (eager, compiled):
        torch.manual_seed(2)
        trainers.append(fit(model, tmp_path, iterations=2))
    for name in ("train/loss_d", "train/loss_g", "train/grad_norm_d"):
        torch.testing.assert_close(trainers[1].callback_metrics[name], trainers[0].callback_metrics[name],
                                   rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(samples(compiled), samples(eager), rtol=1e-4, atol=1e-5)

    trainers[1].save_checkpoint(tmp_path / "compiled.ckpt")
    state = torch.load(tmp_path / "compiled.ckpt", weights_only=False)["state_dict"]
    assert list(state) == list(eager.state_dict()) and not any("_orig_mod" in key for key in state)
    plain = tiny_ddgan(lazy_reg=2)
    plain.load_state_dict(state)  # strict: the same names as an uncompiled model
    torch.testing.assert_close(samples(plain), samples(compiled), rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_cuda_graphed_sampler_replays_fresh_samples():
    model = tiny_image_ddgan(channels_last=True).cuda().eval()
    draw = cuda_graphed(lambda: model.sample(4))
    first = draw().clone()
    second = draw()
    assert first.shape == (4, 3, 32, 32) and torch.isfinite(first).all() and torch.isfinite(second).all()
    assert not torch.equal(first, second)  # the captured RNG advances with every replay
