import pytest
import torch
from torchmetrics.functional.image import structural_similarity_index_measure as ssim

from ddpm_lit.module import DDPMModule, nearest_neighbour_ssim, to_unit_range

NET = {"base_channels": 8, "time_emb_dim": 32, "attn_heads": 2}


def test_nearest_neighbour_ssim_finds_the_copy() -> None:
    g = torch.Generator().manual_seed(0)
    samples = torch.rand(3, 1, 28, 28, generator=g)
    reference = torch.rand(20, 1, 28, 28, generator=g)
    assert (nearest_neighbour_ssim(samples, reference) < 0.5).all()  # noise vs noise
    reference[7] = samples[1]
    scores = nearest_neighbour_ssim(samples, reference)
    assert scores[1] == torch.tensor(1.0)
    assert scores[0] < 0.5 and scores[2] < 0.5
    # it is the best score over the reference, per sample
    direct = torch.stack([ssim(samples[0:1], reference[j : j + 1], data_range=1.0) for j in range(20)])
    assert torch.isclose(scores[0], direct.max(), atol=1e-5)


def test_to_unit_range() -> None:
    assert to_unit_range(torch.tensor([-1.0, 0.0, 1.0, 3.0])).tolist() == [0.0, 0.5, 1.0, 1.0]


def test_sample_contract_and_generator_reproducibility() -> None:
    model = DDPMModule(net=NET, diffusion={"schedule": "cosine", "timesteps": 50})
    x = model.sample(5, generator=torch.Generator().manual_seed(0), steps=4, batch_size=2)
    assert x.shape == (5, 1, 28, 28)
    assert x.min() >= -1 and x.max() <= 1
    # batching does not change the images drawn from one generator stream per batch of the same size
    y = model.sample(5, generator=torch.Generator().manual_seed(0), steps=4, batch_size=2)
    assert torch.equal(x, y)
    assert not torch.equal(x, model.sample(5, generator=torch.Generator().manual_seed(1), steps=4, batch_size=2))


def test_bad_hyperparameters_are_rejected() -> None:
    import pytest

    with pytest.raises(ValueError, match="lr"):
        DDPMModule(net=NET, diffusion={"schedule": "linear", "timesteps": 50}, lr=0)
    with pytest.raises(ValueError, match="num_val_samples"):
        DDPMModule(net=NET, diffusion={"schedule": "linear", "timesteps": 50}, num_val_samples=0)


def test_sample_takes_the_sampler_and_its_options_by_name() -> None:
    from ddpm_lit.module import DDPMModule

    model = DDPMModule(net={"base_channels": 8, "time_emb_dim": 32, "attn_heads": 2},
                       diffusion={"schedule": "cosine", "timesteps": 50}, val_fid=False)
    a = model.sample(3, generator=torch.Generator().manual_seed(0), steps=5, sampler="ddim")
    b = model.sample(3, generator=torch.Generator().manual_seed(0), steps=5, sampler="ddim")
    c = model.sample(3, generator=torch.Generator().manual_seed(0), steps=5, sampler="ddim", eta=1.0)
    d = model.sample(3, generator=torch.Generator().manual_seed(0), steps=5)  # ancestral
    assert a.shape == (3, 1, 28, 28) and torch.equal(a, b)
    # the options reach the sampler: noise (η = 1) or the ancestral step change the result
    assert not torch.allclose(a, c) and not torch.allclose(a, d)
    with pytest.raises(ValueError, match="unknown sampler"):
        model.sample(2, sampler="euler")
