"""diffusers' schedulers driving our network: a second, independent implementation of our samplers.

``diffusers_scheduler`` builds ``DDPMScheduler``, ``DDIMScheduler`` (η = 0) or
``DPMSolverMultistepScheduler`` from an exported ``scheduler_config.json`` (``scheduler_config``
in ``ddpm_lit.generation.schedulers``) plus the overrides that make each one our ``ddpm``,
``ddim`` or ``dpmpp_2m`` sampler; ``sample_with_diffusers`` runs diffusers' loop with our
``net(x_t, t)``. Which spacing of ours equals which diffusers setting: docs/diffusers.md.
diffusers is an optional extra (``pip install -e '.[bench]'``), imported only when called.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, get_args

import torch

SchedulerKind = Literal["ddpm", "ddim", "dpmpp_2m"]
SCHEDULER_KINDS: tuple[str, ...] = get_args(SchedulerKind)
# diffusers' ``timestep_spacing`` values that have a counterpart here (``leading`` has none)
DiffusersSpacing = Literal["linspace", "trailing"]
DIFFUSERS_SPACINGS: tuple[str, ...] = get_args(DiffusersSpacing)

# Arguments of ``scheduler.step`` that make its step ours, per kind. DDIM: η = 0 (our default),
# and ε̂ recomputed from the clipped x̂0 as ``ddim_step`` does (diffusers keeps the network's ε̂
# unless asked; without clipping the recomputed ε̂ is the network's up to rounding).
STEP_KWARGS: dict[str, dict[str, Any]] = {
    "ddpm": {},
    "ddim": {"eta": 0.0, "use_clipped_model_output": True},
    "dpmpp_2m": {},
}
_CLASSES = {"ddpm": "DDPMScheduler", "ddim": "DDIMScheduler", "dpmpp_2m": "DPMSolverMultistepScheduler"}
_LEARNED = ("learned", "learned_range")


def _diffusers() -> Any:
    try:
        import diffusers
    except ImportError as err:
        raise ImportError("diffusers is not installed; install the extra: pip install -e '.[bench]'") from err
    return diffusers


def diffusers_scheduler(
    kind: SchedulerKind,
    config: Mapping[str, Any] | str | os.PathLike[str],
    spacing: DiffusersSpacing | None = None,
) -> Any:
    """A diffusers scheduler that computes what our sampler ``kind`` computes.

    Args:
        kind: ``ddpm`` (``sample_ddpm``), ``ddim`` (``sample_ddim``, η = 0) or ``dpmpp_2m``
            (``sample_dpmpp_2m``, η = 0).
        config: the ``DDPMScheduler`` config of ``scheduler_config(diffusion, clip_denoised)``, or
            an exported folder holding it as ``scheduler_config.json`` (or that file's path).
        spacing: diffusers' ``timestep_spacing``; ``None`` keeps the config's (``linspace``).
            ``ddpm`` + ``linspace`` is our ``sample_ddpm(steps=n)``; ``ddim`` and ``dpmpp_2m``
            + ``trailing`` are ours with ``spacing="trailing"``. diffusers' ``ddim`` + ``linspace``
            is no sampler of ours: its step goes from t to t − T // n whatever t is next.

    Returns: the scheduler (``DDPMScheduler``, ``DDIMScheduler`` or ``DPMSolverMultistepScheduler``).
    """
    if kind not in SCHEDULER_KINDS:
        raise ValueError(f"unknown scheduler kind {kind!r}; valid choices: {', '.join(SCHEDULER_KINDS)}")
    if spacing is not None and spacing not in DIFFUSERS_SPACINGS:
        raise ValueError(f"unknown timestep spacing {spacing!r}; valid choices: {', '.join(DIFFUSERS_SPACINGS)}")
    cls = getattr(_diffusers(), _CLASSES[kind])
    if not isinstance(config, Mapping):
        config = cls.load_config(os.fspath(config))  # a folder (scheduler_config.json) or the file
    clip = bool(config.get("clip_sample", True))
    if kind == "dpmpp_2m" and clip and config.get("clip_sample_range", 1.0) != 1.0:
        raise ValueError("dpmpp_2m clips x̂0 through diffusers' thresholding, which is a plain clip only to [−1, 1]")
    # keep what this class reads: clip_sample and variance_type mean nothing to some of them
    known = inspect.signature(cls.__init__).parameters
    config = {k: v for k, v in config.items() if k in known or k.startswith("_")}
    overrides: dict[str, Any] = {"steps_offset": 0}  # timesteps start at 0, as our indices do
    if spacing is not None:
        overrides["timestep_spacing"] = spacing
    if kind == "ddim":
        # the last step goes to ᾱ = 1 (our alphas_cumprod_prev[0]), not to ᾱ_0
        overrides["set_alpha_to_one"] = True
    elif kind == "dpmpp_2m":
        overrides.update(
            # data prediction x̂0 (DPM-Solver++, Lu et al. 2022), second order, and the midpoint
            # form D = x̂0_i + (x̂0_i − x̂0_{i−1}) / (2 r_i) of our eq. 16
            algorithm_type="dpmsolver++", solver_order=2, solver_type="midpoint",
            # first order at the first step (no earlier x̂0) and at the last (σ = 0: x = x̂0)
            lower_order_final=True, euler_at_final=False, final_sigmas_type="zero",
            # σ read off the chosen timesteps, no Karras / Lu re-gridding, no λ clipping
            use_karras_sigmas=False, use_lu_lambdas=False, lambda_min_clipped=-float("inf"),
            # no clip_sample here: dynamic thresholding with s clamped to [1, sample_max_value = 1]
            # is s = 1, i.e. x̂0 clipped to [−1, 1]
            thresholding=clip, sample_max_value=1.0,
            # a learned variance would make it slice model_output[:, :3] (RGB only);
            # sample_with_diffusers hands it the mean channels instead
            variance_type=None,
        )
    return cls.from_config(config, **overrides)


@torch.no_grad()
def sample_with_diffusers(
    net: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    scheduler: Any,
    x_T: torch.Tensor,
    steps: int | None = None,
    *,
    generator: torch.Generator | None = None,
    timesteps: Sequence[int] | None = None,
    step_kwargs: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """diffusers' sampling loop (as in its ``DDPMPipeline``) with our denoiser.

    Args:
        net: called as ``net(x_t, t)``, x_t: (B, C, H, W), t: (B,) long original timesteps;
            returns (B, C, H, W), or (B, 2C, H, W) with a learned variance.
        scheduler: from ``diffusers_scheduler``; its timesteps are reset here.
        x_T: (B, C, H, W) starting noise.
        steps: number of steps, or ``timesteps``: descending timestep indices (``DDPMScheduler``
            and ``DPMSolverMultistepScheduler`` only), e.g. ``logsnr_timesteps(d, n)[::-1]``.
        generator: the per-step noise z of ``DDPMScheduler``, drawn in our order.
        step_kwargs: extra arguments of ``scheduler.step``, e.g. ``STEP_KWARGS[kind]``.

    The scheduler gets the variance channels only when it reads them (a ``learned`` variance
    type); otherwise the first C channels, as diffusers' DiT pipeline does.
    Returns: x0 of shape (B, C, H, W), clamped to [−1, 1].
    """
    if (steps is None) == (timesteps is None):
        raise ValueError("give either steps or timesteps")
    if timesteps is not None:
        if "timesteps" not in inspect.signature(scheduler.set_timesteps).parameters:
            raise ValueError(f"{type(scheduler).__name__} takes no custom timesteps; give steps")
        scheduler.set_timesteps(timesteps=[int(t) for t in timesteps], device=x_T.device)
    else:
        scheduler.set_timesteps(steps, device=x_T.device)
    b, c = x_T.shape[:2]
    reads_variance = scheduler.config.get("variance_type") in _LEARNED
    x = x_T * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        model_input = scheduler.scale_model_input(x, t)
        output = net(model_input, t.to(x.device).expand(b))
        if not reads_variance:
            output = output[:, :c]
        x = scheduler.step(output, t, x, generator=generator, **(step_kwargs or {})).prev_sample
    return x.clamp(-1.0, 1.0)
