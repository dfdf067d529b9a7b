"""LightningModule of the GAN baseline: a DCGAN generator and discriminator trained in turn
(Lightning's manual optimisation), non-saturating or hinge loss, optional R1 penalty; samples are
G(z), z ~ N(0, I), with the EMA callback's averaged generator when it is on."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import torch

from ddpm_lit.core.adversarial import (
    check_loss,
    discriminator_loss,
    generator_loss,
    r1_penalty,
)
from ddpm_lit.core.diffusion import randn
from ddpm_lit.generation.models import GANModel
from ddpm_lit.nets.gan import Discriminator, Generator
from ddpm_lit.training.base import (
    OnePassModule,
    build_part,
    check_hook_settings,
    spec_of,
)

# Adam with β1 = 0.5, as DCGAN (Radford et al. 2016) trains both players.
DEFAULT_OPTIMIZER: Mapping[str, Any] = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 2e-4,
                                        "betas": [0.5, 0.999]}


class GANModule(OnePassModule):
    """A GAN: one discriminator step, then one generator step, per batch.

    Args:
        generator, discriminator: the ``Generator`` and ``Discriminator`` (or their Hydra specs).
        g_optimizer, d_optimizer: functions of each player's parameters that return its optimizer
            (Hydra's ``_partial_``), or their specs.
        loss: ``non_saturating`` (Goodfellow et al. 2014) or ``hinge`` (Lim & Ye 2017).
        r1_gamma: γ of the R1 penalty (γ/2)‖∇_x D(x)‖² on real images (0: none; Mescheder et al. 2018).
        The remaining arguments are the validation hook's (``GenerativeModule``).

    Logged: ``train/d_loss``, ``train/g_loss``, ``train/d_real`` = mean D(x) and ``train/d_fake``
    = mean D(G(z)) (probabilities σ(logit)), and the same D(x), D(G(z)) on validation images.
    """

    family = "gan"
    logged_metrics = ("train/d_loss", "train/g_loss", "train/d_real", "train/d_fake", "val/d_real", "val/d_fake")
    optimizer_steps_per_batch = 2  # the discriminator's, then the generator's
    loss_keys = (("train/d_loss", "train/g_loss"), ())

    def __init__(
        self,
        generator: Generator | Mapping[str, Any],
        discriminator: Discriminator | Mapping[str, Any],
        g_optimizer: Callable[..., torch.optim.Optimizer] | Mapping[str, Any] = DEFAULT_OPTIMIZER,
        d_optimizer: Callable[..., torch.optim.Optimizer] | Mapping[str, Any] = DEFAULT_OPTIMIZER,
        loss: str = "non_saturating",
        r1_gamma: float = 0.0,
        sample_every_n_epochs: int = 1,
        num_val_samples: int = 64,
        val_seed: int = 0,
        nn_reference_size: int = 1000,
        val_classifier_fid: bool = True,
        fid_reference_size: int = 1000,
    ) -> None:
        super().__init__()
        check_hook_settings(locals())
        check_loss(loss)
        if not r1_gamma >= 0:
            raise ValueError(f"model.r1_gamma must be ≥ 0, got {r1_gamma}")
        generator, discriminator = build_part(generator), build_part(discriminator)
        g_optimizer, d_optimizer = build_part(g_optimizer), build_part(d_optimizer)
        self.save_hyperparameters(ignore=["generator", "discriminator", "g_optimizer", "d_optimizer"], logger=False)
        self.hparams.update(generator=spec_of(generator), discriminator=spec_of(discriminator),
                            g_optimizer=spec_of(g_optimizer), d_optimizer=spec_of(d_optimizer))
        for make in (g_optimizer, d_optimizer):  # a bad setting fails now, not when fitting starts
            make([torch.zeros(1, requires_grad=True)])
        self.generator, self.discriminator = generator, discriminator
        self.make_g_optimizer, self.make_d_optimizer = g_optimizer, d_optimizer
        self.automatic_optimization = False
        self.image_shape = (generator.out_channels, generator.image_size, generator.image_size)
        self.example_input_array = torch.zeros(1, generator.latent_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z)

    def describe(self) -> str:
        r1 = f", R1 γ = {self.hparams.r1_gamma:g}" if self.hparams.r1_gamma else ""
        sn = ", spectral norm" if self.hparams.discriminator.get("spectral_norm") else ""
        return f"GAN, latent {self.generator.latent_dim}, {self.hparams.loss} loss{r1}{sn}"

    def latents(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return randn((n, self.generator.latent_dim), generator, self.device)

    # ---- training ---------------------------------------------------------------------------
    def discriminator_step_loss(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The discriminator's loss (with R1 when γ > 0) on real and generated (detached) images."""
        gamma = self.hparams.r1_gamma
        if gamma:
            real = real.detach().requires_grad_(True)
        real_logits, fake_logits = self.discriminator(real), self.discriminator(fake.detach())
        loss = discriminator_loss(real_logits, fake_logits, self.hparams.loss)
        if gamma:
            loss = loss + gamma / 2 * r1_penalty(real_logits, real)
        probs = {"d_real": torch.sigmoid(real_logits.detach()).mean(), "d_fake": torch.sigmoid(fake_logits.detach()).mean()}
        return loss, probs

    def timing_step(
        self, x0: torch.Tensor, labels: torch.Tensor | None, optimizer: torch.optim.Optimizer,
        autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    ) -> None:
        """``training_step``'s two steps on x0 (B, C, H, W) outside a Trainer, each with
        ``optimizer`` (over both players' parameters: a step moves only those with gradients) and
        its forward pass under ``autocast()``: the discriminator's, then the generator's through
        the updated discriminator, which is held fixed as ``toggle_optimizer`` holds it."""
        with autocast():
            fake = self.generator(self.latents(len(x0)))
            d_loss, _ = self.discriminator_step_loss(x0, fake)
        optimizer.zero_grad(set_to_none=True)
        d_loss.backward()
        optimizer.step()
        held = [p for p in self.discriminator.parameters() if p.requires_grad]
        for p in held:
            p.requires_grad_(False)
        try:
            with autocast():
                g_loss = generator_loss(self.discriminator(fake), self.hparams.loss)
            optimizer.zero_grad(set_to_none=True)
            g_loss.backward()
            optimizer.step()
        finally:
            for p in held:
                p.requires_grad_(True)

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        real = batch[0]
        g_opt, d_opt = self.optimizers()
        fake = self.generator(self.latents(len(real)))
        # 1. the discriminator: real images against G(z), G held fixed
        self.toggle_optimizer(d_opt)
        d_loss, probs = self.discriminator_step_loss(real, fake)
        d_opt.zero_grad(set_to_none=True)
        self.manual_backward(d_loss)
        d_opt.step()
        self.untoggle_optimizer(d_opt)
        # 2. the generator: through the updated discriminator, D held fixed
        self.toggle_optimizer(g_opt)
        g_loss = generator_loss(self.discriminator(fake), self.hparams.loss)
        g_opt.zero_grad(set_to_none=True)
        self.manual_backward(g_loss)
        g_opt.step()
        self.untoggle_optimizer(g_opt)
        self.log("train/d_loss", d_loss.detach(), prog_bar=True)
        self.log("train/g_loss", g_loss.detach(), prog_bar=True)
        self.log_dict({f"train/{k}": v for k, v in probs.items()})

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        real = batch[0]
        gen = torch.Generator().manual_seed(self.hparams.val_seed + batch_idx)  # the same z every epoch
        fake = self.generator(self.latents(len(real), gen))
        n = real.shape[0]
        self.log("val/d_real", torch.sigmoid(self.discriminator(real)).mean(), sync_dist=True, batch_size=n)
        self.log("val/d_fake", torch.sigmoid(self.discriminator(fake)).mean(), sync_dist=True, batch_size=n)

    def configure_optimizers(self) -> Any:
        return [self.make_g_optimizer(self.generator.parameters()), self.make_d_optimizer(self.discriminator.parameters())]

    # ---- sampling ---------------------------------------------------------------------------
    def standalone(self) -> GANModel:
        return GANModel(self.generator)

    def draw_noise(self, num_samples: int, generator: torch.Generator | None) -> dict[str, torch.Tensor]:
        return self.standalone().draw_noise(num_samples, generator)

    def generate(self, noise: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.standalone().make(noise)
