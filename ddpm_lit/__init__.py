"""Denoising Diffusion Probabilistic Models on MNIST with PyTorch Lightning and Hydra."""

from ddpm_lit import resolvers

resolvers.register()

__version__ = "0.1.0"
