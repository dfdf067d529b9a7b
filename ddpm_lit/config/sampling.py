"""The sampler settings against the checkpoint's model, and ``module.sample``'s arguments from them."""

from __future__ import annotations

import logging
from typing import Any

import torch

from ddpm_lit.config.schema import SamplerSettings
from ddpm_lit.errors import ConfigError
from ddpm_lit.generation.generate import Drawn, draw
from ddpm_lit.generation.protocol import has_chain
from ddpm_lit.generation.ranks import gather_in_order, rank_indices
from ddpm_lit.generation.speed import SamplingPlan, SpeedSettings, eager_plan, plan_sampling
from ddpm_lit.training.ranks import Ranks

log = logging.getLogger(__name__)


def check_sampling(sampler: SamplerSettings, guidance_scale: float | None, module: Any, ckpt_path: str) -> None:
    """Settings the checkpoint's ``module`` can honour: ``sampler.steps`` in [1, T] or null, no
    sampler settings for a one-pass model, and guidance only for a class-conditional one."""
    family = module.family
    if guidance_scale is not None and module.num_classes is None:
        raise ConfigError(f"guidance_scale is for class-conditional models; {ckpt_path} is an unconditional {family}")
    if not has_chain(module):
        if sampler.given:
            raise ConfigError(f"{', '.join(sampler.given)}: a {family} has no sampler (it draws in one network pass); "
                              f"{ckpt_path} is a {family} checkpoint")
        return
    steps, T = sampler.steps, module.num_timesteps
    if steps is not None and not (isinstance(steps, int) and not isinstance(steps, bool) and 1 <= steps <= T):
        raise ConfigError(f"sampler.steps must be in [1, {T}] (the checkpoint's T) or null, got {steps!r}")


def sampling_kwargs(sampler: SamplerSettings, module: Any) -> dict[str, Any]:
    """The arguments of ``module.sample`` that the sampler settings give: the steps, clipping,
    sampler name and options for a model with a reverse chain; none for a one-pass model."""
    if not has_chain(module):
        return {}
    return dict(steps=sampler.steps, clip_denoised=sampler.clip_denoised, sampler=sampler.name, **sampler.options)


def plan_for(speed: SpeedSettings, module: Any, num: int, steps: int | None, guidance_scale: float | None,
             ranks: Ranks | None = None) -> SamplingPlan:
    """How ``module`` draws ``num`` images with ``steps`` sampler steps (``speed``'s auto settings
    timed here). Over several ranks rank 0 decides and every rank follows, so that the ranks
    draw the batches of one plan. A one-pass model is drawn as loaded."""
    ranks = ranks or Ranks(device=module.device)
    if not has_chain(module):
        plan = eager_plan(module, speed.batch_size if speed.batch_size != "auto" else min(num, 256))
        plan.note = f"a {module.family} draws in one network pass"
        return plan
    guided = guidance_scale if module.num_classes is not None else None
    evals = module.evaluations_per_image(steps, guided, num_timesteps=module.num_timesteps)
    plan = plan_sampling(module, speed, num, evals, guidance_scale=guided, log=log.info) if ranks.is_zero else None
    if ranks.world_size > 1:
        plan = ranks.broadcast(plan)
        # at least one batch per rank: a batch of all the images would leave the other ranks idle
        plan.batch_size = min(plan.batch_size or num, -(-num // ranks.world_size))
        if not ranks.is_zero:  # the chosen format and compilation, untimed
            plan.apply(module)
    return plan


def draw_over_ranks(
    sampler: SamplerSettings, plan: SamplingPlan, guidance_scale: float | None, model: Any, num: int, seed: int,
    labels: torch.Tensor | None = None, ranks: Ranks | None = None, trajectory: int = 0, progress: bool = True,
) -> Drawn:
    """``num`` images drawn with the sampler settings and ``plan``, image i from the noise of
    ``(seed, i)``; over several ranks each draws its share and every rank gets all of them in
    order (the trajectory is rank 0's). ``labels`` (num,) for a conditional model."""
    ranks = ranks or Ranks(device=model.device)
    options = sampling_kwargs(sampler, model)
    if labels is not None:
        options["guidance_scale"] = guidance_scale
    batch = plan.batch_size or num
    indices = rank_indices(num, batch, ranks.rank, ranks.world_size)
    drawn = draw(model, num, seed=seed, trajectory=trajectory if ranks.is_zero else 0, labels=labels, indices=indices,
                 progress=progress and ranks.is_zero, **options, **plan.sample_kwargs())
    if ranks.world_size > 1:
        drawn.samples = gather_in_order(drawn.samples.to(ranks.device), num, batch, ranks.world_size,
                                        ranks.all_gather).cpu()
        drawn.labels = labels
        ranks.finish()
    return drawn
