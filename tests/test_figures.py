"""The study's figures: the exact 1-D two-mode forward density, the CSV history, and that every figure is a PNG."""

import math
from pathlib import Path

import matplotlib.image
import pytest
import torch

from ddpm_lit.core.diffusion import GaussianDiffusion
from ddpm_lit.reporting import figures
from ddpm_lit.reporting.figures import (
    forward_process_figure,
    loss_curves_figure,
    metric_by_step,
    schedules_figure,
    smooth,
    trajectory_figure,
    two_mode_density,
    two_mode_diffusion_figure,
    two_mode_sample,
)
from ddpm_lit.runs import Run

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _read_png(path: Path):
    """The image of a written figure, (H, W, 4) in [0, 1], after checking it is a PNG with content."""
    assert path.is_file()
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image[..., :3].std() > 0.02, "the figure is (nearly) uniform"
    return image


def _normal_pdf(x: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    return torch.exp(-0.5 * ((x - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))


# ---- the exact density of x_t for a two-mode x0 ---------------------------------------


@pytest.mark.parametrize("alpha_bar", [1.0, 0.97, 0.5, 0.1, 1e-3])
def test_two_mode_density_integrates_to_one(alpha_bar: float) -> None:
    x = torch.linspace(-8, 8, 16001, dtype=torch.float64)
    density = two_mode_density(x, alpha_bar)
    assert density.dtype == torch.float64 and density.shape == x.shape
    assert abs(float(torch.trapezoid(density, x)) - 1.0) < 1e-8


def test_two_mode_density_is_the_mixture_at_alpha_bar_one() -> None:
    x = torch.linspace(-3, 3, 601, dtype=torch.float64)
    mixture = 0.5 * _normal_pdf(x, -1.0, 0.15) + 0.5 * _normal_pdf(x, 1.0, 0.15)
    torch.testing.assert_close(two_mode_density(x, 1.0), mixture, rtol=1e-10, atol=1e-12)
    # other parameters are used too
    one_mode = two_mode_density(x, 1.0, means=(0.5,), stds=(0.3,), weights=(1.0,))
    torch.testing.assert_close(one_mode, _normal_pdf(x, 0.5, 0.3), rtol=1e-10, atol=1e-12)


def test_two_mode_density_reaches_the_standard_normal_at_the_end_of_the_linear_chain() -> None:
    alpha_bar_T = GaussianDiffusion("linear", 1000).alphas_cumprod_float64[-1]
    x = torch.linspace(-5, 5, 1001, dtype=torch.float64)
    gap = (two_mode_density(x, alpha_bar_T) - _normal_pdf(x, 0.0, 1.0)).abs().max()
    assert gap < 1e-3
    # ... and not before: at t = 200 the two modes are still apart
    alpha_bar_200 = GaussianDiffusion("linear", 1000).alphas_cumprod_float64[199]
    assert (two_mode_density(x, alpha_bar_200) - _normal_pdf(x, 0.0, 1.0)).abs().max() > 0.05


def test_two_mode_density_broadcasts_over_a_column_of_alpha_bars() -> None:
    x = torch.linspace(-3, 3, 7, dtype=torch.float64)
    alpha_bars = torch.tensor([0.9, 0.4], dtype=torch.float64)
    grid = two_mode_density(x, alpha_bars[:, None])
    assert grid.shape == (2, 7)
    torch.testing.assert_close(grid[1], two_mode_density(x, 0.4))


def test_two_mode_density_rejects_bad_parameters() -> None:
    x = torch.zeros(3)
    with pytest.raises(ValueError, match="sum to 1"):
        two_mode_density(x, 0.5, weights=(0.5, 0.6))
    with pytest.raises(ValueError, match="same non-zero length"):
        two_mode_density(x, 0.5, stds=(0.1,))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        two_mode_density(x, 1.5)


@pytest.mark.parametrize("index", [0, 50, 199, 399])
def test_q_sample_of_the_two_mode_data_follows_the_closed_form(index: int) -> None:
    """Samples of x_t from ``GaussianDiffusion.q_sample`` against ``two_mode_density``: moments and histogram.

    Var x_t = ᾱ (1 + 0.15²) + 1 − ᾱ; writing ᾱ for √ᾱ in eq. 4 gives ᾱ² (1 + 0.15²) + 1 − ᾱ,
    e.g. 0.78 instead of 1.01 at t = 200, far outside the tolerance.
    """
    n = 200_000
    generator = torch.Generator().manual_seed(1234)
    diffusion = GaussianDiffusion("linear", 1000)
    x0 = two_mode_sample(n, generator).reshape(n, 1, 1, 1)
    x_t = diffusion.q_sample(x0, torch.full((n,), index), torch.randn(x0.shape, generator=generator)).flatten()
    x_t = x_t.double()
    alpha_bar = float(diffusion.alphas_cumprod_float64[index])
    variance = alpha_bar * (1 + 0.15**2) + 1 - alpha_bar
    assert abs(float(x_t.mean())) < 4 * math.sqrt(variance / n)
    assert abs(float(x_t.var()) / variance - 1) < 0.015
    assert abs(float(x_t.abs().mean()) - float(_abs_mean(alpha_bar))) < 0.01

    # the histogram against the exact probability of every bin
    edges = torch.linspace(-3.5, 3.5, 71, dtype=torch.float64)
    fine = torch.linspace(-3.5, 3.5, 7001, dtype=torch.float64)
    cdf = torch.cat([torch.zeros(1, dtype=torch.float64),
                     torch.cumulative_trapezoid(two_mode_density(fine, alpha_bar), fine)])
    expected = cdf[::100].diff()  # (70,) exact probability of each bin
    observed = torch.histogram(x_t, bins=edges).hist / n
    assert (observed - expected).abs().max() < 5 * float(expected.max().sqrt()) / math.sqrt(n)


def _abs_mean(alpha_bar: float) -> torch.Tensor:
    """E|x_t| under the exact density, by quadrature."""
    x = torch.linspace(-10, 10, 20001, dtype=torch.float64)
    return torch.trapezoid(x.abs() * two_mode_density(x, alpha_bar), x)


def test_two_mode_sample_draws_the_mixture() -> None:
    x0 = two_mode_sample(100_000, torch.Generator().manual_seed(0)).double()
    assert abs(float((x0 > 0).double().mean()) - 0.5) < 0.01
    assert abs(float(x0[x0 > 0].mean()) - 1.0) < 0.01
    assert abs(float(x0[x0 > 0].std()) - 0.15) < 0.005


# ---- figures --------------------------------------------------------------------------


def test_schedules_figure(tmp_path: Path) -> None:
    path = schedules_figure(tmp_path / "out" / "schedules.png", timesteps=200)
    assert path == tmp_path / "out" / "schedules.png"
    _read_png(path)


def _digit_like() -> torch.Tensor:
    x0 = -torch.ones(1, 16, 16)
    x0[:, 3:13, 6:10] = 1.0
    return x0


def test_forward_process_figure_uses_one_noise_for_every_panel(tmp_path: Path, monkeypatch) -> None:
    calls = []
    q_sample = GaussianDiffusion.q_sample

    def recording_q_sample(self, x0, t, noise):
        x_t = q_sample(self, x0, t, noise)
        calls.append((self.schedule, t.clone(), noise.clone(), x_t.clone()))
        return x_t

    monkeypatch.setattr(figures.GaussianDiffusion, "q_sample", recording_q_sample)
    x0 = _digit_like()
    path = forward_process_figure(x0, tmp_path / "forward.png", timesteps=(0, 10, 99), num_timesteps=100, seed=7)
    _read_png(path)
    assert [c[0] for c in calls] == ["linear", "cosine"]
    expected_eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(7))
    for _, t, noise, x_t in calls:
        assert t.tolist() == [0, 10, 99]
        for eps in noise:  # one ε per panel, the same in all
            torch.testing.assert_close(eps, expected_eps)
        assert (x_t[0] - x0).abs().max() < 0.2  # t = 1: nearly x0
        assert (x_t[2] - x0).abs().mean() > 0.5  # t = T: mostly noise


def test_forward_process_figure_rejects_bad_input(tmp_path: Path) -> None:
    x0 = _digit_like()
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        forward_process_figure(x0[None], tmp_path / "f.png")
    with pytest.raises(ValueError, match=r"\[0, 99\]"):
        forward_process_figure(x0, tmp_path / "f.png", timesteps=(0, 100), num_timesteps=100)
    with pytest.raises(ValueError, match=r"\[0, 999\]"):
        forward_process_figure(x0, tmp_path / "f.png", timesteps=(-1,))
    with pytest.raises(ValueError, match="valid schedules: linear, cosine"):
        forward_process_figure(x0, tmp_path / "f.png", schedules=("linear", "quadratic"))
    assert not (tmp_path / "f.png").exists()


def test_two_mode_diffusion_figure(tmp_path: Path) -> None:
    path = two_mode_diffusion_figure(tmp_path / "two_mode.png", schedule="cosine", num_timesteps=200,
                                     timesteps=(0, 20, 199), num_samples=2000)
    _read_png(path)
    with pytest.raises(ValueError, match=r"\[0, 199\]"):
        two_mode_diffusion_figure(tmp_path / "bad.png", num_timesteps=200, timesteps=(200,))
    with pytest.raises(ValueError, match="valid schedules"):
        two_mode_diffusion_figure(tmp_path / "bad.png", schedule="sigmoid")


def test_trajectory_figure(tmp_path: Path) -> None:
    steps = list(range(1000, -1, -100))  # 11 snapshots: T ... 0
    frames = torch.rand(len(steps), 8, 1, 12, 12, generator=torch.Generator().manual_seed(0)) * 2 - 1
    large = _read_png(trajectory_figure(frames, steps, tmp_path / "trajectory.png"))
    small = _read_png(trajectory_figure(frames[:3, :2], steps[:3], tmp_path / "small.png"))
    assert large.shape[0] > small.shape[0] and large.shape[1] > small.shape[1]  # K rows, S columns

    with pytest.raises(ValueError, match="one per snapshot"):
        trajectory_figure(frames, steps[:-1], tmp_path / "bad.png")
    with pytest.raises(ValueError, match=r"\(S, K, C, H, W\)"):
        trajectory_figure(frames[0], steps, tmp_path / "bad.png")


# ---- training history -----------------------------------------------------------------

HEADER = "epoch,lr-Adam,step,train/loss,train/loss_epoch,val/loss\n"


def _write_metrics(run_dir: Path, version: int, body: str) -> None:
    folder = run_dir / "csv" / f"version_{version}"
    folder.mkdir(parents=True)
    (folder / "metrics.csv").write_text(HEADER + body)


@pytest.fixture
def resumed_run(tmp_path: Path) -> Path:
    """A run of three versions; version_10 after version_2 (numeric, not lexicographic, order); the
    resumed versions log again steps their predecessor had logged."""
    _write_metrics(tmp_path, 0, ",0.001,0,,,\n0,,0,1.0,,\n0,,1,0.8,,\n0,,1,,0.9,0.7\n0,,2,0.6,,\n")
    _write_metrics(tmp_path, 2, "0,,2,0.5,,\n1,,3,0.4,,\n1,,3,,,0.45\n")
    _write_metrics(tmp_path, 10, "1,,3,,,0.35\n2,,4,0.3,,\n")
    (tmp_path / "csv" / "version_1").mkdir()  # a version that never wrote metrics
    return tmp_path


def test_read_history_concatenates_versions_in_numeric_order(resumed_run: Path) -> None:
    history = Run(resumed_run).history()
    assert history == [
        {"lr-Adam": 0.001, "step": 0.0},
        {"epoch": 0.0, "step": 0.0, "train/loss": 1.0},
        {"epoch": 0.0, "step": 1.0, "train/loss": 0.8},
        {"epoch": 0.0, "step": 1.0, "train/loss_epoch": 0.9, "val/loss": 0.7},
        {"epoch": 0.0, "step": 2.0, "train/loss": 0.6},
        {"epoch": 0.0, "step": 2.0, "train/loss": 0.5},
        {"epoch": 1.0, "step": 3.0, "train/loss": 0.4},
        {"epoch": 1.0, "step": 3.0, "val/loss": 0.45},
        {"epoch": 1.0, "step": 3.0, "val/loss": 0.35},
        {"epoch": 2.0, "step": 4.0, "train/loss": 0.3},
    ]
    assert all(isinstance(v, float) for row in history for v in row.values())


def test_read_history_without_a_csv_folder(tmp_path: Path) -> None:
    assert Run(tmp_path).history() == []


def test_metric_by_step_keeps_the_last_value_of_a_repeated_step(resumed_run: Path) -> None:
    history = Run(resumed_run).history()
    assert metric_by_step(history, "train/loss") == ([0.0, 1.0, 2.0, 3.0, 4.0], [1.0, 0.8, 0.5, 0.4, 0.3])
    assert metric_by_step(history, "val/loss") == ([1.0, 3.0], [0.7, 0.35])
    assert metric_by_step(history, "val/classifier_fid") == ([], [])


def test_smooth_is_a_debiased_exponential_moving_average() -> None:
    assert smooth([]) == []
    assert smooth([1.0, 5.0], alpha=1.0) == [1.0, 5.0]
    # s_i: the mean of v_0..v_i weighted by (1 − α)^{i−j}
    values = [0.42, 0.2, 0.1, 0.08, 0.06, 0.05]
    alpha = 0.1
    for i, s in enumerate(smooth(values, alpha)):
        w = [(1 - alpha) ** (i - j) for j in range(i + 1)]
        assert s == pytest.approx(sum(wj * v for wj, v in zip(w, values)) / sum(w), rel=1e-12)
    constant = smooth([0.3] * 50, alpha=0.05)
    assert max(abs(v - 0.3) for v in constant) < 1e-12
    with pytest.raises(ValueError, match="alpha"):
        smooth([1.0], alpha=0.0)


def test_smooth_follows_a_falling_loss() -> None:
    """A loss that drops from 0.42 at the first step to 0.04: the smoothed line reaches the
    plateau within a window instead of carrying the first point's weight (an average started at
    v_0 still stands at 0.04 + 0.38 · 0.95^20 ≈ 0.18 at step 20)."""
    loss = [0.42] + [0.04] * 2000
    smoothed = smooth(loss, alpha=0.05)
    assert smoothed[0] == pytest.approx(0.42)
    assert smoothed[20] < 0.055
    assert max(smoothed[150:]) < 0.04 * 1.001


def test_loss_curves_figure(resumed_run: Path, tmp_path: Path) -> None:
    _read_png(loss_curves_figure(Run(resumed_run).history(), tmp_path / "loss.png"))
    _read_png(loss_curves_figure([{"step": 0.0, "val/loss": 0.5}, {"step": 5.0, "val/loss": 0.4}],
                                 tmp_path / "val_only.png", title="Validation only"))
    with pytest.raises(ValueError, match="no train/loss or val/loss in the history"):
        loss_curves_figure([{"step": 0.0, "lr-Adam": 1e-3}], tmp_path / "empty.png")
    with pytest.raises(ValueError, match="no train/loss or val/loss in the history"):
        loss_curves_figure([], tmp_path / "empty.png")
