"""The DDGAN LightningModule: one iteration = a discriminator step (with lazy R1), then a generator step."""
import contextlib
import copy
import logging

import lightning as L
import torch
from torch import Tensor, nn

from src.ddgan import wavelets
from src.ddgan.diffusion import VPSchedule, sample_timesteps
from src.ddgan.distributed import all_reduce_mean_, seed_process
from src.ddgan.losses import d_loss_fake, d_loss_real, g_loss, l1_per_pair, r1_penalty, reconstruction_loss
from src.ddgan.sampling import RandomSource, index_labels, randn, sample

log = logging.getLogger(__name__)

RECONSTRUCTION_WEIGHTINGS = ("uniform", "signal")


def validate_hyperparameters(*, r1_gamma: float, lazy_reg: int, ema_decay: float, max_consecutive_nonfinite: int = 10,
                             lr_decay_iterations: int | None = None, reconstruction_weighting: str = "uniform",
                             reconstruction_samples: int = 1, reconstruction_samples_from_t: int = 0) -> None:
    """Raise a one-line ValueError naming the first invalid training hyperparameter."""
    if reconstruction_weighting not in RECONSTRUCTION_WEIGHTINGS:
        raise ValueError(f"model.reconstruction_weighting={reconstruction_weighting!r} is invalid: use one of "
                         f"{', '.join(RECONSTRUCTION_WEIGHTINGS)} (every pair alike, or by the signal share of x_t+1).")
    if not isinstance(reconstruction_samples, int) or reconstruction_samples < 1:
        raise ValueError(f"model.reconstruction_samples={reconstruction_samples!r} is invalid: use an integer >= 1 "
                         "(the G step's z per real pair is the best of that many draws; 1: one fresh draw).")
    if not isinstance(reconstruction_samples_from_t, int) or reconstruction_samples_from_t < 0:
        raise ValueError(f"model.reconstruction_samples_from_t={reconstruction_samples_from_t!r} is invalid: use an "
                         "integer >= 0 (pairs at levels t >= it get the best of K draws; 0: every pair).")
    if lr_decay_iterations is not None and (not isinstance(lr_decay_iterations, int) or lr_decay_iterations < 1):
        raise ValueError(f"model.lr_decay_iterations={lr_decay_iterations!r} is invalid: use an integer >= 1 "
                         "(the cosine decay's length in iterations) or null (decay per epoch over trainer.max_epochs).")
    if not isinstance(lazy_reg, int) or lazy_reg < 1:
        raise ValueError(f"model.lazy_reg={lazy_reg!r} is invalid: it must be an integer >= 1 (R1 every lazy_reg iterations).")
    if not r1_gamma >= 0:
        raise ValueError(f"model.r1_gamma={r1_gamma!r} is invalid: it must be >= 0 (0 disables R1).")
    if not 0 <= ema_decay < 1:
        raise ValueError(f"model.ema_decay={ema_decay!r} is invalid: it must lie in [0, 1) (the paper uses 0.999 or 0.9999).")
    if not isinstance(max_consecutive_nonfinite, int) or max_consecutive_nonfinite < 1:
        raise ValueError(f"model.max_consecutive_nonfinite={max_consecutive_nonfinite!r} is invalid: it must be an integer >= 1 "
                         "(training stops after that many skipped non-finite updates in a row).")


def trainable_parameters(network: nn.Module) -> list[nn.Parameter]:
    """The parameters an optimizer trains: frozen ones (requires_grad=False) are constants of the network."""
    return [param for param in network.parameters() if param.requires_grad]


class TrainingDiverged(RuntimeError):
    """Raised at an iteration boundary after max_consecutive_nonfinite skipped updates of D or G in a row."""


class DDGAN(L.LightningModule):
    """Denoising diffusion GAN: G(x_{t+1}, t, z) predicts x_0, D(x_t, t, x_{t+1}) judges pairs.

    Class-conditional with num_classes > 0: G(x_{t+1}, t, z, y) and D(x_t, t, x_{t+1}, y) take the data's label y
    (batches are (x_0, y)); generated pairs are judged under the label of the real x_0 they were made from, and
    `sample` draws given labels (by default sample i has class i mod num_classes). num_classes = 0 is the paper's
    unconditional model, unchanged.

    Iterations are counted by `self.iteration` (Lightning's global_step advances once per
    optimizer step, i.e. twice per iteration here). R1 is applied when iteration % lazy_reg == 0,
    as in the released code (not rescaled by the interval).

    Under mixed precision the networks run in bf16/fp16 while the losses, the R1 penalty and the posterior
    step stay in fp32. Under DDP (src.ddgan.distributed.GANDDPStrategy) the module is not wrapped: `update`
    averages gradients and logged values over processes before each optimizer step. A non-finite loss or
    gradient skips that optimizer step (gradients dropped); `max_consecutive_nonfinite` in a row stop training.

    `space` is where the networks work: "pixel" (the data itself) or "wavelet" (WaveDiff: to_wavelet_space of each
    image, 4 C channels at half resolution, in `subband_order`). Data enters through `to_network_space` (train_iteration)
    and every sample leaves through `to_data_space` (sample): `sample_shape` is always the data's, `network_shape` the
    networks'.

    `compile` wraps the forward of G, D and the EMA G with torch.compile in place (state-dict names stay plain);
    R1 iterations run D's real forward eagerly, as torch.compile cannot double-backward. `channels_last` puts the
    image networks and their inputs in channels_last memory format.
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
        lr_decay_iterations: int | None = None,  # with cosine_lr_decay: decay per iteration over this many instead
        r1_gamma: float = 0.02,  # R1 weight: loss += r1_gamma / 2 * E||∇D(x_t)||²
        lazy_reg: int = 15,  # R1 every lazy_reg iterations
        ema_decay: float = 0.9999,  # EMA of G's weights
        ema_warmup: bool = False,  # decay min(ema_decay, (1 + n) / (10 + n)) at iteration n: short runs forget the init
        reconstruction_weight: float = 0.0,  # G loss += weight * E|x̂_0 - x_0| on the real pairs (WaveDiff); 0: the paper's loss
        reconstruction_weighting: str = "uniform",  # uniform (WaveDiff) | signal: each pair weighted by ᾱ_{t+1}
        reconstruction_samples: int = 1,  # K > 1: the G step's z per real pair is the best of K draws (least L1 to x_0)
        reconstruction_samples_from_t: int = 0,  # the best of K only for pairs at levels t >= this; one draw below
        max_consecutive_nonfinite: int = 10,  # stop after this many skipped non-finite D (or G) updates in a row
        compile: bool = False,  # torch.compile the forward of G, D and the EMA G
        compile_mode: str = "default",  # torch.compile mode: default | reduce-overhead | max-autotune
        channels_last: bool = False,  # image networks and inputs in channels_last memory format
        space: str = "pixel",  # pixel | wavelet: the networks see the data, or its Haar subbands (WaveDiff)
        subband_order: str = "pytorch_wavelets",  # wavelet space: the released Haar order (src/ddgan/wavelets.py)
        network_shape: list[int] | None = None,  # the config's derived model.network_shape (checked); None: derived here
        num_classes: int = 0,  # > 0: class-conditional G and D (their num_classes must agree); 0: unconditional
    ):
        super().__init__()
        validate_hyperparameters(r1_gamma=r1_gamma, lazy_reg=lazy_reg, ema_decay=ema_decay,
                                 max_consecutive_nonfinite=max_consecutive_nonfinite, lr_decay_iterations=lr_decay_iterations,
                                 reconstruction_weighting=reconstruction_weighting,
                                 reconstruction_samples=reconstruction_samples,
                                 reconstruction_samples_from_t=reconstruction_samples_from_t)
        wavelets.check_subband_order(subband_order)
        derived = wavelets.network_shape(sample_shape, space)
        if network_shape is not None and [int(d) for d in network_shape] != derived:
            raise ValueError(f"model.network_shape={list(network_shape)} does not follow model.sample_shape={list(sample_shape)} "
                             f"in model.space={space} ({derived}): drop the model.network_shape override (it is derived)")
        for role, network in (("generator", generator), ("discriminator", discriminator)):
            if getattr(network, "num_classes", 0) != num_classes:
                raise ValueError(f"model.{role}.num_classes={getattr(network, 'num_classes', 0)} differs from "
                                 f"model.num_classes={num_classes}: both networks take the model's classes (drop the override)")
        self.num_classes = num_classes
        self.automatic_optimization = False
        self.save_hyperparameters(ignore=["generator", "discriminator", "schedule"])
        self.generator = generator
        self.discriminator = discriminator
        self.generator_ema = copy.deepcopy(generator).requires_grad_(False).eval()
        if channels_last:
            self.to_channels_last()
        for network in (self.generator, self.discriminator, self.generator_ema):
            if compile:
                network.compile(mode=compile_mode)  # in place: no `_orig_mod.` in state-dict names
        self.schedule = schedule
        self.sample_shape = tuple(sample_shape)  # one data point (what samples have)
        self.network_shape = tuple(derived)  # one input of G and D
        self.iteration = 0
        self.nonfinite_updates = 0  # skipped updates since the start of the run (checkpointed)
        self.latest_logs: dict[str, Tensor] = {}  # the training values last computed, logged every log_every_n_steps
        self.consecutive_nonfinite = {"d": 0, "g": 0}
        self.divergence: str | None = None  # set when training must stop; raised at the iteration boundary

    def train(self, mode: bool = True) -> "DDGAN":
        super().train(mode)
        self.generator_ema.eval()  # the EMA copy only ever samples
        return self

    def to_channels_last(self) -> "DDGAN":
        """Image networks (only their 4-D conv weights change) and, from now on, their inputs in channels_last."""
        for network in (self.generator, self.discriminator, self.generator_ema):
            network.to(memory_format=torch.channels_last)
        self.hparams.channels_last = True
        return self

    def memory_format(self, x: Tensor) -> Tensor:
        """Image batches (N, C, H, W) in the networks' memory format."""
        return x.contiguous(memory_format=torch.channels_last) if self.hparams.channels_last and x.ndim == 4 else x

    # ---- the networks' space -------------------------------------------------------------------
    @property
    def space(self) -> str:
        return self.hparams.get("space", "pixel")  # checkpoints written before model.space trained in pixel space

    def to_network_space(self, x: Tensor) -> Tensor:
        """Data (N, *sample_shape) -> what the networks see, (N, *network_shape)."""
        return wavelets.to_wavelet_space(x, self.hparams.subband_order) if self.space == "wavelet" else x

    def to_data_space(self, x: Tensor) -> Tensor:
        """The inverse of `to_network_space`: (N, *network_shape) -> data (N, *sample_shape)."""
        return wavelets.from_wavelet_space(x, self.hparams.subband_order) if self.space == "wavelet" else x

    # ---- class labels -------------------------------------------------------------------------
    def labels(self, y: Tensor | None) -> dict[str, Tensor]:
        """The networks' label argument: {"y": y} for a conditional model, {} for an unconditional one."""
        return {"y": y} if self.num_classes else {}

    def check_class_label(self, label, key: str = "class_label", shown=None) -> int:
        """`label` if it is one of the model's classes; else a one-line ValueError naming `key` and its value (`shown`,
        default the label), also for any label given to an unconditional model."""
        shown = label if shown is None else shown
        if not self.num_classes:
            raise ValueError(f"{key}={shown!r} given to an unconditional model (model.num_classes=0): drop {key}")
        if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < self.num_classes:
            raise ValueError(f"{key}={shown!r} is invalid: the model's classes are 0..{self.num_classes - 1}")
        return label

    def default_labels(self, num_samples: int, labels: Tensor | None) -> Tensor | None:
        """The labels to sample: `labels` (checked), else for a conditional model class i mod num_classes for
        sample i (every class equally often), else None."""
        if labels is None:
            default = index_labels(range(num_samples), self.num_classes)
            return default.to(self.device) if default is not None else None
        if not self.num_classes:
            raise ValueError("class labels were given to an unconditional model (model.num_classes=0)")
        labels = torch.as_tensor(labels, dtype=torch.long, device=self.device)
        if len(labels) != num_samples or labels.min() < 0 or labels.max() >= self.num_classes:
            raise ValueError(f"expected {num_samples} class labels in 0..{self.num_classes - 1}, got "
                             f"{len(labels)} in {labels.min().item()}..{labels.max().item()}")
        return labels

    # ---- one training iteration ----------------------------------------------------------------
    def latents(self, num: int, like: Tensor) -> Tensor:
        """`num` fresh draws of z ~ N(0, I)."""
        return torch.randn(num, self.hparams.nz, device=like.device, dtype=like.dtype)

    def predict_x0(self, generator: nn.Module, x_tp1: Tensor, t: Tensor, y: Tensor | None = None,
                   z: Tensor | None = None) -> Tensor:
        """x̂_0 = G(x_{t+1}, t, z[, y]), with a fresh z unless one is given, in fp32."""
        z = self.latents(x_tp1.shape[0], x_tp1) if z is None else z
        return generator(x_tp1, t, z, **self.labels(y)).float()

    @torch.no_grad()
    def best_of_latents(self, x_0: Tensor, x_tp1: Tensor, t: Tensor, y: Tensor | None, num_draws: int) -> Tensor:
        """Per real pair, the z among `num_draws` fresh draws whose G(x_{t+1}, t, z) lies closest (L1) to x_0.
        Trained on those, each real x_0 pulls the draw nearest to it (as in implicit maximum likelihood estimation),
        so G spreads its z over the modes of p(x_0 | x_{t+1}) instead of returning their median for every z."""
        n = x_tp1.shape[0]
        z = self.latents(num_draws * n, x_tp1)  # draw k of pair i at row k * n + i
        repeat = lambda a: a.repeat(num_draws, *[1] * (a.dim() - 1))
        x0_preds = self.predict_x0(self.generator, self.memory_format(repeat(x_tp1)), repeat(t),
                                   None if y is None else repeat(y), z)
        errors = l1_per_pair(x0_preds, repeat(x_0)).view(num_draws, n)
        return z.view(num_draws, n, -1)[errors.argmin(0), torch.arange(n, device=z.device)]

    def generator_latents(self, x_0: Tensor, x_tp1: Tensor, t: Tensor, y: Tensor | None) -> Tensor | None:
        """z for the G step: the best of K draws for pairs at levels t >= reconstruction_samples_from_t (where
        p(x_0 | x_{t+1}) is wide), one fresh draw for the rest; None (fresh draws) when K = 1."""
        num_draws = self.hparams.get("reconstruction_samples", 1)
        if num_draws == 1:
            return None
        selected = t >= self.hparams.get("reconstruction_samples_from_t", 0)
        if selected.all():
            return self.best_of_latents(x_0, x_tp1, t, y, num_draws)
        z = self.latents(x_tp1.shape[0], x_tp1)
        if selected.any():
            z[selected] = self.best_of_latents(x_0[selected], x_tp1[selected], t[selected],
                                               None if y is None else y[selected], num_draws)
        return z

    def denoise(self, generator: nn.Module, x_tp1: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        """One generated step: x'_t ~ q(x_t | x_{t+1}, x_0 = G(x_{t+1}, t, z[, y])), fresh z (posterior in fp32)."""
        return self.schedule.sample_posterior(self.predict_x0(generator, x_tp1, t, y), x_tp1, t)

    def real_pair(self, x_0: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """t ~ U{0..T-1} and a real pair (x_t, x_{t+1}) from data x_0."""
        t = sample_timesteps(x_0.shape[0], self.schedule.num_timesteps, x_0.device)
        return (t, *self.schedule.q_sample_pair(self.memory_format(x_0), t))

    def full_precision(self):
        """A context that turns autocast off: losses and R1 are computed in fp32 under mixed precision."""
        return torch.autocast(device_type=self.device.type, enabled=False)

    def r1(self, logits_real: Tensor, x_t: Tensor) -> Tensor:
        """E||∇_{x_t} D||² in fp32. Under fp16 (GradScaler) ∇D is taken of a scaled D, as the PyTorch AMP recipe
        for gradient penalties does, so small gradients do not flush to zero in the fp16 backward."""
        scaler = self.grad_scaler()
        if scaler is None:
            return r1_penalty(logits_real, x_t)
        # d sum(scale * D) / dD = scale per sample: keep it well inside fp16 and never above the scaler's own scale,
        # so an overflow (inf R1, inf gradients) makes the GradScaler lower both (one host sync per R1 iteration)
        scale = min(scaler.get_scale(), 1024.0)
        return r1_penalty(logits_real * scale, x_t) / scale**2

    def discriminator_step(self, x_0: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        """Real pairs (+ R1), then generated pairs; two backward passes, so the real graph (with R1's
        double-backward graph) is freed before the generated pass is built: a lower memory peak, the same gradient."""
        t, x_t, x_tp1 = self.real_pair(x_0)
        apply_r1 = self.hparams.r1_gamma > 0 and self.iteration % self.hparams.lazy_reg == 0
        x_t.requires_grad_(apply_r1)
        # R1 differentiates twice through D, which compiled graphs cannot: this forward runs eagerly then
        with torch.compiler.set_stance("force_eager") if apply_r1 and self.hparams.compile else contextlib.nullcontext():
            logits_real = self.discriminator(x_t, t, x_tp1, **self.labels(y)).float()
        with self.full_precision():
            loss_real = d_loss_real(logits_real)
            logs = {"loss_d_real": loss_real.detach(), "d_real": logits_real.detach().mean()}
            if apply_r1:
                r1 = self.r1(logits_real, x_t)
                loss_real = loss_real + self.hparams.r1_gamma / 2 * r1
                logs["r1"] = r1.detach()
        self.manual_backward(loss_real)
        with torch.no_grad():  # D's update needs no gradient through G
            x_t_fake = self.denoise(self.generator, x_tp1, t, y)
        logits_fake = self.discriminator(x_t_fake, t, x_tp1, **self.labels(y)).float()
        with self.full_precision():
            loss_fake = d_loss_fake(logits_fake)
        self.manual_backward(loss_fake)
        logs |= {"loss_d_fake": loss_fake.detach(), "d_fake": logits_fake.detach().mean(),
                 "loss_d": loss_real.detach() + loss_fake.detach()}
        return self.update(self.optimizers()[0], "d", self.discriminator, logs)

    def generator_step(self, x_0: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        t, _, x_tp1 = self.real_pair(x_0)  # fresh t, pair and z
        trainable_d = trainable_parameters(self.discriminator)
        for param in trainable_d:  # frozen ones (requires_grad=False) stay frozen after this step
            param.requires_grad_(False)
        try:
            z = self.generator_latents(x_0, x_tp1, t, y)
            x0_pred = self.predict_x0(self.generator, x_tp1, t, y, z)
            logits = self.discriminator(self.schedule.sample_posterior(x0_pred, x_tp1, t), t, x_tp1,
                                        **self.labels(y)).float()
            with self.full_precision():
                loss = g_loss(logits)
                logs = {}
                if self.hparams.get("reconstruction_weight", 0.0) > 0:
                    reconstruction = reconstruction_loss(x0_pred, x_0, self.reconstruction_weights(t))
                    loss = loss + self.hparams.reconstruction_weight * reconstruction
                    logs["reconstruction"] = reconstruction.detach()
            self.manual_backward(loss)
            return self.update(self.optimizers()[1], "g", self.generator, {"loss_g": loss.detach(), **logs})
        finally:
            for param in trainable_d:
                param.requires_grad_(True)

    def reconstruction_weights(self, t: Tensor) -> Tensor | None:
        """Per-pair weights of the reconstruction term: None (uniform, WaveDiff's) or, under "signal", ᾱ_{t+1}, the
        share of x_{t+1}'s variance that is signal. The L1 fit pulls x̂_0 to the median of p(x_0 | x_{t+1}): a sharp
        target where that posterior is narrow (low t), a mode-averaging blur where it is wide (high t), where the
        adversarial term alone should decide."""
        if self.hparams.get("reconstruction_weighting", "uniform") == "uniform":
            return None
        return self.schedule.sqrt_alpha_bar[t + 1] ** 2

    # ---- one optimizer update: gradient averaging, gradient norm, divergence guard, step -----------
    def update(self, optimizer, name: str, network: nn.Module, logs: dict[str, Tensor]) -> dict[str, Tensor]:
        """The optimizer update that ends the D (name "d") or G ("g") step, in one place: average `network`'s
        gradients and the logged values over processes, take the gradient norm, drop the gradients of a non-finite
        update (Adam skips parameters without gradients: no step, no state change), step, zero the gradients.

        logs["loss_" + name] is the loss of this update. Returns the averaged logs plus the gradient norm.
        Frozen parameters (requires_grad=False, e.g. the Fourier time-embedding frequencies) take no part.
        """
        grads = []
        for param_name, param in network.named_parameters():
            if not param.requires_grad:
                continue
            if param.grad is None:
                raise RuntimeError(f"{name.upper()} parameter {param_name!r} received no gradient: every parameter must be "
                                   "used in every step, or the processes' gradient averaging would differ between ranks.")
            grads.append(param.grad)
        values = torch.stack([v.float() for v in logs.values()])
        all_reduce_mean_([*grads, values])  # one collective per update; a no-op in one process
        logs = dict(zip(logs, values.unbind()))
        scaler = self.grad_scaler()
        grad_norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))) if grads else torch.zeros((), device=self.device)
        if scaler is not None:
            grad_norm = grad_norm / scaler.get_scale()  # the norm of the unscaled gradients
        # under 16-mixed, overflowing gradients are the GradScaler's business (it skips the step and lowers its scale)
        finite = torch.isfinite(logs[f"loss_{name}"]) & (torch.isfinite(grad_norm) | (scaler is not None))
        if not bool(finite):  # one host sync per optimizer step, as GradScaler makes
            if scaler is None:  # (a GradScaler skips steps with non-finite gradients itself)
                optimizer.zero_grad(set_to_none=True)
            self.count_nonfinite(name, logs[f"loss_{name}"], grad_norm)
        else:
            self.consecutive_nonfinite[name] = 0
        optimizer.step()
        # gradients live from a step's backward to its update only: D's would otherwise sit through the G step's memory peak
        optimizer.zero_grad(set_to_none=True)
        return logs | {f"grad_norm_{name}": grad_norm}

    def grad_scaler(self):
        """The 16-mixed GradScaler when one is active (None otherwise, also without a Trainer)."""
        scaler = getattr(self.trainer.precision_plugin, "scaler", None) if self._trainer is not None else None
        return scaler if scaler is not None and scaler.is_enabled() else None

    def count_nonfinite(self, name: str, loss: Tensor, grad_norm: Tensor) -> None:
        """Count a skipped update; after max_consecutive_nonfinite in a row, training stops at the iteration boundary."""
        self.nonfinite_updates += 1
        self.consecutive_nonfinite[name] += 1
        count, limit = self.consecutive_nonfinite[name], self.hparams.max_consecutive_nonfinite
        if self._trainer is None or self.trainer.is_global_zero:
            log.warning(f"iteration {self.iteration}: non-finite {name.upper()} update skipped "
                        f"(loss {loss.item():.4g}, gradient norm {grad_norm.item():.4g}; {count} in a row)")
        if count >= limit and self.divergence is None:
            self.divergence = (f"training diverged: {count} consecutive non-finite {name.upper()} updates at iteration "
                               f"{self.iteration} (model.max_consecutive_nonfinite={limit}); the weights of the last finite update are "
                               "kept. Lower the learning rates, raise model.r1_gamma, or resume from an earlier checkpoint.")

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if self.divergence is not None:  # every process reaches the same verdict: the inputs were averaged
            raise TrainingDiverged(self.divergence)

    def ema_decay_now(self) -> float:
        """The EMA decay of this iteration: ema_decay, or with ema_warmup min(ema_decay, (1 + n) / (10 + n))."""
        decay, n = self.hparams.ema_decay, self.iteration
        return min(decay, (1 + n) / (10 + n)) if self.hparams.get("ema_warmup", False) else decay

    @torch.no_grad()
    def update_ema(self) -> None:
        """θ_ema ← decay·θ_ema + (1 - decay)·θ for G's trained parameters; its frozen parameters (constants, like
        the Fourier frequencies) and buffers are copied."""
        averaged, copied = ([], []), ([], [])
        for ema_param, param in zip(self.generator_ema.parameters(), self.generator.parameters(), strict=True):
            pairs = averaged if param.requires_grad else copied
            pairs[0].append(ema_param)
            pairs[1].append(param)
        copied[0].extend(self.generator_ema.buffers())
        copied[1].extend(self.generator.buffers())
        if averaged[0]:
            torch._foreach_lerp_(*averaged, 1 - self.ema_decay_now())
        if copied[0]:
            torch._foreach_copy_(*copied)

    def train_iteration(self, x_0: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        """One DDGAN iteration on data x_0 (N, *sample_shape) (with their labels y, conditional models): D step,
        G step, EMA update, in the networks' space (WaveDiff's reconstruction term compares wavelet coefficients
        there). Returns the logged values."""
        x_0 = self.to_network_space(x_0)
        logs = self.discriminator_step(x_0, y)
        logs |= self.generator_step(x_0, y)
        self.update_ema()
        self.iteration += 1
        return logs

    def training_step(self, batch, batch_idx: int) -> None:
        x_0, *rest = batch if isinstance(batch, (list, tuple)) else (batch,)  # (x_0,), (x_0, y) or x_0
        y = rest[0] if rest else None
        if self.num_classes and y is None:
            raise ValueError("a class-conditional model (model.num_classes > 0) needs (x, y) batches: set data.conditional=true")
        # the latest value of each (R1 comes every lazy_reg iterations)
        self.latest_logs |= self.train_iteration(x_0, y if self.num_classes else None)
        if self.lr_decay_per_iteration:
            self.step_lr_schedulers()
        if self.logs_this_iteration():
            logs = self.latest_logs | {"iteration": float(self.iteration), "nonfinite_updates": float(self.nonfinite_updates)}
            # values are averaged over processes already (in update), so no sync_dist here
            self.log_dict({f"train/{k}": v for k, v in logs.items()}, prog_bar=False, batch_size=x_0.shape[0])

    def logs_this_iteration(self) -> bool:
        """Whether this iteration's training values go to self.log: on the iterations the logger writes
        (every trainer.log_every_n_steps) and an epoch's last (for callback_metrics at the epoch's end). Each
        self.log costs ~1.5 ms on a CPU: 40 % of a toy iteration when every iteration logged."""
        trainer = self._trainer
        if trainer is None or trainer.is_last_batch:
            return True
        return trainer.log_every_n_steps > 0 and self.iteration % trainer.log_every_n_steps == 0

    @property
    def lr_decay_per_iteration(self) -> bool:
        """The cosine decay runs over model.lr_decay_iterations (stepped per iteration), not per epoch."""
        return bool(self.hparams.cosine_lr_decay and self.hparams.get("lr_decay_iterations"))

    def step_lr_schedulers(self) -> None:
        for scheduler in self.lr_schedulers() or []:
            scheduler.step()

    def on_train_epoch_end(self) -> None:
        if not self.lr_decay_per_iteration:
            self.step_lr_schedulers()
        optimizer_d, optimizer_g = self.optimizers()
        lrs = {"train/lr_d": optimizer_d.param_groups[0]["lr"], "train/lr_g": optimizer_g.param_groups[0]["lr"]}
        self.log_dict(lrs, sync_dist=True)  # equal on every rank; sync_dist only states that (once per epoch)

    # ---- optimizers ----------------------------------------------------------------------------
    def configure_optimizers(self):
        hp = self.hparams
        optimizer_d = torch.optim.Adam(trainable_parameters(self.discriminator), lr=hp.lr_d, betas=tuple(hp.betas), fused=True)
        optimizer_g = torch.optim.Adam(trainable_parameters(self.generator), lr=hp.lr_g, betas=tuple(hp.betas), fused=True)
        if not hp.cosine_lr_decay:
            return [optimizer_d, optimizer_g]
        # the decay's length: iterations (stepped after each iteration) or epochs (stepped after each epoch)
        length = hp.get("lr_decay_iterations") or (self.trainer.max_epochs if self.trainer.max_epochs and self.trainer.max_epochs > 0 else 1)
        schedulers = [torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=length, eta_min=hp.lr_min) for opt in (optimizer_d, optimizer_g)]
        return [optimizer_d, optimizer_g], schedulers

    # ---- sampling ------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, num_samples: int, *, rng: RandomSource = None, use_ema: bool = True, x_start: Tensor | None = None,
               start_step: int | None = None, return_chain: bool = False, labels: Tensor | None = None):
        """num_samples data points (N, *sample_shape) from noise, by the EMA generator by default: the sampler runs in
        the networks' space and its output (and with return_chain its levels and x_0 predictions) comes back through
        `to_data_space`. x_start: a starting level (N, *network_shape) at start_step (editing); default x_T ~ N(0, I).
        labels: (N,) classes of a conditional model (default: sample i has class i mod num_classes)."""
        labels = self.default_labels(num_samples, labels)
        generator = self.generator_ema if use_ema else self.generator
        if x_start is None:
            x_start = randn((num_samples, *self.network_shape), torch.empty((), device=self.device), rng)
        out = sample(generator, self.schedule, self.memory_format(x_start), nz=self.hparams.nz, start_step=start_step,
                     rng=rng, return_chain=return_chain, labels=labels)
        if not return_chain:
            return self.to_data_space(out)
        x_0, levels, predictions = out
        return self.to_data_space(x_0), [self.to_data_space(x) for x in levels], [self.to_data_space(x) for x in predictions]

    # ---- per-process randomness and checkpoint state beyond the state dict ----------------------
    def setup(self, stage: str) -> None:
        if stage == "fit" and self.trainer.world_size > 1:
            seed_process(self.global_rank, iteration=0)  # t, noise and z differ between processes

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Rank 0's RNG state is saved (collectives are avoided here: Lightning may save from a signal handler)."""
        state = {"iteration": self.iteration, "nonfinite_updates": self.nonfinite_updates, "torch_rng_state": torch.get_rng_state()}
        if self.device.type == "cuda":
            state["cuda_rng_state"] = torch.cuda.get_rng_state(self.device)
        checkpoint["ddgan"] = state

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Rank 0 continues its saved RNG stream exactly; other ranks reseed from (seed, rank, iteration)."""
        state = checkpoint.get("ddgan", {})
        self.iteration = state.get("iteration", 0)
        self.nonfinite_updates = state.get("nonfinite_updates", 0)
        if "torch_rng_state" in state:
            torch.set_rng_state(state["torch_rng_state"])
        if "cuda_rng_state" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng_state"], self.device)
        if self._trainer is not None and self.trainer.world_size > 1:
            seed_process(self.global_rank, iteration=self.iteration)

