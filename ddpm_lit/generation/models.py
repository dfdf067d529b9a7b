"""The models outside Lightning: a network (and a DDPM's diffusion process) and how it draws
images, with nothing of training. A LightningModule samples through the one over its own
networks (``GenerativeModule.standalone()``), and an exported folder loads into one
(``ddpm_lit.generation.pretrained``), so the two draw the same images seed for seed.

Each is a ``GenerativeModel`` (``ddpm_lit.generation.protocol``): ``image_shape``,
``num_classes``, ``sample(num_samples, generator, ...)``; ``networks`` names its modules as the
LightningModule's attributes, the names of the keys of its weights (``net.enc1.conv1.weight``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar, Literal, get_args

import torch
from torch import nn
from tqdm.auto import tqdm

from ddpm_lit.core.diffusion import GaussianDiffusion, randn
from ddpm_lit.generation.generate import check_labels, check_request, cycled_labels, generate
from ddpm_lit.generation.speed import autocast
from ddpm_lit.nets.gan import Generator
from ddpm_lit.nets.unet import UNet
from ddpm_lit.nets.vae import ConvVAE

SampleMode = Literal["mean", "sample"]
SAMPLE_MODES: tuple[str, ...] = get_args(SampleMode)


def refuse_options(family: str, options: Mapping[str, Any]) -> None:
    """A ValueError naming the sampling options a one-pass model does not take (a sampler,
    steps, guidance, …); None values and ``clip_denoised=True`` pass."""
    given = sorted(k for k, v in options.items() if v is not None and not (k == "clip_denoised" and v is True))
    if given:
        raise ValueError(f"{', '.join(given)}: not an option of a {family} (it draws in one network pass)")


@contextlib.contextmanager
def evaluating(*modules: nn.Module) -> Iterator[None]:
    """``modules`` in eval mode (batch norm with its running statistics), then back as they were."""
    modes = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        yield
    finally:
        for m, mode in zip(modules, modes):
            m.train(mode)


class StandaloneModel:
    """What every model outside Lightning has: its family, its networks and their weights."""

    family: ClassVar[str] = ""
    image_shape: tuple[int, int, int]

    @property
    def networks(self) -> dict[str, nn.Module]:
        """The networks by the name of their weights' prefix."""
        raise NotImplementedError

    def sampling_config(self) -> dict[str, Any]:
        """How it samples unless told otherwise (config.json's ``sampling``)."""
        return {}

    @property
    def num_classes(self) -> int | None:
        return None

    @property
    def device(self) -> torch.device:
        return next(next(iter(self.networks.values())).parameters()).device

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Every network's weights and buffers, keyed ``<network>.<name>`` as in the LightningModule."""
        return {f"{name}.{key}": value for name, net in self.networks.items() for key, value in net.state_dict().items()}

    def to(self, device: torch.device | str) -> StandaloneModel:
        for net in self.networks.values():
            net.to(device)
        return self


class DiffusionModel(StandaloneModel):
    """A DDPM: the denoiser ``net(x_t, t)`` (a ``UNet``), its ``GaussianDiffusion``, and its
    defaults when sampling (``clip_denoised``; a conditional model's ``guidance_scale``)."""

    family = "ddpm"

    def __init__(self, net: UNet, diffusion: GaussianDiffusion, clip_denoised: bool = True,
                 guidance_scale: float = 1.0) -> None:
        self.net, self.diffusion = net, diffusion
        self.clip_denoised, self.guidance_scale = bool(clip_denoised), float(guidance_scale)
        self.image_shape = (net.in_channels, net.image_size, net.image_size)

    @property
    def networks(self) -> dict[str, nn.Module]:
        return {"net": self.net}

    def sampling_config(self) -> dict[str, Any]:
        return {"clip_denoised": self.clip_denoised, "guidance_scale": self.guidance_scale}

    @property
    def num_classes(self) -> int | None:
        """The labels of a class-conditional model (None: unconditional)."""
        return self.net.num_classes

    @property
    def num_timesteps(self) -> int:
        return self.diffusion.num_timesteps

    def to(self, device: torch.device | str) -> DiffusionModel:
        self.net.to(device)
        self.diffusion.to(device)
        return self

    @torch.no_grad()
    def sample(
        self,
        num_samples: int,
        generator: torch.Generator | list[torch.Generator] | None = None,
        steps: int | None = None,
        clip_denoised: bool | None = None,
        batch_size: int | None = None,
        progress: bool = False,
        sampler: str = "ddpm",
        class_labels: torch.Tensor | None = None,
        guidance_scale: float | None = None,
        callback: Callable[[dict[str, Any]], None] | None = None,
        **options: Any,
    ) -> torch.Tensor:
        """Draw ``num_samples`` images: (N, C, H, W) in [−1, 1], with ``ddpm_lit.generation.generate``.

        ``generator`` may live on any device (a CPU one gives the same samples on a GPU), or be
        one per image (``image_generators``); ``steps`` respaces the chain (None: all T);
        ``batch_size`` bounds memory (None: all at once); ``sampler`` is a name of
        ``ddpm_lit.core.samplers.SAMPLERS`` (``ddpm``: ancestral, the study's; ``ddim``;
        ``dpmpp_2m``) and ``options`` its own arguments (e.g. ``eta``, ``spacing``). A
        conditional model draws ``class_labels`` (N,) (None: 0, 1, …, 9, 0, …) with
        classifier-free guidance ``guidance_scale`` (None: the model's). ``callback`` gets
        ``{"batch", "start", "i", "t", "x", ...}`` with the starting noise (``i`` = 0, ``t`` = T)
        and after every step, e.g. to keep a trajectory.
        """
        check_request(num_samples, sampler)
        k = self.num_classes
        if k is not None:
            class_labels = check_labels(cycled_labels(num_samples, k) if class_labels is None else class_labels,
                                        num_samples, k)
            guidance_scale = self.guidance_scale if guidance_scale is None else guidance_scale
        elif class_labels is not None or guidance_scale is not None:
            raise ValueError("class labels and guidance need a class-conditional model (model.num_classes)")
        with evaluating(self.net):
            return generate(
                self.net, self.diffusion, num_samples, self.image_shape, self.device, generator=generator, steps=steps,
                clip_denoised=self.clip_denoised if clip_denoised is None else clip_denoised,
                batch_size=batch_size, progress=progress, sampler=sampler, class_labels=class_labels,
                guidance_scale=1.0 if guidance_scale is None else guidance_scale, num_classes=k, callback=callback,
                **options,
            )


@torch.no_grad()
def sample_in_one_pass(
    family: str,
    draw_noise: Callable[[int, Any], dict[str, torch.Tensor]],
    make: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    device: torch.device,
    num_samples: int,
    generator: torch.Generator | list[torch.Generator] | None = None,
    batch_size: int | None = None,
    progress: bool = False,
    class_labels: torch.Tensor | None = None,
    callback: Any = None,
    precision: str = "32-true",
    fixed_batch: bool = False,
    **options: Any,
) -> torch.Tensor:
    """``num_samples`` images (N, C, H, W) in [−1, 1] of a model that draws in one network pass:
    ``draw_noise(n, generator)`` gives every random input up front (so the batch size does not
    change which noise an image gets), ``make(batch)`` the images of a batch of them, in
    ``precision`` (autocast). ``fixed_batch`` is accepted (a one-pass network is not compiled by
    the front end). Chain options (a sampler, steps, guidance) are refused; ``callback`` is
    accepted and never called (there is no chain to follow)."""
    check_request(num_samples, "ddpm")
    refuse_options(family, {**options, "class_labels": class_labels})
    batch_size = batch_size or num_samples
    noise = draw_noise(num_samples, generator)
    out = []
    for start in tqdm(range(0, num_samples, batch_size), desc="sampling", unit="batch", disable=not progress):
        batch = {k: v[start : start + batch_size] for k, v in noise.items()}
        with autocast(device, precision):
            out.append(make(batch).float().clamp(-1, 1))
    return torch.cat(out)


class OnePassModel(StandaloneModel):
    """A model that draws an image with one network pass from noise: ``draw_noise`` and ``make``."""

    def draw_noise(self, num_samples: int, generator: Any) -> dict[str, torch.Tensor]:
        """Every random input of ``num_samples`` images, each (N, ...), drawn with ``generator``."""
        raise NotImplementedError

    def make(self, noise: dict[str, torch.Tensor]) -> torch.Tensor:
        """Images (B, C, H, W) from a batch of ``draw_noise``'s inputs."""
        raise NotImplementedError

    def sample(self, num_samples: int, generator: Any = None, **kwargs: Any) -> torch.Tensor:
        """See ``sample_in_one_pass``: ``generator`` is one generator or one per image, on any device."""
        with evaluating(*self.networks.values()):
            return sample_in_one_pass(self.family, self.draw_noise, self.make, self.device, num_samples, generator,
                                      **kwargs)


class VAEModel(OnePassModel):
    """A VAE's decoder p(x|z), z ~ N(0, I): a sample is its mean (``sample_mode`` ``mean``,
    clipped to [−1, 1]) or a draw of its discretised Gaussian (``sample``)."""

    family = "vae"

    def __init__(self, net: ConvVAE, sample_mode: SampleMode = "mean") -> None:
        if sample_mode not in SAMPLE_MODES:
            raise ValueError(f"sample_mode must be one of {', '.join(SAMPLE_MODES)}, got {sample_mode!r}")
        self.net, self.sample_mode = net, sample_mode
        self.image_shape = (net.in_channels, net.image_size, net.image_size)

    @property
    def networks(self) -> dict[str, nn.Module]:
        return {"net": self.net}

    def sampling_config(self) -> dict[str, Any]:
        return {"sample_mode": self.sample_mode}

    def draw_noise(self, num_samples: int, generator: Any) -> dict[str, torch.Tensor]:
        noise = {"z": randn((num_samples, self.net.latent_dim), generator, self.device)}
        if self.sample_mode == "sample":
            noise["pixels"] = randn((num_samples, *self.image_shape), generator, self.device)
        return noise

    def make(self, noise: dict[str, torch.Tensor]) -> torch.Tensor:
        """The decoder's mean at z (``sample_mode=mean``), or a draw of its pixel distribution."""
        mean, log_scale = self.net.decode(noise["z"])
        return mean + log_scale.exp() * noise["pixels"] if "pixels" in noise else mean


class GANModel(OnePassModel):
    """A GAN's generator: a sample is G(z), z ~ N(0, I)."""

    family = "gan"

    def __init__(self, generator: Generator) -> None:
        self.generator = generator
        self.image_shape = (generator.out_channels, generator.image_size, generator.image_size)

    @property
    def networks(self) -> dict[str, nn.Module]:
        return {"generator": self.generator}

    def draw_noise(self, num_samples: int, generator: Any) -> dict[str, torch.Tensor]:
        return {"z": randn((num_samples, self.generator.latent_dim), generator, self.device)}

    def make(self, noise: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.generator(noise["z"])


# The families' models, by the ``family`` config.json names.
MODELS: dict[str, type[StandaloneModel]] = {m.family: m for m in (DiffusionModel, VAEModel, GANModel)}
