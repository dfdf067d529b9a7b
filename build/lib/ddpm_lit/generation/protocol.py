"""What the apps (sample, evaluate, figures, compare, the validation hook) need of a generative model."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch


@runtime_checkable
class GenerativeModel(Protocol):
    """A model that draws images; a DDPM, a VAE or a GAN plugs into the apps through this.

    ``image_shape``: (C, H, W) of one image. ``num_classes``: the labels a class-conditional
    model takes (None: unconditional). ``sample(num_samples, generator, ...)`` returns
    (N, C, H, W) in [−1, 1]; a seeded CPU ``generator`` gives the same images on any device.
    Keyword arguments a model does not know (sampler, steps, guidance) are its own to refuse.
    A model with a reverse chain also has ``num_timesteps`` (T) and calls ``callback`` with
    ``{"batch", "start", "i", "t", "x"}`` along it, which the trajectory figures keep.
    """

    image_shape: tuple[int, int, int]

    @property
    def num_classes(self) -> int | None: ...

    def sample(self, num_samples: int, generator: torch.Generator | None = None, **kwargs: Any) -> torch.Tensor: ...


def has_chain(model: Any) -> bool:
    """Whether ``model`` draws along a reverse chain (``num_timesteps``, a DDPM) rather than in one
    network pass (a VAE's decoder, a GAN's generator), so takes sampler, steps and trajectory options."""
    return getattr(model, "num_timesteps", None) is not None
