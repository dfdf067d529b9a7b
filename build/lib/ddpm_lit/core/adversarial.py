"""GAN objectives on discriminator logits (Goodfellow et al. 2014; Lim & Ye 2017; Mescheder et al. 2018).

D(x) = σ(logit). Non-saturating (Goodfellow et al. 2014, §3): the discriminator minimises
−log D(x) − log(1 − D(G(z))) = softplus(−l_real) + softplus(l_fake), the generator
−log D(G(z)) = softplus(−l_fake). Hinge (Lim & Ye 2017): E[max(0, 1 − l_real)] + E[max(0, 1 + l_fake)]
and −E[l_fake]. R1 (Mescheder et al. 2018, eq. 9): the penalty (γ/2) E‖∇_x l(x)‖² on real images.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
import torch.nn.functional as F

GANLoss = Literal["non_saturating", "hinge"]
GAN_LOSSES: tuple[str, ...] = get_args(GANLoss)


def check_loss(loss: str) -> None:
    if loss not in GAN_LOSSES:
        raise ValueError(f"loss must be one of {', '.join(GAN_LOSSES)}, got {loss!r}")


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, loss: str = "non_saturating") -> torch.Tensor:
    """The discriminator's loss on a batch of real and of generated images' logits (scalar)."""
    check_loss(loss)
    if loss == "hinge":
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss(fake_logits: torch.Tensor, loss: str = "non_saturating") -> torch.Tensor:
    """The generator's loss on the discriminator's logits of generated images (scalar)."""
    check_loss(loss)
    if loss == "hinge":
        return -fake_logits.mean()
    return F.softplus(-fake_logits).mean()


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """E‖∇_x l(x)‖² over real images (scalar), differentiable for the discriminator's update;
    ``real_images`` must have had ``requires_grad_()`` before the discriminator saw them."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()
