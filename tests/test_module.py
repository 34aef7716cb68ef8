import math

import lightning as L
import pytest
import torch

import src.ddgan.module as module_lib
from src.ddgan.data.gaussians import GaussianMixtureDataModule
from src.ddgan.diffusion import VPSchedule
from src.ddgan.losses import reconstruction_loss
from src.ddgan.module import DDGAN
from src.ddgan.nets.toy import ToyDiscriminator, ToyGenerator


def tiny_ddgan(**kwargs) -> DDGAN:
    defaults = {"nz": 2, "lr_g": 1e-3, "lr_d": 1e-3, "r1_gamma": 0.1, "lazy_reg": 2, "ema_decay": 0.9, "cosine_lr_decay": False}
    return DDGAN(
        generator=ToyGenerator(nz=2, num_timesteps=2, hidden_dim=16),
        discriminator=ToyDiscriminator(num_timesteps=2, hidden_dim=16),
        schedule=VPSchedule(2),
        sample_shape=[2],
        **(defaults | kwargs),
    )


def fit(model: DDGAN, tmp_path, epochs: int = 1, iterations: int = 4, ckpt_path=None, callbacks=()):
    trainer = L.Trainer(
        max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path, callbacks=list(callbacks),
    )
    data = GaussianMixtureDataModule(batch_size_per_device=32, iterations_per_epoch=iterations, seed=0)
    trainer.fit(model, datamodule=data, ckpt_path=ckpt_path)
    return trainer


def flat(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def test_training_changes_both_networks_and_r1_only_on_lazy_iterations(tmp_path, monkeypatch):
    r1_calls = []
    original = module_lib.r1_penalty
    monkeypatch.setattr(module_lib, "r1_penalty", lambda *a: r1_calls.append(1) or original(*a))
    model = tiny_ddgan(lazy_reg=3)
    g0, d0, ema0 = flat(model.generator), flat(model.discriminator), flat(model.generator_ema)
    trainer = fit(model, tmp_path, iterations=7)
    assert model.iteration == 7
    assert trainer.global_step == 14  # Lightning counts optimizer steps: two per iteration
    assert len(r1_calls) == 3  # iterations 0, 3, 6
    assert not torch.equal(flat(model.generator), g0)
    assert not torch.equal(flat(model.discriminator), d0)
    assert not torch.equal(flat(model.generator_ema), ema0)


def test_r1_gamma_zero_never_computes_r1(tmp_path, monkeypatch):
    monkeypatch.setattr(module_lib, "r1_penalty", lambda *a: pytest.fail("R1 computed with r1_gamma=0"))
    fit(tiny_ddgan(r1_gamma=0.0, lazy_reg=1), tmp_path, iterations=2)


def test_ema_update_is_an_exponential_moving_average():
    model = tiny_ddgan(ema_decay=0.75)
    with torch.no_grad():
        for p in model.generator.parameters():
            p.fill_(1.0)
        for p in model.generator_ema.parameters():
            p.fill_(0.0)
    model.update_ema()
    for p in model.generator_ema.parameters():
        torch.testing.assert_close(p, torch.full_like(p, 0.25))
    assert not any(p.requires_grad for p in model.generator_ema.parameters())


def test_ema_warmup_starts_from_a_short_average_and_reaches_ema_decay():
    model = tiny_ddgan(ema_decay=0.999, ema_warmup=True)
    assert model.ema_decay_now() == 0.1  # iteration 0: (1 + 0) / (10 + 0)
    model.iteration = 90
    assert model.ema_decay_now() == 0.91
    model.iteration = 10**6
    assert model.ema_decay_now() == 0.999
    assert tiny_ddgan(ema_decay=0.999).ema_decay_now() == 0.999  # off by default: the released EMA


def test_only_the_discriminator_moves_in_the_d_step_and_only_the_generator_in_the_g_step(tmp_path):
    model = tiny_ddgan()
    fit(model, tmp_path, iterations=1)  # attaches optimizers
    x_0 = torch.randn(16, 2)
    g0, d0 = flat(model.generator), flat(model.discriminator)
    model.discriminator_step(x_0)
    assert torch.equal(flat(model.generator), g0) and not torch.equal(flat(model.discriminator), d0)
    assert all(p.grad is None for p in model.discriminator.parameters())  # freed before the G step's memory peak
    d1 = flat(model.discriminator)
    model.generator_step(x_0)
    assert torch.equal(flat(model.discriminator), d1) and not torch.equal(flat(model.generator), g0)
    assert all(p.grad is None for p in model.generator.parameters())


class CaptureAtStart(L.Callback):
    def on_train_start(self, trainer, model):
        self.iteration = model.iteration
        self.ema = flat(model.generator_ema).clone()
        self.adam_d = [s["exp_avg_sq"].clone() for s in trainer.optimizers[0].state.values()]


def test_resume_continues_from_the_saved_iteration_with_optimizer_and_ema_state(tmp_path):
    L.seed_everything(0)
    first = tiny_ddgan()
    trainer = fit(first, tmp_path / "a", epochs=1, iterations=5)
    ckpt = tmp_path / "first.ckpt"
    trainer.save_checkpoint(ckpt)
    saved_ema = flat(first.generator_ema).clone()
    saved_adam = [s["exp_avg_sq"].clone() for s in trainer.optimizers[0].state.values()]

    capture = CaptureAtStart()
    resumed = tiny_ddgan()
    fit(resumed, tmp_path / "b", epochs=2, iterations=5, ckpt_path=ckpt, callbacks=[capture])
    assert capture.iteration == 5
    torch.testing.assert_close(capture.ema, saved_ema)
    for a, b in zip(capture.adam_d, saved_adam):
        torch.testing.assert_close(a, b)
    assert resumed.iteration == 10


class StopAfterFirstEpoch(L.Callback):
    """Simulates a job killed at an epoch boundary of a longer run, after its checkpoint."""

    def __init__(self, path):
        self.path = path

    def on_train_epoch_end(self, trainer, model):
        trainer.should_stop = True

    def on_train_end(self, trainer, model):
        trainer.save_checkpoint(self.path)


def test_resume_at_an_epoch_boundary_equals_an_uninterrupted_run(tmp_path):
    L.seed_everything(0)
    straight = tiny_ddgan(cosine_lr_decay=True)
    fit(straight, tmp_path / "straight", epochs=3, iterations=3)

    L.seed_everything(0)
    ckpt = tmp_path / "epoch1.ckpt"
    fit(tiny_ddgan(cosine_lr_decay=True), tmp_path / "first", epochs=3, iterations=3, callbacks=[StopAfterFirstEpoch(ckpt)])
    L.seed_everything(123)  # the resumed run must not depend on the new process's seed
    resumed = tiny_ddgan(cosine_lr_decay=True)
    fit(resumed, tmp_path / "resumed", epochs=3, iterations=3, ckpt_path=ckpt)
    assert resumed.iteration == straight.iteration == 9
    for a, b in ((straight.generator, resumed.generator), (straight.discriminator, resumed.discriminator), (straight.generator_ema, resumed.generator_ema)):
        torch.testing.assert_close(flat(a), flat(b), atol=1e-6, rtol=0)


def test_cosine_decay_over_an_iteration_budget_steps_after_every_iteration(tmp_path):
    model = tiny_ddgan(cosine_lr_decay=True, lr_decay_iterations=8, lr_min=0.0)
    fit(model, tmp_path, epochs=1, iterations=4)  # half the decay's length
    for optimizer in model.optimizers():
        assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * (1 + math.cos(math.pi * 4 / 8)) / 2)


@pytest.mark.parametrize(
    "kwargs, key",
    [({"lr_decay_iterations": 0}, "lr_decay_iterations"), ({"reconstruction_weighting": "snr"}, "reconstruction_weighting"), ({"reconstruction_samples": 0}, "reconstruction_samples"), ({"reconstruction_samples_from_t": -1}, "reconstruction_samples_from_t"), ({"lazy_reg": 0}, "lazy_reg"), ({"r1_gamma": -1.0}, "r1_gamma"), ({"ema_decay": 1.0}, "ema_decay"), ({"ema_decay": -0.1}, "ema_decay")],
)
def test_invalid_hyperparameters_are_rejected(kwargs, key):
    with pytest.raises(ValueError, match=key):
        tiny_ddgan(**kwargs)


def test_bf16_mixed_runs_the_networks_in_bf16_and_keeps_losses_r1_and_weights_in_fp32(tmp_path, monkeypatch):
    seen = {"d_out": set(), "loss_in": set(), "r1": set()}
    original_loss, original_r1 = module_lib.d_loss_real, module_lib.r1_penalty
    monkeypatch.setattr(module_lib, "d_loss_real", lambda logits: seen["loss_in"].add(logits.dtype) or original_loss(logits))
    def recording_r1(*args):
        r1 = original_r1(*args)
        seen["r1"].add(r1.dtype)
        return r1

    monkeypatch.setattr(module_lib, "r1_penalty", recording_r1)
    model = tiny_ddgan(lazy_reg=1)
    model.discriminator.register_forward_hook(lambda m, i, out: seen["d_out"].add(out.dtype))
    d0 = flat(model.discriminator)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", precision="bf16-mixed", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=GaussianMixtureDataModule(batch_size_per_device=32, iterations_per_epoch=3, seed=0))
    assert seen == {"d_out": {torch.bfloat16}, "loss_in": {torch.float32}, "r1": {torch.float32}}
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert torch.isfinite(flat(model.discriminator)).all() and not torch.equal(flat(model.discriminator), d0)
    assert model.nonfinite_updates == 0 and torch.isfinite(trainer.callback_metrics["train/r1"])


def test_r1_under_an_fp16_grad_scaler_equals_the_plain_r1():
    """16-mixed (GPU) takes ∇D of a scaled D and unscales the penalty; in fp32 both give the same number."""
    from types import SimpleNamespace

    model = tiny_ddgan()
    x_t, t, x_tp1 = torch.randn(8, 2, requires_grad=True), torch.zeros(8, dtype=torch.long), torch.randn(8, 2)
    plain = model.r1(model.discriminator(x_t, t, x_tp1), x_t)
    model._trainer = SimpleNamespace(precision_plugin=SimpleNamespace(scaler=torch.amp.GradScaler("cpu", init_scale=2.0**16)))
    scaled = model.r1(model.discriminator(x_t, t, x_tp1), x_t)
    torch.testing.assert_close(scaled, plain, rtol=1e-5, atol=0)


def test_signal_weighting_weighs_each_pairs_reconstruction_by_the_signal_share_of_x_tp1():
    x0_pred, x_0 = torch.zeros(3, 2), torch.tensor([[1.0, 1.0], [2.0, 2.0], [4.0, 4.0]])
    assert float(reconstruction_loss(x0_pred, x_0)) == pytest.approx(7 / 3)
    assert float(reconstruction_loss(x0_pred, x_0, torch.tensor([1.0, 0.5, 0.25]))) == pytest.approx(1.0)
    t = torch.arange(2)  # T = 2: levels 1 (τ ≈ 0.5) and 2 (τ = 1, almost pure noise)
    model = tiny_ddgan(reconstruction_weighting="signal")
    weights = model.reconstruction_weights(t)
    torch.testing.assert_close(weights, model.schedule.sqrt_alpha_bar[1:] ** 2)  # ᾱ at levels 1..T
    assert 0 < float(weights[1]) < 0.01 < float(weights[0])
    assert tiny_ddgan().reconstruction_weights(t) is None  # uniform: WaveDiff's term


def stepping_without_trainer(model: DDGAN) -> DDGAN:
    """`model` with a plain backward and zero-rate optimizers: generator_step runs without a Trainer and changes nothing."""
    model.manual_backward = lambda loss: loss.backward()
    optimizers = [torch.optim.SGD(model.discriminator.parameters(), lr=0), torch.optim.SGD(model.generator.parameters(), lr=0)]
    model.optimizers = lambda: optimizers
    return model


def test_reconstruction_term_adds_the_l1_of_x0_pred_to_the_g_loss(monkeypatch):
    """reconstruction_weight > 0: the G loss is the adversarial loss + weight * E|x̂_0 - x_0| (logged)."""
    x_0 = torch.randn(8, 2)
    losses = {}
    for weight in (0.0, 2.0):
        torch.manual_seed(0)
        model = stepping_without_trainer(tiny_ddgan(reconstruction_weight=weight))
        losses[weight] = model.generator_step(x_0)
    assert "reconstruction" not in losses[0.0]
    # same seed, same draws: the loss differs by exactly weight * the logged term
    torch.testing.assert_close(losses[2.0]["loss_g"], losses[0.0]["loss_g"] + 2.0 * losses[2.0]["reconstruction"])
    assert losses[2.0]["reconstruction"] > 0


def test_best_of_latents_picks_per_pair_the_draw_whose_x0_pred_is_nearest_x0():
    model = tiny_ddgan()
    x_0, x_tp1, t = torch.randn(5, 2), torch.randn(5, 2), torch.zeros(5, dtype=torch.long)
    torch.manual_seed(3)
    draws = model.latents(4 * 5, x_tp1).view(4, 5, -1)  # the draws best_of_latents makes under the same seed
    torch.manual_seed(3)
    best = model.best_of_latents(x_0, x_tp1, t, None, num_draws=4)
    with torch.no_grad():
        errors = torch.stack([(model.predict_x0(model.generator, x_tp1, t, z=draws[k]) - x_0).abs().mean(1) for k in range(4)])
    torch.testing.assert_close(best, draws[errors.argmin(0), torch.arange(5)])
    assert best.shape == (5, 2) and not best.requires_grad


def test_best_of_k_from_level_t_selects_only_the_pairs_at_or_above_it():
    model = tiny_ddgan(reconstruction_samples=4, reconstruction_samples_from_t=1)  # T = 2: levels 0 and 1
    x_0, x_tp1, t = torch.randn(6, 2), torch.randn(6, 2), torch.tensor([0, 1, 0, 1, 1, 0])
    calls = []
    model.best_of_latents = lambda x_0, x_tp1, t, y, k: calls.append((t, k)) or torch.full((len(t), 2), 7.0)
    z = model.generator_latents(x_0, x_tp1, t, None)
    (selected_t, k), = calls
    assert k == 4 and selected_t.tolist() == [1, 1, 1]
    assert (z[t == 1] == 7.0).all() and not (z[t == 0] == 7.0).any()  # one fresh draw below level 1
    model.hparams.reconstruction_samples_from_t = 2  # no pair selected: every z a fresh draw, no selection forward
    calls.clear()
    assert model.generator_latents(x_0, x_tp1, t, None).shape == (6, 2) and calls == []


def test_best_of_k_lowers_the_g_steps_reconstruction_and_k_1_keeps_one_fresh_draw(monkeypatch):
    x_0 = torch.randn(64, 2)
    terms = {}
    for k in (1, 16):
        torch.manual_seed(0)
        model = stepping_without_trainer(tiny_ddgan(reconstruction_weight=1.0, reconstruction_samples=k))
        calls = []
        monkeypatch.setattr(model, "best_of_latents", lambda *args, f=model.best_of_latents, calls=calls: calls.append(args[-1]) or f(*args))
        terms[k] = float(model.generator_step(x_0)["reconstruction"])
        assert calls == ([] if k == 1 else [16])
    assert terms[16] < terms[1]  # the nearest of 16 draws fits x_0 better than one
