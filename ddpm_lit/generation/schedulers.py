"""The diffusion process in diffusers' words: the ``scheduler_config.json`` of an exported model,
which diffusers' ``DDPMScheduler``, ``DDIMScheduler`` and ``DPMSolverMultistepScheduler`` read."""

from __future__ import annotations

from typing import Any

from ddpm_lit.core.diffusion import GaussianDiffusion

# Our names -> diffusers' (``DDPMScheduler``'s ``beta_schedule``, ``prediction_type``, ``variance_type``).
BETA_SCHEDULES = {"linear": "linear", "cosine": "squaredcos_cap_v2"}
PREDICTION_TYPES = {"eps": "epsilon", "v": "v_prediction", "x0": "sample"}
VARIANCE_TYPES = {"posterior": "fixed_small", "beta": "fixed_large", "learned": "learned_range"}


def scheduler_config(diffusion: GaussianDiffusion, clip_denoised: bool = True) -> dict[str, Any]:
    """``DDPMScheduler``'s config for ``diffusion`` (a process built from its config, not a
    respaced one).

    The linear schedule's end points are ours scaled by 1000 / T (``linear_beta_schedule``);
    ``squaredcos_cap_v2`` is the cosine schedule of Nichol & Dhariwal (2021) with β capped at
    0.999, as ours. ``timestep_spacing`` ``linspace`` is the chain our ``ddpm`` sampler respaces
    to (T − 1 down to 0, evenly, rounded).
    """
    config = diffusion.config()  # refuses a respaced process
    scale = 1000.0 / diffusion.num_timesteps
    return {
        "_class_name": "DDPMScheduler",
        "num_train_timesteps": diffusion.num_timesteps,
        "beta_schedule": BETA_SCHEDULES[config["schedule"]],
        "beta_start": 1e-4 * scale,
        "beta_end": 0.02 * scale,
        "prediction_type": PREDICTION_TYPES[diffusion.objective],
        "variance_type": VARIANCE_TYPES[diffusion.variance],
        "clip_sample": bool(clip_denoised),
        "clip_sample_range": 1.0,
        "thresholding": False,
        "timestep_spacing": "linspace",
        "steps_offset": 0,
        "rescale_betas_zero_snr": False,
    }
