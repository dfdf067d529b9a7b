"""LightningModule of the VAE baseline: the negative ELBO in bits/dim of 8-bit images (the units
of the DDPM's bound), β-weighted KL, sampling by decoding z ~ N(0, I)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal, get_args

import torch
from tqdm.auto import tqdm

from ddpm_lit.core.diffusion import randn
from ddpm_lit.core.pixels import quantize
from ddpm_lit.core.variational import (
    importance_weighted_bound,
    negative_elbo,
    to_bits_per_dim,
)
from ddpm_lit.generation.models import VAEModel
from ddpm_lit.nets.vae import ConvVAE
from ddpm_lit.training.base import (
    OnePassModule,
    build_part,
    check_hook_settings,
    spec_of,
)

SampleMode = Literal["mean", "sample"]
SAMPLE_MODES: tuple[str, ...] = get_args(SampleMode)
DEFAULT_OPTIMIZER: Mapping[str, Any] = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-3}


class VAEModule(OnePassModule):
    """A VAE trained on the β-weighted negative ELBO (β = 1: the bound itself).

    Args:
        net: the ``ConvVAE`` (or its Hydra spec).
        optimizer: a function of the parameters that returns the optimizer (Hydra's ``_partial_``), or its spec.
        beta: the KL term's weight in the training loss (Higgins et al. 2017); the logged bound
            (``train/bpd``, ``val/loss``) is always the β = 1 ELBO.
        sample_mode: ``mean``: a sample is the decoder's mean at z ~ N(0, I) (clipped to [−1, 1]);
            ``sample``: a draw of its discretised Gaussian.
        The remaining arguments are the validation hook's (``GenerativeModule``).
    """

    family = "vae"
    logged_metrics = ("val/loss", "val/kl", "train/loss", "train/bpd", "train/kl")
    likelihood = "ELBO and IWAE"

    def __init__(
        self,
        net: ConvVAE | Mapping[str, Any],
        optimizer: Callable[..., torch.optim.Optimizer] | Mapping[str, Any] = DEFAULT_OPTIMIZER,
        beta: float = 1.0,
        sample_mode: str = "mean",
        sample_every_n_epochs: int = 1,
        num_val_samples: int = 64,
        val_seed: int = 0,
        nn_reference_size: int = 1000,
        val_classifier_fid: bool = True,
        fid_reference_size: int = 1000,
    ) -> None:
        super().__init__()
        check_hook_settings(locals())
        if not beta >= 0:
            raise ValueError(f"model.beta must be ≥ 0, got {beta}")
        if sample_mode not in SAMPLE_MODES:
            raise ValueError(f"model.sample_mode must be one of {', '.join(SAMPLE_MODES)}, got {sample_mode!r}")
        net, optimizer = build_part(net), build_part(optimizer)
        self.save_hyperparameters(ignore=["net", "optimizer"], logger=False)
        self.hparams.update(net=spec_of(net), optimizer=spec_of(optimizer))
        optimizer([torch.zeros(1, requires_grad=True)])  # a bad setting fails now, not when fitting starts
        self.net, self.make_optimizer = net, optimizer
        self.image_shape = (net.in_channels, net.image_size, net.image_size)
        self.example_input_array = torch.zeros(1, *self.image_shape)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net.encode(x)

    def describe(self) -> str:
        return f"VAE, latent {self.net.latent_dim}, β = {self.hparams.beta:g}, samples: decoder {self.hparams.sample_mode}"

    # ---- the bound -------------------------------------------------------------------------
    def elbo(self, x0: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """−ELBO of x0 (B, C, H, W), quantised to 8 bits, with one z per image, in bits/dim per
        example (B,): ``reconstruction``, ``kl`` and ``total``."""
        x0 = quantize(x0)
        mu, logvar = self.net.encode(x0)
        terms = negative_elbo(self.net.decode, x0, mu, logvar, randn(mu.shape, generator, mu.device, mu.dtype))
        return {k: to_bits_per_dim(v, x0) for k, v in terms.items()}

    def weighted_loss(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """The β-weighted negative ELBO in bits/dim of ``elbo``'s terms, averaged over the batch."""
        return (terms["reconstruction"] + self.hparams.beta * terms["kl"]).mean()

    def training_loss(self, x0: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The training loss of x0 (B, C, H, W): ``weighted_loss`` of its ``elbo``."""
        return self.weighted_loss(self.elbo(x0))

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        terms = self.elbo(batch[0])
        loss = self.weighted_loss(terms)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/bpd", terms["total"].mean())
        self.log("train/kl", terms["kl"].mean())
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        x0 = batch[0]
        gen = torch.Generator().manual_seed(self.hparams.val_seed + batch_idx)  # the same z noise every epoch
        terms = self.elbo(x0, generator=gen)
        self.log("val/loss", terms["total"].mean(), prog_bar=True, sync_dist=True, batch_size=x0.shape[0])
        self.log("val/kl", terms["kl"].mean(), sync_dist=True, batch_size=x0.shape[0])

    @torch.no_grad()
    def likelihood_bounds(
        self, images: torch.Tensor, *, k: int = 100, batch_size: int = 100, generator: torch.Generator | None = None,
        variance: str | None = None, device: torch.device | None = None, progress: bool = False,
    ) -> dict[str, Any]:
        """The ELBO and the importance-weighted bound IWAE_k (Burda et al. 2016) of ``images``
        (N, C, H, W) in [−1, 1], quantised to 8 bits, in bits/dim: means with standard errors over
        images (``elbo_bpd``, ``iwae_bpd`` and their ``_stderr``); ``bpd`` is the ELBO's, ``bound``
        ``elbo``. ``variance`` is a DDPM's option (``check_likelihood_options``); the images are
        moved to the module's device (``device`` is not used)."""
        self.check_likelihood_options(variance)
        was_training = self.training
        self.eval()
        elbo, iwae = [], []
        try:
            for start in tqdm(range(0, len(images), batch_size), desc="ELBO, IWAE", unit="batch", disable=not progress):
                x0 = quantize(images[start : start + batch_size].to(self.device))
                elbo.append(self.elbo(x0, generator)["total"].double().cpu())
                mu, logvar = self.net.encode(x0)
                log_px = importance_weighted_bound(self.net.decode, x0, mu, logvar, k, generator)
                iwae.append(to_bits_per_dim(-log_px.double(), x0).cpu())
        finally:
            self.train(was_training)
        out: dict[str, Any] = {"num_images": len(images), "iwae_samples": k}
        for name, values in (("elbo_bpd", torch.cat(elbo)), ("iwae_bpd", torch.cat(iwae))):
            out[name] = float(values.mean())
            out[f"{name}_stderr"] = float(values.std() / len(values) ** 0.5) if len(values) > 1 else float("nan")
        return {"bound": "elbo", "bpd": out["elbo_bpd"], "bpd_stderr": out["elbo_bpd_stderr"], **out}

    # ---- sampling --------------------------------------------------------------------------
    def standalone(self) -> VAEModel:
        return VAEModel(self.net, self.hparams.sample_mode)

    def draw_noise(self, num_samples: int, generator: torch.Generator | None) -> dict[str, torch.Tensor]:
        return self.standalone().draw_noise(num_samples, generator)

    def generate(self, noise: dict[str, torch.Tensor]) -> torch.Tensor:
        """The decoder's mean at z (``sample_mode=mean``), or a draw of its pixel distribution."""
        return self.standalone().make(noise)

    def configure_optimizers(self) -> Any:
        return self.make_optimizer(self.parameters())


