import pytest
import torch
from conftest import tiny_ddpm
from torchmetrics.functional.image import structural_similarity_index_measure as ssim

from ddpm_lit.core.pixels import to_unit_range
from ddpm_lit.evaluation.metrics import nearest_neighbour_ssim
from ddpm_lit.training.module import DDPMModule


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
    model = tiny_ddpm(50)
    x = model.sample(5, generator=torch.Generator().manual_seed(0), steps=4, batch_size=2)
    assert x.shape == (5, 1, 28, 28)
    assert x.min() >= -1 and x.max() <= 1
    # batching does not change the images drawn from one generator stream per batch of the same size
    y = model.sample(5, generator=torch.Generator().manual_seed(0), steps=4, batch_size=2)
    assert torch.equal(x, y)
    assert not torch.equal(x, model.sample(5, generator=torch.Generator().manual_seed(1), steps=4, batch_size=2))


def test_bad_hyperparameters_are_rejected() -> None:
    import pytest

    with pytest.raises(ValueError, match="num_val_samples"):
        tiny_ddpm(50, "linear", num_val_samples=0)


def test_sample_takes_the_sampler_and_its_options_by_name() -> None:
    model = tiny_ddpm(50, val_classifier_fid=False)
    a = model.sample(3, generator=torch.Generator().manual_seed(0), steps=5, sampler="ddim")
    b = model.sample(3, generator=torch.Generator().manual_seed(0), steps=5, sampler="ddim")
    c = model.sample(3, generator=torch.Generator().manual_seed(0), steps=5, sampler="ddim", eta=1.0)
    d = model.sample(3, generator=torch.Generator().manual_seed(0), steps=5)  # ancestral
    assert a.shape == (3, 1, 28, 28) and torch.equal(a, b)
    # the options reach the sampler: noise (η = 1) or the ancestral step change the result
    assert not torch.allclose(a, c) and not torch.allclose(a, d)
    with pytest.raises(ValueError, match="unknown sampler"):
        model.sample(2, sampler="euler")


def test_conditional_model_trains_on_labels_with_dropout_and_samples_given_digits() -> None:
    torch.manual_seed(0)
    model = tiny_ddpm(50, num_classes=10, cond_drop_prob=0.25)
    labels = torch.arange(4000) % 10
    dropped = model.drop_labels(model._batch_labels((torch.zeros(4000), labels)))
    share = float((dropped == 10).float().mean())
    assert 0.22 < share < 0.28 and torch.equal(dropped[dropped != 10], labels[dropped != 10])
    assert torch.equal(model._batch_labels((torch.zeros(10), labels[:10])), labels[:10])

    # the label reaches the network: other digits, other output
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([10, 10])
    model.eval()
    assert not torch.allclose(model(x, t, torch.tensor([3, 3])), model(x, t, torch.tensor([7, 7])))

    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    a = model.sample(4, generator=gen(), steps=3, class_labels=torch.tensor([1, 1, 2, 2]))
    b = model.sample(4, generator=gen(), steps=3, class_labels=torch.tensor([5, 5, 6, 6]))
    c = model.sample(4, generator=gen(), steps=3, class_labels=torch.tensor([1, 1, 2, 2]), guidance_scale=3.0)
    assert a.shape == (4, 1, 28, 28) and not torch.allclose(a, b) and not torch.allclose(a, c)
    with pytest.raises(ValueError, match="labels"):
        model.sample(2, class_labels=torch.tensor([1, 10]))
    plain = tiny_ddpm(50)
    with pytest.raises(ValueError, match="class-conditional"):
        plain.sample(2, class_labels=torch.tensor([1, 2]))


def test_learned_variance_model_has_the_variance_channels_and_samples() -> None:
    model = tiny_ddpm(50, variance="learned", objective="v")
    assert model.net.out_channels == 2
    loss = model.training_step((torch.rand(4, 1, 28, 28) * 2 - 1,), 0)
    assert loss.ndim == 0 and torch.isfinite(loss)
    for sampler in ("ddpm", "ddim", "dpmpp_2m"):
        assert model.sample(2, generator=torch.Generator().manual_seed(0), steps=3, sampler=sampler).shape == (2, 1, 28, 28)


def _tiny(**kwargs) -> DDPMModule:
    return tiny_ddpm(100, sample_every_n_epochs=0, **kwargs)


def _adam(**settings) -> dict:
    return {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 2e-4, **settings}


def test_channels_last_changes_the_layout_not_the_numbers() -> None:
    torch.manual_seed(0)
    plain = _tiny()
    nhwc = _tiny(channels_last=True)
    nhwc.load_state_dict(plain.state_dict())
    assert nhwc.net.enc2.conv1[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert not plain.net.enc2.conv1[0].weight.is_contiguous(memory_format=torch.channels_last)
    x0 = torch.rand(4, 1, 28, 28) * 2 - 1
    t = torch.tensor([0, 10, 50, 99])
    plain.eval(), nhwc.eval()
    torch.testing.assert_close(nhwc.net(x0, t), plain.net(x0, t), rtol=1e-4, atol=1e-5)
    # load_state_dict copies values into the NHWC parameters: the layout survives a checkpoint load
    assert nhwc.net.enc2.conv1[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_compile_happens_at_fit_setup_and_keeps_parameter_names() -> None:
    module = _tiny(compile=True)
    names = list(module.state_dict())
    assert getattr(module.net, "_compiled_call_impl", None) is None  # not at construction: copies stay plain
    module.setup("fit")
    assert module.net._compiled_call_impl is not None
    assert list(module.state_dict()) == names  # checkpoints unchanged
    _tiny(compile=False).setup("fit")  # and nothing when off


def test_fused_adam_is_passed_to_the_optimizer() -> None:
    assert _tiny(optimizer=_adam(fused=True)).configure_optimizers().defaults["fused"] is True
    assert _tiny().configure_optimizers().defaults["fused"] is None


def test_a_resumed_run_may_change_how_the_network_runs_but_not_what_it_is(tmp_path) -> None:
    from ddpm_lit.apps.train import _check_same_model
    from ddpm_lit.errors import ConfigError

    path = tmp_path / "saved.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": dict(_tiny().hparams)}, path)
    _check_same_model(str(path), _tiny(channels_last=True, compile=True, optimizer=_adam(fused=True)))
    with pytest.raises(ConfigError, match="model.optimizer.lr"):
        _check_same_model(str(path), _tiny(optimizer=_adam(lr=1e-3)))


def test_the_start_up_line_says_whether_the_model_is_conditional() -> None:
    """``describe()`` is the "model:" line train.py prints before it starts: a class-conditional
    model (the quick preset) says so, with its guidance; an unconditional one does not."""
    assert "conditional on 10 classes (guidance w = 1)" in tiny_ddpm(num_classes=10).describe()
    assert "conditional" not in tiny_ddpm().describe()
