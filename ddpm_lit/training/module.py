"""LightningModule that wires the UNet, the diffusion process and the loss together."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from lightning.pytorch.callbacks import Timer

from ddpm_lit.core.diffusion import GaussianDiffusion
from ddpm_lit.core.samplers import SAMPLERS
from ddpm_lit.core.likelihood import dataset_bits_per_dim
from ddpm_lit.generation.models import DiffusionModel
from ddpm_lit.nets.unet import UNet
from ddpm_lit.training.base import (
    COMMON_RUN_FIGURES,
    MODEL_CLASS_KEY,
    GenerativeModule,
    build_part,
    check_hook_settings,
    spec_of,
)

LR_SCHEDULES = ("constant", "cosine")
__all__ = ["MODEL_CLASS_KEY", "DDPMModule", "spec_of"]


# Settings of how the network runs, not of what it computes: a resumed run may change them.
SPEED_HPARAMS = ("channels_last", "compile", "optimizer.fused")
DEFAULT_OPTIMIZER: Mapping[str, Any] = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 2e-4}


def _check_settings(args: Mapping[str, Any]) -> None:
    """A ValueError naming the first setting of the module's own that is out of range."""
    if not 0.0 <= args["cond_drop_prob"] < 1.0:
        raise ValueError(f"model.cond_drop_prob must be in [0, 1), got {args['cond_drop_prob']}")
    if args["guidance_scale"] < 0:
        raise ValueError(f"model.guidance_scale must be ≥ 0, got {args['guidance_scale']}")
    if args["lr_schedule"] not in LR_SCHEDULES:
        raise ValueError(f"model.lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {args['lr_schedule']!r}")
    if not 0.0 <= args["min_lr_ratio"] <= 1.0:
        raise ValueError(f"model.min_lr_ratio must be in [0, 1], got {args['min_lr_ratio']}")
    if args["warmup_steps"] < 0:
        raise ValueError(f"model.warmup_steps must be ≥ 0, got {args['warmup_steps']}")
    if args["val_sampler"] not in SAMPLERS:
        raise ValueError(f"model.val_sampler must be one of {', '.join(SAMPLERS)}, got {args['val_sampler']!r}")
    for name in ("channels_last", "compile"):
        if not (isinstance(args[name], bool) or args[name] == "auto"):
            raise ValueError(f"model.{name} must be true, false or auto, got {args[name]!r}")
    check_hook_settings(args)


class DDPMModule(GenerativeModule):
    """DDPM training (by default the study's ε-MSE loss), and validation by reverse sampling.

    Args:
        net: the denoiser, ``UNet`` (or its Hydra spec: a dict with ``_target_``); its
            ``num_classes`` makes the model class-conditional.
        diffusion: the ``GaussianDiffusion`` (or its spec): schedule, T, training target,
            reverse variance and loss; the defaults are the study's: ε, β̃_t, unweighted MSE.
        optimizer: a function of the parameters that returns the optimizer, e.g.
            ``functools.partial(torch.optim.Adam, lr=2e-4)`` (Hydra's ``_partial_: true``), or its spec.
        cond_drop_prob: probability of training a sample without its label (the "no label"
            token), so that one network also learns the unconditional model.
        guidance_scale: classifier-free guidance w used when sampling a conditional model
            unless the call says otherwise (1: the conditional model, 0: unconditional).
        warmup_steps: linear learning-rate warm-up over this many optimizer steps (0: none).
        lr_schedule: after the warm-up, ``constant`` or ``cosine``: lr · (r + (1 − r)(1 + cos πp)/2)
            with r = ``min_lr_ratio`` and p the fraction of training done (``training_progress``:
            by steps, or by wall-clock under ``trainer.max_time``, whichever is further).
        sample_every_n_epochs: run reverse sampling in validation every N epochs (0: never).
        num_val_samples: K, the images drawn by that hook (the study: 64).
        val_sample_steps: reverse steps of that hook (None: all T; fewer respaces the chain).
        val_sampler: the sampler of that hook, a name of ``core.samplers.SAMPLERS``.
        clip_denoised: clip the predicted x0 to [−1, 1] while sampling.
        val_seed: seed of the validation noise, timesteps and samples, so epochs compare.
        nn_reference_size: validation images searched for each sample's nearest neighbour.
        val_classifier_fid: also log ``val/classifier_fid``, the classifier FID (MNIST-FID on MNIST) of the K samples
            against ``fid_reference_size`` validation images; needs a datamodule with
            ``data_dir`` (where the classifier is cached). With K samples it is biased upwards but compares epochs.
        channels_last: keep the network's conv weights (and so its activations) in NHWC order;
            ``auto``: train.py's start-up plan decides by timing (``training.planning``), and
            until it has, the network stays contiguous.
        compile: ``torch.compile`` the network when fitting starts (training and sampling calls);
            ``auto``: decided by that plan, and not compiled until it has.

    The hyperparameters saved in a checkpoint hold each part's spec, so
    ``DDPMModule.load_from_checkpoint(path)`` alone rebuilds the model.
    """

    family = "ddpm"
    logged_metrics = ("val/loss", "train/loss", "train/loss_epoch")
    likelihood = "variational bound"
    reverse_chain = True
    # and the figures of its reverse chain and of the diffusion process
    run_figures = (*COMMON_RUN_FIGURES, "trajectory", "forward_process", "schedules", "two_mode_diffusion")

    def __init__(
        self,
        net: UNet | Mapping[str, Any],
        diffusion: GaussianDiffusion | Mapping[str, Any],
        optimizer: Callable[..., torch.optim.Optimizer] | Mapping[str, Any] = DEFAULT_OPTIMIZER,
        warmup_steps: int = 0,
        lr_schedule: str = "constant",
        min_lr_ratio: float = 0.0,
        sample_every_n_epochs: int = 1,
        num_val_samples: int = 64,
        val_sample_steps: int | None = None,
        val_sampler: str = "ddpm",
        clip_denoised: bool = True,
        val_seed: int = 0,
        nn_reference_size: int = 1000,
        val_classifier_fid: bool = True,
        fid_reference_size: int = 1000,
        cond_drop_prob: float = 0.1,
        guidance_scale: float = 1.0,
        channels_last: bool | str = False,
        compile: bool | str = False,
    ) -> None:
        super().__init__()
        _check_settings(locals())
        net, diffusion, optimizer = build_part(net), build_part(diffusion), build_part(optimizer)
        # Each part's spec, so that a checkpoint loads without Hydra's config; the loggers get
        # the full config from train().
        self.save_hyperparameters(ignore=["net", "diffusion", "optimizer"], logger=False)
        self.hparams.update(net=spec_of(net), diffusion=spec_of(diffusion), optimizer=spec_of(optimizer))
        self.diffusion, self.net, self.make_optimizer = diffusion, net, optimizer
        optimizer([torch.zeros(1, requires_grad=True)])  # a bad setting fails now, not when fitting starts
        needed = self.net.in_channels * self.diffusion.output_channels_factor
        if self.net.out_channels != needed:
            raise ValueError(f"model.net.out_channels={self.net.out_channels}, but variance={self.diffusion.variance} "
                             f"needs {needed} (in_channels × {self.diffusion.output_channels_factor})")
        if val_sample_steps is not None and not 1 <= val_sample_steps <= self.diffusion.num_timesteps:
            raise ValueError(
                f"model.val_sample_steps must be in [1, timesteps={self.diffusion.num_timesteps}], "
                f"got {val_sample_steps}"
            )
        if channels_last is True:
            self.net.to(memory_format=torch.channels_last)  # 4-D weights; activations follow them
        self.image_shape = (self.net.in_channels, self.net.image_size, self.net.image_size)
        # One image and time step (and label): Lightning's model summary runs it once to count
        # the FLOPs and sizes it prints (without it, its table says "Total FLOPs: 0").
        example: tuple[torch.Tensor, ...] = (torch.zeros(1, *self.image_shape), torch.zeros(1, dtype=torch.long))
        self.example_input_array = example + ((torch.zeros(1, dtype=torch.long),) if self.conditional else ())
        self._net_compiled = False  # compile_network ran (copies made before it stay plain)
        self._planned_steps: float | None = None  # trainer.estimated_stepping_batches, read once

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x_t, t, class_labels)  # the UNet refuses labels when unconditional

    @property
    def conditional(self) -> bool:
        return self.num_classes is not None

    def _denoiser(self, labels: torch.Tensor | None) -> Any:
        """The network as the process calls it, ``(x_t, t) -> output``, with the labels bound."""
        if labels is None:
            return self.net
        return lambda x_t, t: self.net(x_t, t, class_labels=labels)

    def _batch_labels(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor | None:
        """The batch's labels for a conditional model; None for an unconditional one."""
        if not self.conditional:
            return None
        if len(batch) < 2:
            raise ValueError("a class-conditional model (model.num_classes) needs (image, label) batches")
        return batch[1].long()

    # ---- training and validation -----------------------------------------------------
    def drop_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """labels (B,), each replaced by the "no label" token with probability ``cond_drop_prob``."""
        if self.hparams.cond_drop_prob == 0:
            return labels
        dropped = torch.rand(labels.shape, device=labels.device) < self.hparams.cond_drop_prob
        return labels.masked_fill(dropped, self.net.num_classes)

    def training_loss(self, x0: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The training loss of x0: (B, C, H, W) in [−1, 1], with a conditional model's labels (B,)
        dropped by ``drop_labels``."""
        denoiser = self._denoiser(None if labels is None else self.drop_labels(labels))
        # t drawn here as the process would draw it, and kept: a non-finite loss names its timesteps
        t = torch.randint(0, self.diffusion.num_timesteps, (x0.shape[0],), device=x0.device)
        self.last_timesteps = t
        return self.diffusion.loss(denoiser, x0, t=t)

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        x0 = batch[0]
        loss = self.training_loss(x0, self._batch_labels(batch))
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=False)
        self.log("train/loss_epoch", loss, on_step=False, on_epoch=True, sync_dist=True, batch_size=x0.shape[0])
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        x0 = batch[0]
        # The same t and ε for batch i at every epoch, so val/loss curves compare.
        gen = torch.Generator().manual_seed(self.hparams.val_seed + batch_idx)  # CPU: same on every device
        loss = self.diffusion.loss(self._denoiser(self._batch_labels(batch)), x0, generator=gen)
        self.log("val/loss", loss, prog_bar=True, on_epoch=True, sync_dist=True, batch_size=x0.shape[0])

    def setup(self, stage: str) -> None:
        # After the callbacks' setup, so the EMA callback's copy of the module is not compiled;
        # nn.Module.compile keeps the parameter names, so checkpoints are unchanged.
        if stage == "fit" and self.hparams.compile is True:
            self.compile_network()

    def speed_settings(self) -> dict[str, Any]:
        return {"channels_last": self.hparams.channels_last, "compile": self.hparams.compile}

    def use_speed_settings(self, channels_last: bool | None = None, compile: bool | None = None) -> None:
        """Set ``channels_last`` (the network's memory format, now) and ``compile`` (when fitting
        starts), each where not None, in the hyperparameters too: what the checkpoint records."""
        if channels_last is not None:
            self.hparams.channels_last = bool(channels_last)
            self.net.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        if compile is not None:
            self.hparams.compile = bool(compile)

    def compile_network(self) -> None:
        """``torch.compile`` the network in place, for fixed shapes: the model summary's one-image
        call would otherwise make the training batch's graph a dynamic-shape one, slower."""
        if not self._net_compiled:
            self.net.compile(dynamic=False)
            self._net_compiled = True

    def validation_sampler(self) -> dict[str, Any]:
        # fast_dev_run checks that the code paths run, so a 2-step chain is enough.
        fast_dev_run = self._trainer is not None and self.trainer.fast_dev_run
        return {"steps": 2 if fast_dev_run else self.hparams.val_sample_steps,
                "sampler": self.hparams.get("val_sampler", "ddpm")}

    def describe(self) -> str:
        conditional = (f", conditional on {self.num_classes} classes (guidance w = {self.hparams.guidance_scale:g})"
                       if self.num_classes is not None else "")
        return (f"DDPM, {self.diffusion.num_timesteps} steps, {self.diffusion.schedule} schedule, "
                f"objective {self.diffusion.objective}{conditional}")

    # ---- what the commands ask -------------------------------------------------------
    @classmethod
    def evaluations_per_image(cls, steps: int | None, guidance_scale: float | None,
                              num_timesteps: int | None = None) -> int:
        """One network evaluation per reverse step (``steps``, or all ``num_timesteps`` = T when
        None), two with classifier-free guidance (a conditional model's ``guidance_scale`` ≠ 1:
        the conditional and the unconditional output; None: unconditional)."""
        chain = steps or num_timesteps
        if chain is None:
            raise ValueError("a DDPM's evaluations per image need its sampler steps or its T (num_timesteps)")
        return chain * (2 if guidance_scale not in (None, 1.0) else 1)

    def check_likelihood_options(self, variance: str | None = None) -> None:
        """``variance``, the reverse variance of the bound (None: the model's): ``learned`` only
        for a model that learned one."""
        if variance == "learned" and self.diffusion.variance != "learned":
            raise ValueError(f"nll.variance=learned, but the model has a fixed variance ({self.diffusion.variance})")

    def likelihood_bounds(
        self, images: torch.Tensor, *, k: int = 1, batch_size: int = 250, generator: torch.Generator | None = None,
        variance: str | None = None, device: torch.device | None = None, progress: bool = False,
    ) -> dict[str, Any]:
        """The variational bound (Ho et al. 2020, eq. 5) of ``images`` (N, C, H, W) in [−1, 1],
        quantised to 8 bits, in bits/dim, with one noise draw per timestep (``k`` is not used):
        ``bpd`` and ``bpd_stderr`` over images, the mean prior L_T (``prior_bpd``), L_0
        (``l0_bpd``) and KL at t = T (``last_step_bpd``), ``bound`` ``ddpm``, the reverse
        ``variance`` used (None: the model's), and ``bound_terms``: each term's mean (T,) and the
        per-image totals (N,)."""
        was_training = self.training
        self.eval()
        try:
            bound = dataset_bits_per_dim(self.net, self.diffusion, images, batch_size=batch_size, generator=generator,
                                         variance=variance, device=device or self.device, progress=progress)
        finally:
            self.train(was_training)
        out = {key: bound[key] for key in ("bpd", "bpd_stderr", "prior_bpd", "l0_bpd", "last_step_bpd", "num_images")}
        return {**out, "bound": "ddpm", "variance": variance or self.diffusion.variance,
                "bound_terms": {"terms": bound["terms"], "totals": bound["totals"]}}

    # ---- sampling --------------------------------------------------------------------
    @property
    def num_classes(self) -> int | None:
        """The labels of a class-conditional model (None: unconditional)."""
        return self.net.num_classes

    @property
    def num_timesteps(self) -> int:
        return self.diffusion.num_timesteps

    def standalone(self) -> DiffusionModel:
        """The DDPM outside Lightning over this module's network and process, with its sampling defaults."""
        return DiffusionModel(self.net, self.diffusion, clip_denoised=self.hparams.clip_denoised,
                              guidance_scale=self.hparams.guidance_scale)

    def sample(self, num_samples: int, generator: torch.Generator | None = None, **kwargs: Any) -> torch.Tensor:
        """Draw ``num_samples`` images: (N, C, H, W) in [−1, 1]; the arguments are
        ``generation.models.DiffusionModel.sample``'s (steps, sampler, class labels, guidance, …)."""
        was_training = self.training
        self.eval()
        try:
            return self.standalone().sample(num_samples, generator, **kwargs)
        finally:
            self.train(was_training)

    # ---- optimisation ----------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        opt = self.make_optimizer(self.parameters())
        warmup = self.hparams.warmup_steps
        if warmup == 0 and self.hparams.lr_schedule == "constant":
            return opt
        sched = torch.optim.lr_scheduler.LambdaLR(opt, self.lr_factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def lr_factor(self, step: int) -> float:
        """The learning rate's multiplier after ``step`` optimizer steps: the linear warm-up, then
        the schedule of ``training_progress``."""
        factor = min(1.0, (step + 1) / self.hparams.warmup_steps) if self.hparams.warmup_steps else 1.0
        if self.hparams.lr_schedule == "cosine":
            r = self.hparams.min_lr_ratio
            factor *= r + (1 - r) * 0.5 * (1 + math.cos(math.pi * self.training_progress()))
        return factor

    def training_progress(self) -> float:
        """The fraction of training done, in [0, 1]: optimizer steps of the planned total
        (``max_steps``, or ``max_epochs`` × batches), or the training time used of
        ``trainer.max_time`` (Lightning's Timer, whose elapsed time a resumed run carries on),
        whichever is further; 0 without a trainer or a bound."""
        trainer = self._trainer
        if trainer is None:
            return 0.0
        done = [0.0]
        total = trainer.estimated_stepping_batches if self._planned_steps is None else self._planned_steps
        self._planned_steps = total
        if math.isfinite(total) and total > 0:
            done.append(trainer.global_step / total)
        for callback in trainer.callbacks:
            if isinstance(callback, Timer) and callback.time_remaining() is not None:
                elapsed = callback.time_elapsed()
                done.append(elapsed / max(elapsed + callback.time_remaining(), 1e-9))
        return min(1.0, max(done))
