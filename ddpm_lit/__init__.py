"""Denoising Diffusion Probabilistic Models on MNIST with PyTorch Lightning and Hydra.

``ddpm_lit.load_pretrained(folder)`` loads a model that ``export.py`` wrote (see
``ddpm_lit.generation.pretrained``), without Lightning or Hydra.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["load_pretrained", "save_pretrained"]


def __getattr__(name: str) -> Any:
    # Lazily, so that `import ddpm_lit` (every command does) does not load torch and the networks.
    if name in ("load_pretrained", "save_pretrained"):
        from ddpm_lit.generation import pretrained

        return getattr(pretrained, name)
    raise AttributeError(f"module 'ddpm_lit' has no attribute {name!r}")
