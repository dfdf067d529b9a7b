"""The VAE and GAN baselines: their maths on known cases, their modules, and the apps they run through."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CONF_DIR, ROOT, Command, compose_train_cfg, run_command
from hydra import compose, initialize_config_dir
from torch.distributions import Normal, kl_divergence

from ddpm_lit.apps.families import (
    FamiliesSettings,
    collapse_reason,
    network_evaluations,
    summarise,
)
from ddpm_lit.apps.train import train
from ddpm_lit.core.adversarial import discriminator_loss, generator_loss, r1_penalty
from ddpm_lit.core.variational import (
    importance_weighted_bound,
    kl_to_standard_normal,
    negative_elbo,
)
from ddpm_lit.errors import ConfigError
from ddpm_lit.generation.protocol import GenerativeModel
from ddpm_lit.nets.vae import ConvVAE
from ddpm_lit.reporting.tables import families_table
from ddpm_lit.training.gan import GANModule
from ddpm_lit.training.module import DDPMModule
from ddpm_lit.training.vae import VAEModule

TINY_VAE = ["experiment=vae_quick", "model.net.base_channels=4", "model.net.latent_dim=4"]
TINY_GAN = ["experiment=gan_quick", "model.generator.base_channels=4", "model.discriminator.base_channels=4",
            "model.generator.latent_dim=8"]
SHORT = ["time_budget_minutes=null", "trainer.precision=32-true", "trainer.max_steps=6", "logger=csv",
         "data.batch_size=32", "data.val_size=64", "data.check_md5=false", "model.num_val_samples=8",
         "model.nn_reference_size=16", "final_samples.num=8"]


# ---- the maths on known cases ----------------------------------------------------------------
def test_kl_to_the_prior_is_the_closed_form() -> None:
    gen = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(5, 7, generator=gen), torch.randn(5, 7, generator=gen)
    expected = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(1)
    torch.testing.assert_close(kl_to_standard_normal(mu, logvar), expected)
    assert kl_to_standard_normal(torch.zeros(2, 3), torch.zeros(2, 3)).abs().max() == 0


def _pixel_log_prob(x: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """log P(pixel level) under a Gaussian integrated over the level's bin, edges open: direct."""
    normal = Normal(mean.double(), scale.double())
    half = 1 / 255
    upper = torch.where(x > 1 - 1e-3, torch.ones_like(mean.double()), normal.cdf(x.double() + half))
    lower = torch.where(x < -1 + 1e-3, torch.zeros_like(mean.double()), normal.cdf(x.double() - half))
    return (upper - lower).log()


def test_the_vae_bound_in_bits_per_dim_is_the_direct_computation() -> None:
    torch.manual_seed(0)
    module = VAEModule(net=ConvVAE(base_channels=4, latent_dim=3)).eval()
    x0 = torch.randint(0, 256, (4, 1, 28, 28)).float() / 127.5 - 1  # on the 8-bit grid
    terms = module.elbo(x0, generator=torch.Generator().manual_seed(5))
    # directly: the same ε, the decoder's pixel bins, the KL of torch.distributions, nats -> bits/dim
    mu, logvar = module.net.encode(x0)
    eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(5))
    mean, log_scale = module.net.decode(mu + (0.5 * logvar).exp() * eps)
    recon = -_pixel_log_prob(x0, mean, log_scale.exp()).flatten(1).sum(1)
    kl = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(1)
    dims = 28 * 28 * math.log(2)
    torch.testing.assert_close(terms["reconstruction"].double(), recon / dims, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(terms["kl"].double(), kl.double() / dims, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(terms["total"], terms["reconstruction"] + terms["kl"])
    assert module.training_loss(x0).item() == pytest.approx(terms["total"].mean().item(), rel=0.2)  # another ε


def test_iwae_is_exact_when_the_posterior_is_the_prior_and_the_decoder_ignores_z() -> None:
    """Then every weight is p(x), so IWAE_k = log p(x) for every k, and the −log k must be there."""
    x0 = torch.tensor([[-1.0, 1.0], [0.0, 0.5]]).view(2, 1, 1, 2)
    mean, log_scale = torch.full_like(x0, 0.1), torch.full_like(x0, -1.0)

    def decode(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return mean[:1].expand(len(z), -1, -1, -1), log_scale[:1].expand(len(z), -1, -1, -1)

    log_px = _pixel_log_prob(x0, mean, log_scale.exp()).flatten(1).sum(1).float()
    zero = torch.zeros(2, 3)
    for k in (1, 7, 60):
        bound = importance_weighted_bound(decode, x0, zero, zero, k, torch.Generator().manual_seed(0), chunk=25)
        torch.testing.assert_close(bound, log_px, rtol=1e-5, atol=1e-5)
    elbo = negative_elbo(decode, x0, zero, zero, torch.randn(2, 3))
    torch.testing.assert_close(-elbo["total"], log_px, rtol=1e-5, atol=1e-5)


def test_elbo_below_iwae_below_the_exact_likelihood_of_a_one_pixel_model() -> None:
    """One pixel, z ∈ R, p(x|z) the discretised N(z, 0.3²), q(z|x) = N(0.5, 0.1) a poor posterior:
    log p(x) = log ∫ N(z; 0, 1) P(x|z) dz by quadrature; the ELBO is below IWAE_k, which reaches log p(x) as k grows."""
    x0 = torch.zeros(1, 1, 1, 1)

    def decode(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return z.view(-1, 1, 1, 1), torch.full((len(z), 1, 1, 1), math.log(0.3))

    grid = torch.linspace(-8, 8, 20001, dtype=torch.float64)
    log_px_z = _pixel_log_prob(torch.zeros(()), grid, torch.tensor(0.3)).double()
    log_px = float(torch.logsumexp(Normal(0.0, 1.0).log_prob(grid) + log_px_z, 0) + math.log(grid[1] - grid[0]))
    mu, logvar = torch.full((1, 1), 0.5), torch.full((1, 1), math.log(0.1))
    noise = torch.randn(4000, 1, generator=torch.Generator().manual_seed(0))
    elbo = -negative_elbo(decode, x0.expand(4000, 1, 1, 1), mu.expand(4000, 1), logvar.expand(4000, 1), noise)["total"]
    gen = torch.Generator().manual_seed(1)
    iwae_10 = torch.stack([importance_weighted_bound(decode, x0, mu, logvar, 10, gen) for _ in range(200)]).mean()
    iwae_5000 = importance_weighted_bound(decode, x0, mu, logvar, 5000, gen, chunk=1000)
    assert float(elbo.mean()) < float(iwae_10) - 0.05 < log_px
    assert float(iwae_5000) == pytest.approx(log_px, abs=0.01)
    assert float(iwae_10) < log_px + 0.01


@pytest.mark.parametrize("loss, real, fake, d_expected, g_expected", [
    ("non_saturating", 0.0, 0.0, 2 * math.log(2), math.log(2)),
    ("non_saturating", 20.0, -20.0, 2 * math.log1p(math.exp(-20)), math.log1p(math.exp(20))),
    ("hinge", 0.0, 0.0, 2.0, 0.0),
    ("hinge", 2.0, -2.0, 0.0, 2.0),
    ("hinge", 0.5, 0.5, 0.5 + 1.5, -0.5),
])  # fmt: skip
def test_gan_losses_at_known_logits(loss, real, fake, d_expected, g_expected) -> None:
    real_logits, fake_logits = torch.full((4,), real), torch.full((4,), fake)
    assert discriminator_loss(real_logits, fake_logits, loss).item() == pytest.approx(d_expected, rel=1e-5)
    assert generator_loss(fake_logits, loss).item() == pytest.approx(g_expected, rel=1e-5, abs=1e-6)
    with pytest.raises(ValueError, match="non_saturating, hinge"):
        discriminator_loss(real_logits, fake_logits, "wasserstein")


def test_r1_of_a_linear_discriminator_is_its_squared_weight_norm() -> None:
    w = torch.tensor([0.5, -2.0, 1.0])
    x = torch.randn(8, 3, requires_grad=True)
    assert r1_penalty(x @ w, x).item() == pytest.approx(float(w.pow(2).sum()))


# ---- the modules ------------------------------------------------------------------------------
def test_both_modules_draw_seeded_images_in_range_and_refuse_chain_options() -> None:
    vae = VAEModule(net={"_target_": "ddpm_lit.nets.vae.ConvVAE", "base_channels": 4, "latent_dim": 3})
    gan = GANModule(generator={"_target_": "ddpm_lit.nets.gan.Generator", "base_channels": 4, "latent_dim": 5},
                    discriminator={"_target_": "ddpm_lit.nets.gan.Discriminator", "base_channels": 4})
    for model in (vae, gan):
        assert isinstance(model, GenerativeModel) and model.num_classes is None
        a = model.sample(10, generator=torch.Generator().manual_seed(3), batch_size=4)
        b = model.sample(10, generator=torch.Generator().manual_seed(3))
        assert a.shape == (10, 1, 28, 28) and a.min() >= -1 and a.max() <= 1
        torch.testing.assert_close(a, b, atol=1e-2, rtol=0)  # the same z whatever the batch size (conv kernels differ)
        with pytest.raises(ValueError, match=f"steps: not an option of a {model.family}"):
            model.sample(2, steps=10)
        with pytest.raises(ValueError, match="sampler"):
            model.sample(2, sampler="ddim")
    with pytest.raises(ValueError, match="model.sample_mode"):
        VAEModule(net=ConvVAE(), sample_mode="median")
    with pytest.raises(ValueError, match="loss must be one of"):
        GANModule(generator={"_target_": "ddpm_lit.nets.gan.Generator"},
                  discriminator={"_target_": "ddpm_lit.nets.gan.Discriminator"}, loss="wgan")


def test_a_gan_timing_step_updates_each_player_and_holds_the_discriminator_for_the_generator() -> None:
    torch.manual_seed(0)
    gan = GANModule(generator={"_target_": "ddpm_lit.nets.gan.Generator", "base_channels": 4, "latent_dim": 5},
                    discriminator={"_target_": "ddpm_lit.nets.gan.Discriminator", "base_channels": 4,
                                   "spectral_norm": True}, r1_gamma=1.0)
    x0 = torch.rand(8, 1, 28, 28) * 2 - 1
    before = {k: v.clone() for k, v in gan.state_dict().items()}
    optimizer = torch.optim.SGD(gan.parameters(), lr=0.1)
    d_grads = []  # the discriminator's gradients as each step leaves them
    optimizer.register_step_post_hook(lambda *_: d_grads.append([p.grad for p in gan.discriminator.parameters()]))
    gan.timing_step(x0, None, optimizer)
    after = gan.state_dict()
    assert len(d_grads) == 2  # two optimizer steps: the discriminator's, then the generator's
    assert all(g is not None for g in d_grads[0]) and all(g is None for g in d_grads[1])
    for player in ("generator.", "discriminator."):
        assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(player)), player
    assert all(p.requires_grad for p in gan.discriminator.parameters())  # trainable again afterwards


# ---- through train, sample and evaluate -------------------------------------------------------
def _cli(script: str, args: list[str]) -> Command:
    return run_command(script, args)  # in this process; tests/test_imports.py runs the real command lines


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, mnist_dir: Path) -> dict[str, Path]:
    """A few steps of each baseline on real MNIST through train(cfg): their run dirs."""
    runs = {}
    for family, overrides in (("vae", TINY_VAE), ("gan", TINY_GAN)):
        out = tmp_path_factory.mktemp(family)
        cfg = compose_train_cfg([*overrides, *SHORT, "data.limit_train=512", "trainer.limit_val_batches=1",
                                 "trainer.limit_train_batches=3",
                                 "trainer.max_epochs=2"], out, mnist_dir)
        metrics = train(cfg)
        assert metrics["global_step"] == 6
        runs[family] = out
    return runs


def test_baselines_train_and_log_their_own_losses(trained: dict[str, Path]) -> None:
    vae = json.loads((trained["vae"] / "metrics.json").read_text())
    gan = json.loads((trained["gan"] / "metrics.json").read_text())
    assert 0 < vae["train/bpd"] < 9 and vae["train/kl"] >= 0 and vae["val/loss"] > 0
    assert 0 < gan["val/d_real"] < 1 and 0 < gan["val/d_fake"] < 1 and gan["train/d_loss"] > 0
    assert vae["val/ssim"] > 0 and gan["val/ssim"] != 0  # the validation hook ran for both
    for run in trained.values():
        assert (run / "samples" / "final.png").is_file() and (run / "checkpoints" / "last.ckpt").is_file()
        assert (run / "figures" / "ssim_histogram.png").is_file()
        assert not (run / "figures" / "trajectory.png").exists()  # one pass: no chain to show
        assert not (run / "figures" / "schedules.png").exists()


def test_sample_and_evaluate_take_a_vae_and_a_gan(trained: dict[str, Path], mnist_dir: Path, tmp_path: Path) -> None:
    common = [f"paths.data_dir={mnist_dir}", "reference_size=200", "fid.enabled=false", "score_test=false", "logger=csv"]
    for family, run in trained.items():
        ckpt = run / "checkpoints" / "last.ckpt"
        proc = _cli("sample.py", [f"ckpt_path={ckpt}", "n=12", f"hydra.run.dir={tmp_path / family / 's'}"])
        assert proc.returncode == 0, proc.stderr[-2000:]
        info = json.loads((tmp_path / family / "s" / "sample.json").read_text())
        assert info["family"] == family and info["sampler"] is None and info["ema_weights"] is True
        with np.load(tmp_path / family / "s" / "samples.npz") as f:
            assert f["arr_0"].shape == (12, 28, 28, 1)
        proc = _cli("evaluate.py", [f"ckpt_path={ckpt}", "num_samples=16", "nll.num_images=6", "nll.iwae_samples=5",
                                    f"hydra.run.dir={tmp_path / family / 'e'}", *common])
        assert proc.returncode == 0, proc.stderr[-2000:]
        metrics = json.loads((tmp_path / family / "e" / "metrics.json").read_text())
        assert metrics["samples"]["num_images"] == 16 and metrics["source"]["family"] == family
        if family == "vae":  # IWAE (k = 5) is at least as tight as the ELBO, on average over 6 images
            assert 0 < metrics["nll"]["iwae_bpd"] < metrics["nll"]["elbo_bpd"] + 0.05
            assert "importance-weighted" in (tmp_path / family / "e" / "evaluation.md").read_text()
        else:
            assert "nll" not in metrics  # nll.enabled=null: where the model has a likelihood


def test_a_vae_and_a_gan_export_and_load_to_the_same_images_with_their_scores_on_the_card(
        trained: dict[str, Path], mnist_dir: Path, tmp_path: Path) -> None:
    """export.py of each baseline (no scheduler file); load_pretrained and sample.py on the folder
    draw the checkpoint's images; the VAE's card shows the scores of evaluate.py on its checkpoint."""
    import shutil

    import yaml

    from ddpm_lit.generation.generate import image_generators
    from ddpm_lit.generation.pretrained import load_pretrained
    from ddpm_lit.training.loading import load_module

    for family, run in trained.items():
        run = Path(shutil.copytree(run, tmp_path / "runs" / "train" / family))  # evaluate's runs go beside it
        ckpt = run / "checkpoints" / "last.ckpt"
        if family == "vae":
            proc = _cli("evaluate.py", [f"ckpt_path={ckpt}", "num_samples=16", "nll.enabled=false", "reference_size=200",
                                        "fid.enabled=false", "score_test=false", "logger=csv", f"paths.data_dir={mnist_dir}",
                                        f"hydra.run.dir={tmp_path / 'runs' / 'evaluate' / 'vae'}"])
            assert proc.returncode == 0, proc.stderr[-2000:]
        out = tmp_path / "exported" / family
        proc = _cli("export.py", [f"ckpt_path={ckpt}", f"out={out}"])
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors", "samples.png"]
        model = load_pretrained(out)
        module, _ = load_module(ckpt, torch.device("cpu"))
        assert type(model).__name__ == {"vae": "VAEModel", "gan": "GANModel"}[family]
        a = model.sample(6, generator=image_generators(3, range(6)))
        assert torch.equal(a, module.sample(6, generator=image_generators(3, range(6))))
        meta = yaml.safe_load((out / "README.md").read_text().split("---\n")[1])
        assert family in meta["tags"] and "diffusion" not in meta["tags"]
        card = (out / "README.md").read_text()
        if family == "vae":
            metrics = json.loads((tmp_path / "runs" / "evaluate" / "vae" / "metrics.json").read_text())
            from ddpm_lit.catalogue import metric

            shown = metric("classifier_fid").show(metrics["samples"]["classifier_fid"])
            assert f"| {shown} |" in card and "evaluate.py on 16 samples" in card
            values = {m["type"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
            assert values["classifier_fid"] == pytest.approx(metrics["samples"]["classifier_fid"], rel=1e-6)
        else:
            assert "Not evaluated" in card and "model-index" not in meta
        proc = _cli("sample.py", [f"ckpt_path={out}", "n=6", f"hydra.run.dir={tmp_path / 's' / family}"])
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert json.loads((tmp_path / "s" / family / "sample.json").read_text())["family"] == family
        if family == "vae":  # evaluate.py takes the folder too: the same samples, so the same scores
            proc = _cli("evaluate.py", [f"ckpt_path={out}", "num_samples=16", "nll.enabled=false", "reference_size=200",
                                        "fid.enabled=false", "score_test=false", "logger=csv", f"paths.data_dir={mnist_dir}",
                                        f"hydra.run.dir={tmp_path / 'e_folder'}"])
            assert proc.returncode == 0, proc.stderr[-2000:]
            again = json.loads((tmp_path / "e_folder" / "metrics.json").read_text())
            assert again["source"]["ema_weights"] is True and again["source"]["family"] == "vae"
            assert again["samples"]["classifier_fid"] == pytest.approx(metrics["samples"]["classifier_fid"], rel=1e-6)


@pytest.mark.parametrize("script, family, args, words", [
    ("sample.py", "gan", ["sampler=ddim"], "sampler=ddim: a gan has no sampler"),
    ("sample.py", "vae", ["sampler.steps=20"], "sampler.steps=20: a vae has no sampler"),
    ("sample.py", "gan", ["guidance_scale=2"], "is an unconditional gan"),
    ("evaluate.py", "gan", ["nll.enabled=true"], "nll.enabled=true: a gan has no likelihood"),
    ("evaluate.py", "vae", ["nll.variance=beta"], "the reverse variance is a DDPM's"),
])  # fmt: skip
def test_options_a_family_does_not_have_stop_with_one_line(trained, script, family, args, words, tmp_path) -> None:
    proc = _cli(script, [f"ckpt_path={trained[family] / 'checkpoints' / 'last.ckpt'}", *args,
                         f"hydra.run.dir={tmp_path}"])
    assert proc.returncode == 2 and words in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and not (tmp_path / "samples.npz").exists()


def test_a_checkpoint_of_another_family_is_named_on_resume(trained, mnist_dir: Path, tmp_path: Path) -> None:
    ckpt = trained["vae"] / "checkpoints" / "last.ckpt"
    cfg = compose_train_cfg([*TINY_GAN, *SHORT, f"ckpt_path={ckpt}"], tmp_path, mnist_dir)
    with pytest.raises(ConfigError, match=r"is a checkpoint of a vae \(ddpm_lit.training.vae.VAEModule\), but the "
                                          r"config builds a gan"):
        train(cfg)


def test_a_gan_refuses_monitors_it_does_not_log(mnist_dir: Path, tmp_path: Path) -> None:
    cfg = compose_train_cfg(["model=gan", *SHORT[:2]], tmp_path, mnist_dir)
    with pytest.raises(ConfigError, match="optimized_metric=val/loss and callbacks.model_checkpoint.monitor=val/loss: "
                                          "a gan does not log them"):
        train(cfg)


# ---- the comparison's bookkeeping -------------------------------------------------------------
def test_collapse_is_few_digits_or_recall_far_below_precision() -> None:
    assert collapse_reason({"classes_present": 10, "precision": 0.8, "recall": 0.7}) is None
    assert collapse_reason({"classes_present": 7, "precision": 0.8, "recall": 0.7}) == "7 digits present"
    assert "recall 0.200 < precision 0.900 / 3" == collapse_reason({"classes_present": 9, "precision": 0.9, "recall": 0.2})
    assert collapse_reason({"classes_present": 8, "precision": 0.3, "recall": 0.1}) is None  # blurry, not collapsed


def test_network_evaluations_per_image() -> None:
    config = {"schedule": {"timesteps": 1000}}
    assert network_evaluations(DDPMModule, {"sampler": {"steps": 100}, "guidance_scale": None}, config) == 100
    assert network_evaluations(DDPMModule, {"sampler": {"steps": None}, "guidance_scale": 3.0}, config) == 2000
    assert network_evaluations(GANModule, {"sampler": None}, config) == 1


def test_summary_gives_mean_spread_and_collapsed_seeds() -> None:
    rows = [{"family": "gan", "seed": s, "classifier_fid": f, "recall": r, "collapsed": c}
            for s, f, r, c in ((0, 10.0, 0.5, None), (1, 14.0, 0.1, "7 digits present"), (2, 12.0, 0.3, None))]
    summary = summarise(rows)["gan"]
    assert summary["classifier_fid"]["mean"] == pytest.approx(12.0) and summary["classifier_fid"]["std"] == pytest.approx(2.0)
    assert summary["classifier_fid_range"] == [10.0, 14.0] and summary["collapsed"] == {"1": "7 digits present"}
    setup = {"budget": "b", "seeds": [0, 1, 2], "num_samples": 9, "reference_size": 9, "nll_images": 1, "iwae": 1,
             "ddpm_steps": 1, "machine": "m"}
    table = families_table({"summary": {"gan": summary}, "runs": rows, "setup": setup, "test": None})
    # MNIST-FID to 3 decimals, as evaluation.md and compare's table print it (the metric catalogue's format)
    assert "| MNIST-FID | 12.000 ± 2.000 |" in table and "seed 1: 7 digits present" in table
    assert "| MNIST-FID range over seeds | 10.000 – 14.000 |" in table


def families_settings(*overrides: str) -> FamiliesSettings:
    """``python -m ddpm_lit.families <overrides>``'s settings, as its entry checks them."""
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return FamiliesSettings.parse(compose("families", overrides=list(overrides)))


def test_the_families_settings_choose_presets_and_budget(tmp_path: Path) -> None:
    cpu = families_settings(f"out={tmp_path}")
    assert cpu.presets == {"ddpm": "quick", "vae": "vae_quick", "gan": "gan_quick"} and cpu.minutes == 14
    gpu = families_settings(f"out={tmp_path}", "gpu=true", "presets.vae=vae_quick")
    assert gpu.presets == {"ddpm": "seed", "vae": "vae_quick", "gan": "gan_seed"} and gpu.minutes is None
    assert families_settings(f"out={tmp_path}", "gpu=true", "minutes=3").minutes == 3
    # the comparison is of unconditional generators: the class-conditional quick DDPM drops its labels
    assert cpu.family_overrides == {"ddpm": ["model.net.num_classes=null"], "vae": [], "gan": []}
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        assert compose("train", overrides=["experiment=quick"]).model.net.num_classes == 10
        assert compose("train", overrides=["experiment=quick", *cpu.family_overrides["ddpm"]]).model.net.num_classes is None
    with pytest.raises(ConfigError, match="family_overrides takes"):
        families_settings(f"out={tmp_path}", "+family_overrides.vit=[]")
    with pytest.raises(ConfigError, match=r"iwae must be an integer ≥ 1, got 0"):
        families_settings(f"out={tmp_path}", "iwae=0")


@pytest.mark.slow
def test_the_families_command_trains_scores_and_tabulates(mnist_dir: Path, tmp_path: Path) -> None:
    """The whole command at tiny sizes: three families, one seed, then rerun: nothing is redone."""
    args = [sys.executable, "-m", "ddpm_lit.families", f"out={tmp_path}", "minutes=0", "seeds=[0]", "num_samples=16",
            "reference_size=100", "fid=false", "nll_images=4", "iwae=3", "ddpm_steps=3", f"paths.data_dir={mnist_dir}",
            'train_overrides=["trainer.max_steps=4","data.limit_train=512","data.val_size=64",'
            '"trainer.limit_val_batches=1","trainer.precision=32-true","final_samples.num=8"]']
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert [r["family"] for r in results["runs"]] == ["ddpm", "vae", "gan"]
    assert results["runs"][0]["evaluations_per_image"] == 3 and results["runs"][2]["evaluations_per_image"] == 1
    assert "bpd" in results["runs"][0] and "iwae_bpd" in results["runs"][1] and "bpd" not in results["runs"][2]
    assert (tmp_path / "samples.png").is_file() and "| MNIST-FID |" in (tmp_path / "table.md").read_text()
    again = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and again.stderr.count("before, kept") == 6


def test_the_families_ddpm_runs_are_started_unconditional(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """train_run's command line: the DDPM's training drops the quick preset's labels, the VAE's does not get
    the DDPM's override, and the user's train_overrides come after (so they can still set it)."""
    from ddpm_lit.apps import families as fam

    commands: dict[str, list[str]] = {}
    monkeypatch.setattr(fam, "_run", lambda cmd, log_path, what: commands.setdefault(what.split()[1], cmd))
    args = families_settings(f"out={tmp_path}", 'train_overrides=["trainer.max_steps=4"]')
    for family in ("ddpm", "vae"):
        fam.train_run(args, family, 0, tmp_path / family)
    assert commands["ddpm"][-2:] == ["model.net.num_classes=null", "trainer.max_steps=4"]
    assert "experiment=quick" in commands["ddpm"]
    assert "model.net.num_classes=null" not in commands["vae"] and commands["vae"][-1] == "trainer.max_steps=4"
