"""What the commands ask of a model family, answered by the family: the three families' answers,
and a fourth family, defined here, that the commands and the reporting layer take unchanged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from conftest import tiny_ddpm
from omegaconf import OmegaConf

from ddpm_lit.training import planning
from ddpm_lit.apps.evaluate import _bound, check_likelihood, nll_wanted
from ddpm_lit.apps.families import network_evaluations, run_row
from ddpm_lit.core.diffusion import randn
from ddpm_lit.errors import ConfigError
from ddpm_lit.generation.protocol import has_chain
from ddpm_lit.reporting.run_figures import FIGURES, run_figures
from ddpm_lit.training.base import OnePassModule, check_hook_settings, family_class
from ddpm_lit.training.gan import GANModule
from ddpm_lit.training.module import DDPMModule
from ddpm_lit.training.planning import Speed, measure_speed
from ddpm_lit.training.vae import VAEModule

GENERATOR = {"_target_": "ddpm_lit.nets.gan.Generator", "base_channels": 4, "latent_dim": 5}
DISCRIMINATOR = {"_target_": "ddpm_lit.nets.gan.Discriminator", "base_channels": 4}
CONV_VAE = {"_target_": "ddpm_lit.nets.vae.ConvVAE", "base_channels": 4, "latent_dim": 3}


# ---- a fourth family ------------------------------------------------------------------------------
class PixelModule(OnePassModule):
    """A one-pass family with a trivial network: an image is tanh(W z + b), z ~ N(0, I), trained to
    reconstruct the batch from fresh z (a toy; what matters is that it is a family of its own)."""

    family = "pixel"
    logged_metrics = ("train/loss",)
    loss_keys = (("train/loss",), ())

    def __init__(self, latent_dim: int = 4, sample_every_n_epochs: int = 0, num_val_samples: int = 8, val_seed: int = 0,
                 nn_reference_size: int = 16, val_classifier_fid: bool = False, fid_reference_size: int = 16) -> None:
        super().__init__()
        check_hook_settings(locals())
        self.save_hyperparameters(logger=False)
        self.decoder = torch.nn.Linear(latent_dim, 28 * 28)
        self.image_shape = (1, 28, 28)

    def draw_noise(self, num_samples: int, generator: torch.Generator | None) -> dict[str, torch.Tensor]:
        return {"z": randn((num_samples, self.hparams.latent_dim), generator, self.device)}

    def generate(self, noise: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.tanh(self.decoder(noise["z"])).view(-1, *self.image_shape)

    def training_loss(self, x0: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return (self.generate(self.draw_noise(len(x0), None)) - x0).pow(2).mean()

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        loss = self.training_loss(batch[0])
        self.log("train/loss", loss)
        return loss

    def configure_optimizers(self) -> Any:
        return torch.optim.Adam(self.parameters(), lr=1e-3)


class ExactPixelModule(PixelModule):
    """The fourth family with a likelihood of its own (a made-up one: the mean squared pixel), the
    process figure of schedules, three network passes per image and three optimizer steps a batch."""

    family = "exact_pixel"
    likelihood = "toy"
    optimizer_steps_per_batch = 3
    run_figures = ("ssim_histogram", "schedules")
    timed_steps: ClassVar[list[int]] = []

    @classmethod
    def evaluations_per_image(cls, steps: int | None, guidance_scale: float | None,
                              num_timesteps: int | None = None) -> int:
        return 3

    def likelihood_bounds(self, images: torch.Tensor, *, k: int, batch_size: int,
                          generator: torch.Generator | None = None, variance: str | None = None,
                          device: torch.device | None = None, progress: bool = False) -> dict[str, Any]:
        per_image = images.pow(2).flatten(1).mean(1)
        return {"bound": "toy", "bpd": float(per_image.mean()), "bpd_stderr": 0.0, "num_images": len(images)}

    def timing_step(self, x0: torch.Tensor, labels: torch.Tensor | None, optimizer: torch.optim.Optimizer,
                    autocast: Any = None) -> None:
        self.timed_steps.append(len(x0))
        super().timing_step(x0, labels, optimizer)


def test_families_count_a_fourth_familys_evaluations_and_images_as_the_family_says() -> None:
    config = {"schedule": {"timesteps": 1000}}
    assert network_evaluations(PixelModule, {"sampler": None, "guidance_scale": None}, config) == 1
    assert network_evaluations(ExactPixelModule, {"sampler": None, "guidance_scale": None}, config) == 3
    assert PixelModule.images_per_optimizer_step(64) == 64
    assert ExactPixelModule.images_per_optimizer_step(60) == 20


def test_the_planning_probe_times_a_fourth_family_with_its_own_step() -> None:
    module = ExactPixelModule()
    weights = {k: v.clone() for k, v in module.state_dict().items()}
    ExactPixelModule.timed_steps.clear()
    speed = measure_speed(module, "32-true", torch.device("cpu"), batch_size=4, sample_batch=2, min_seconds=0.0)
    assert len(ExactPixelModule.timed_steps) >= 2 + 3 and set(ExactPixelModule.timed_steps) == {4}  # warm-up + timed
    assert speed.train_images_per_s > 0 and speed.sample_evals_per_s > 0
    assert all(torch.equal(v, module.state_dict()[k]) for k, v in weights.items())  # a copy was trained, not it


@pytest.mark.parametrize("family, sampling_seconds", [(PixelModule, 4), (ExactPixelModule, 12)])
def test_the_time_budget_counts_a_fourth_familys_evaluations(monkeypatch: pytest.MonkeyPatch, family: type,
                                                             sampling_seconds: int) -> None:
    class Probe:  # 100 training images/s, 1 network evaluation/s
        def __init__(self, *args, **kwargs) -> None:
            pass

        def measure(self, *args, **kwargs) -> Speed:
            return Speed("32-true", 100.0, 1.0)

    monkeypatch.setattr(planning, "SpeedProbe", Probe)
    plan = planning.plan_run(family(), precision="32-true", budget_minutes=5, device=torch.device("cpu"),
                             batch_size=4, final_samples=4, final_sample_steps=None, reserve_seconds=0, elapsed=0.0)
    assert f"then ~{sampling_seconds} s for the final samples" in plan.expected  # 4 images × the family's evaluations


def _run_dir(tmp_path: Path) -> Path:
    """A run dir with the config the figures read and a CSV history of train/loss."""
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / "csv" / "version_0").mkdir(parents=True)
    (run / "csv" / "version_0" / "metrics.csv").write_text("step,train/loss\n0,1.0\n1,0.5\n2,0.25\n")
    return run


class ReferenceImages:
    """Stands in for the datamodule: seeded images in [−1, 1]."""

    def reference_images(self, split: str, n: int, seed: int = 0) -> torch.Tensor:
        return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed + len(split))) * 2 - 1


@pytest.mark.parametrize("family, figures", [(PixelModule, {"loss_curves", "ssim_histogram"}),
                                              (ExactPixelModule, {"ssim_histogram", "schedules"})])
def test_run_figures_draws_the_figures_a_fourth_family_lists(tmp_path: Path, family: type, figures: set) -> None:
    run = _run_dir(tmp_path)
    cfg = OmegaConf.create({"schedule": {"name": "linear", "timesteps": 100}, "model": {"_target_": "x.Y"}})
    written = run_figures(run, module=family(), datamodule=ReferenceImages(), num_samples=4, nn_reference_size=8,
                          config=cfg)
    assert set(written) == figures
    assert sorted(p.stem for p in (run / "figures").glob("*.png")) == sorted(figures)
    assert (run / "samples" / "final.npz").is_file()  # drawn from the live module, one pass each


def test_evaluate_asks_a_fourth_family_for_its_likelihood(tmp_path: Path) -> None:
    cfg = OmegaConf.create({"ckpt_path": "p.ckpt", "seed": 0,
                            "nll": {"enabled": None, "variance": None, "num_images": 5, "batch_size": 2, "iwae_samples": 3}})
    assert not nll_wanted(cfg, PixelModule()) and nll_wanted(cfg, ExactPixelModule())
    test = torch.rand(20, 1, 28, 28) * 2 - 1
    nll = _bound(cfg, ExactPixelModule(), test, torch.device("cpu"), tmp_path)
    assert nll["bound"] == "toy" and nll["num_images"] == 5 and 0 < nll["bpd"] < 1
    assert not (tmp_path / "bound_terms.pt").exists()  # a bound without terms: no figure, no file
    cfg.nll.enabled = True
    with pytest.raises(ConfigError, match="nll.enabled=true: a pixel has no likelihood to bound; p.ckpt is a pixel"):
        check_likelihood(cfg, PixelModule())
    cfg.nll.variance = "beta"
    with pytest.raises(ConfigError, match="nll.variance=beta: the reverse variance is a DDPM's; p.ckpt is a exact_pixel"):
        check_likelihood(cfg, ExactPixelModule())


# ---- the three families' answers ------------------------------------------------------------------
def _vae() -> VAEModule:
    return VAEModule(net=CONV_VAE, sample_every_n_epochs=0)


def _gan() -> GANModule:
    return GANModule(generator=GENERATOR, discriminator=DISCRIMINATOR, sample_every_n_epochs=0)


def test_evaluations_per_image_of_the_three_families() -> None:
    assert DDPMModule.evaluations_per_image(20, 2.0) == 40  # guided: conditional and unconditional outputs
    assert DDPMModule.evaluations_per_image(20, 1.0) == 20 and DDPMModule.evaluations_per_image(20, None) == 20
    assert DDPMModule.evaluations_per_image(None, None, num_timesteps=1000) == 1000  # the whole chain
    assert DDPMModule.evaluations_per_image(None, 0.0, num_timesteps=50) == 100
    with pytest.raises(ValueError, match="steps or its T"):
        DDPMModule.evaluations_per_image(None, None)
    for one_pass in (VAEModule, GANModule):
        assert one_pass.evaluations_per_image(20, 2.0, num_timesteps=1000) == 1


def test_optimizer_steps_and_images_per_step_of_the_three_families() -> None:
    assert GANModule.optimizer_steps_per_batch == 2 and GANModule.images_per_optimizer_step(64) == 32
    assert DDPMModule.images_per_optimizer_step(64) == VAEModule.images_per_optimizer_step(64) == 64


def test_the_figures_and_loss_curves_each_family_lists() -> None:
    process = {"forward_process", "schedules", "two_mode_diffusion", "trajectory"}
    assert set(DDPMModule.run_figures) == set(FIGURES)
    for one_pass in (VAEModule, GANModule):
        assert set(one_pass.run_figures) == set(FIGURES) - process
    assert DDPMModule.loss_keys == VAEModule.loss_keys == (("train/loss",), ("val/loss",))
    assert GANModule.loss_keys == (("train/d_loss", "train/g_loss"), ())
    assert DDPMModule.reverse_chain and not VAEModule.reverse_chain and not GANModule.reverse_chain
    for model in (tiny_ddpm(20), _vae(), _gan()):  # the class says what the protocol finds on the model
        assert has_chain(model) == model.reverse_chain


def test_each_family_names_its_likelihood_and_refuses_options_it_does_not_take() -> None:
    assert DDPMModule.likelihood and VAEModule.likelihood and GANModule.likelihood is None
    ddpm, learned = tiny_ddpm(20), tiny_ddpm(20, variance="learned")
    ddpm.check_likelihood_options(variance="beta")
    learned.check_likelihood_options(variance="learned")
    with pytest.raises(ValueError, match=r"nll.variance=learned, but the model has a fixed variance \(posterior\)"):
        ddpm.check_likelihood_options(variance="learned")
    for one_pass in (_vae(), _gan()):
        one_pass.check_likelihood_options(variance=None)
        with pytest.raises(ValueError, match="the reverse variance is a DDPM's"):
            one_pass.check_likelihood_options(variance="beta")
    with pytest.raises(NotImplementedError, match="a gan has no likelihood"):
        _gan().likelihood_bounds(torch.zeros(2, 1, 28, 28), k=1, batch_size=2)


def test_the_ddpm_and_vae_bounds_share_one_signature_and_its_keys() -> None:
    images = torch.rand(3, 1, 28, 28) * 2 - 1
    torch.manual_seed(0)
    for model in (tiny_ddpm(20), _vae()):
        bounds = model.likelihood_bounds(images, k=2, batch_size=2, generator=torch.Generator().manual_seed(0),
                                         variance=None, device=torch.device("cpu"))
        assert bounds["bpd"] > 0 and bounds["bpd_stderr"] > 0 and bounds["num_images"] == 3
        assert model.training  # the mode is given back
    ddpm = tiny_ddpm(20).likelihood_bounds(images, k=1, batch_size=2, generator=torch.Generator().manual_seed(0))
    assert ddpm["bound"] == "ddpm" and ddpm["variance"] == "posterior"
    assert ddpm["bound_terms"]["terms"].shape == (20,) and ddpm["bound_terms"]["totals"].shape == (3,)
    assert ddpm["bpd"] == pytest.approx(float(ddpm["bound_terms"]["totals"].mean()))
    vae = _vae().likelihood_bounds(images, k=2, batch_size=2, generator=torch.Generator().manual_seed(0))
    assert vae["bound"] == "elbo" and vae["bpd"] == vae["elbo_bpd"] and vae["iwae_samples"] == 2
    assert "bound_terms" not in vae


def test_family_class_names_only_the_families_of_ddpm_lit() -> None:
    assert family_class("ddpm_lit.training.gan.GANModule") is GANModule
    assert family_class("ddpm_lit.training.module.DDPMModule") is DDPMModule
    for name in ("ddpm_lit.nets.unet.UNet", "os.system", "ddpm_lit.training.gone.Module", "ddpm_lit.training.base.OnePassModule"):
        assert family_class(name) is None


def _scored_run(tmp_path: Path, target: str, global_step: int, source: dict[str, Any]) -> tuple[Path, Path]:
    """A run dir and an evaluation dir as the families command leaves them."""
    run, evaluation = tmp_path / "run", tmp_path / "eval"
    (run / ".hydra").mkdir(parents=True)
    evaluation.mkdir()
    OmegaConf.save({"model": {"_target_": target}, "data": {"batch_size": 64}, "schedule": {"timesteps": 1000}},
                   run / ".hydra" / "config.yaml")
    (run / "metrics.json").write_text(json.dumps({"fit_seconds": 60.0, "global_step": global_step, "params": 1000}))
    (evaluation / "metrics.json").write_text(json.dumps({
        "samples": {"num_images": 10, "classifier_fid": 1.0, "classes_present": 10}, "timings": {"sampling": 1.0},
        "source": source}))
    return run, evaluation


@pytest.mark.parametrize("target, source, evaluations, images_k", [
    ("ddpm_lit.training.module.DDPMModule", {"sampler": {"steps": 20}, "guidance_scale": 2.0}, 40, 6.4),
    ("ddpm_lit.training.module.DDPMModule", {"sampler": {"steps": None}, "guidance_scale": None}, 1000, 6.4),
    ("ddpm_lit.training.gan.GANModule", {"sampler": None, "guidance_scale": None}, 1, 3.2),  # D, then G: 2 steps a batch
    ("ddpm_lit.training.vae.VAEModule", {"sampler": None, "guidance_scale": None}, 1, 6.4),
])  # fmt: skip
def test_a_families_row_counts_as_the_runs_family_says(tmp_path: Path, target: str, source: dict, evaluations: int,
                                                        images_k: float) -> None:
    run, evaluation = _scored_run(tmp_path, target, 100, source)
    row = run_row("any", 0, run, evaluation)
    assert row["evaluations_per_image"] == evaluations and row["training_images_k"] == pytest.approx(images_k)
