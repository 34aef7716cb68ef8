"""The DDGAN LightningModule: one iteration = a discriminator step (with lazy R1), then a generator step."""
import copy

import lightning as L
import torch
from torch import Tensor, nn

from src.ddgan.diffusion import VPSchedule, sample_timesteps
from src.ddgan.losses import d_loss_fake, d_loss_real, g_loss, r1_penalty
from src.ddgan.sampling import RandomSource, randn, sample


def validate_hyperparameters(*, r1_gamma: float, lazy_reg: int, ema_decay: float) -> None:
    """Raise a one-line ValueError naming the first invalid training hyperparameter."""
    if not isinstance(lazy_reg, int) or lazy_reg < 1:
        raise ValueError(f"model.lazy_reg={lazy_reg!r} is invalid: it must be an integer >= 1 (R1 every lazy_reg iterations).")
    if not r1_gamma >= 0:
        raise ValueError(f"model.r1_gamma={r1_gamma!r} is invalid: it must be >= 0 (0 disables R1).")
    if not 0 <= ema_decay < 1:
        raise ValueError(f"model.ema_decay={ema_decay!r} is invalid: it must lie in [0, 1) (the paper uses 0.999 or 0.9999).")


class DDGAN(L.LightningModule):
    """Denoising diffusion GAN: G(x_{t+1}, t, z) predicts x_0, D(x_t, t, x_{t+1}) judges pairs.

    Iterations are counted by `self.iteration` (Lightning's global_step advances once per
    optimizer step, i.e. twice per iteration here). R1 is applied when iteration % lazy_reg == 0,
    as in the released code (not rescaled by the interval).
    """

    def __init__(
        self,
        generator: nn.Module,  # G(x_tp1, t, z) -> x0_pred
        discriminator: nn.Module,  # D(x_t, t, x_tp1) -> logits (N, 1)
        schedule: VPSchedule,  # the discrete diffusion
        sample_shape: list[int],  # shape of one data point, e.g. [3, 32, 32] or [2]
        nz: int = 100,  # latent z dimension
        lr_g: float = 1.6e-4,  # generator learning rate
        lr_d: float = 1.25e-4,  # discriminator learning rate
        betas: tuple[float, float] = (0.5, 0.9),  # Adam betas for both networks
        lr_min: float = 1e-5,  # cosine decay floor
        cosine_lr_decay: bool = True,  # cosine decay per epoch over trainer.max_epochs
        r1_gamma: float = 0.02,  # R1 weight: loss += r1_gamma / 2 * E||∇D(x_t)||²
        lazy_reg: int = 15,  # R1 every lazy_reg iterations
        ema_decay: float = 0.9999,  # EMA of G's weights
    ):
        super().__init__()
        validate_hyperparameters(r1_gamma=r1_gamma, lazy_reg=lazy_reg, ema_decay=ema_decay)
        self.automatic_optimization = False
        self.save_hyperparameters(ignore=["generator", "discriminator", "schedule"])
        self.generator = generator
        self.discriminator = discriminator
        self.generator_ema = copy.deepcopy(generator).requires_grad_(False).eval()
        self.schedule = schedule
        self.sample_shape = tuple(sample_shape)
        self.iteration = 0

    def train(self, mode: bool = True) -> "DDGAN":
        super().train(mode)
        self.generator_ema.eval()  # the EMA copy only ever samples
        return self

    # ---- one training iteration ----------------------------------------------------------------
    def denoise(self, generator: nn.Module, x_tp1: Tensor, t: Tensor) -> Tensor:
        """One generated step: x'_t ~ q(x_t | x_{t+1}, x_0 = G(x_{t+1}, t, z)), fresh z."""
        z = torch.randn(x_tp1.shape[0], self.hparams.nz, device=x_tp1.device, dtype=x_tp1.dtype)
        return self.schedule.sample_posterior(generator(x_tp1, t, z), x_tp1, t)

    def real_pair(self, x_0: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """t ~ U{0..T-1} and a real pair (x_t, x_{t+1}) from data x_0."""
        t = sample_timesteps(x_0.shape[0], self.schedule.num_timesteps, x_0.device)
        return (t, *self.schedule.q_sample_pair(x_0, t))

    def discriminator_step(self, x_0: Tensor) -> dict[str, Tensor]:
        t, x_t, x_tp1 = self.real_pair(x_0)
        apply_r1 = self.hparams.r1_gamma > 0 and self.iteration % self.hparams.lazy_reg == 0
        x_t.requires_grad_(apply_r1)
        logits_real = self.discriminator(x_t, t, x_tp1)
        loss = d_loss_real(logits_real)
        logs = {"loss_d_real": loss.detach(), "d_real": logits_real.detach().mean()}
        if apply_r1:
            r1 = r1_penalty(logits_real, x_t)
            loss = loss + self.hparams.r1_gamma / 2 * r1
            logs["r1"] = r1.detach()
        with torch.no_grad():  # D's update needs no gradient through G
            x_t_fake = self.denoise(self.generator, x_tp1, t)
        logits_fake = self.discriminator(x_t_fake, t, x_tp1)
        loss_fake = d_loss_fake(logits_fake)
        loss = loss + loss_fake
        optimizer_d = self.optimizers()[0]
        optimizer_d.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        optimizer_d.step()
        return logs | {"loss_d_fake": loss_fake.detach(), "d_fake": logits_fake.detach().mean(), "loss_d": loss.detach()}

    def generator_step(self, x_0: Tensor) -> dict[str, Tensor]:
        t, _, x_tp1 = self.real_pair(x_0)  # fresh t, pair and z
        self.discriminator.requires_grad_(False)
        loss = g_loss(self.discriminator(self.denoise(self.generator, x_tp1, t), t, x_tp1))
        optimizer_g = self.optimizers()[1]
        optimizer_g.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        optimizer_g.step()
        self.discriminator.requires_grad_(True)
        return {"loss_g": loss.detach()}

    @torch.no_grad()
    def update_ema(self) -> None:
        """θ_ema ← decay·θ_ema + (1 - decay)·θ for G's parameters; buffers are copied."""
        ema_params, params = list(self.generator_ema.parameters()), list(self.generator.parameters())
        torch._foreach_lerp_(ema_params, params, 1 - self.hparams.ema_decay)
        for ema_buffer, buffer in zip(self.generator_ema.buffers(), self.generator.buffers()):
            ema_buffer.copy_(buffer)

    def training_step(self, batch, batch_idx: int) -> None:
        x_0 = batch[0] if isinstance(batch, (list, tuple)) else batch
        logs = self.discriminator_step(x_0)
        logs |= self.generator_step(x_0)
        self.update_ema()
        self.iteration += 1
        self.log_dict({f"train/{k}": v for k, v in logs.items()}, prog_bar=False, batch_size=x_0.shape[0])
        self.log("train/iteration", float(self.iteration), batch_size=x_0.shape[0])

    def on_train_epoch_end(self) -> None:
        for scheduler in self.lr_schedulers() or []:
            scheduler.step()
        optimizer_d, optimizer_g = self.optimizers()
        self.log_dict({"train/lr_d": optimizer_d.param_groups[0]["lr"], "train/lr_g": optimizer_g.param_groups[0]["lr"]})

    # ---- optimizers ----------------------------------------------------------------------------
    def configure_optimizers(self):
        hp = self.hparams
        optimizer_d = torch.optim.Adam(self.discriminator.parameters(), lr=hp.lr_d, betas=tuple(hp.betas), foreach=True)
        optimizer_g = torch.optim.Adam(self.generator.parameters(), lr=hp.lr_g, betas=tuple(hp.betas), foreach=True)
        if not hp.cosine_lr_decay:
            return [optimizer_d, optimizer_g]
        epochs = self.trainer.max_epochs if self.trainer.max_epochs and self.trainer.max_epochs > 0 else 1
        schedulers = [torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs, eta_min=hp.lr_min) for opt in (optimizer_d, optimizer_g)]
        return [optimizer_d, optimizer_g], schedulers

    # ---- sampling ------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, num_samples: int, *, rng: RandomSource = None, use_ema: bool = True, **kwargs):
        """num_samples samples x_0 (in the networks' data units) from noise, by the EMA generator by default."""
        generator = self.generator_ema if use_ema else self.generator
        x_T = randn((num_samples, *self.sample_shape), torch.empty((), device=self.device), rng)
        return sample(generator, self.schedule, x_T, nz=self.hparams.nz, rng=rng, **kwargs)

    # ---- checkpoint state beyond the state dict ------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["ddgan"] = {"iteration": self.iteration, "torch_rng_state": torch.get_rng_state()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("ddgan", {})
        self.iteration = state.get("iteration", 0)
        if "torch_rng_state" in state:
            torch.set_rng_state(state["torch_rng_state"])

