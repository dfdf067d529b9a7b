import re

from ddpm_lit.bench import main


def test_benchmark_prints_its_figures(capsys) -> None:
    main(["trainer=cpu", "trainer.precision=auto", "model.net.base_channels=8", "model.net.time_emb_dim=32", "model.net.attn_heads=2",
          "data.batch_size=8", "model.num_val_samples=4", "--steps", "2", "--warmup", "1", "--repeats", "1",
          "--sample-steps", "2"])
    out = capsys.readouterr().out
    figures = {
        name: float(value)
        for name, value in re.findall(r"^(plain PyTorch loop|Lightning Trainer|sampling|peak memory)\s*:\s*([\d.]+)",
                                      out, re.M)
    }
    assert set(figures) == {"plain PyTorch loop", "Lightning Trainer", "sampling", "peak memory"}, out
    assert all(v > 0 for v in figures.values())
    assert re.search(r"Lightning overhead : [+-]\d+\.\d %", out)
    # precision=auto is resolved as train.py resolves it, and the run uses the chosen one
    chosen = re.search(r"^precision=auto: .*; chosen (\S+)$", out, re.M)
    assert chosen and f"precision {chosen.group(1)}," in out, out
