#!/usr/bin/env bash
# Do the default speed settings change what is learned? The study's network (experiment=seed) trained
# STEPS steps three times on this machine: in fp32, contiguous and eager (the settings before auto), and
# in the auto settings (those the start-up plan measures fastest here) at the same seed and at another.
# Same seed, same data order, same timesteps and noise: fp32 and auto differ only in arithmetic, and the
# two auto seeds say how far apart runs differing in chance alone land. Then one table (val/loss over the
# 5,000 validation images at fixed t and noise, train/loss, seconds) and the train/loss of every
# tenth step of the three runs (same_science_loss.png).
#   bash scripts/same_science.sh            # STEPS=200: ~30 min on 2 CPU cores, most of it the fp32 run
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-200}
OUT=${OUT:-outputs/same_science}
common=(experiment=seed trainer=cpu "trainer.max_steps=$STEPS" trainer.log_every_n_steps=10 logger=csv
        model.val_classifier_fid=false final_samples.num=0)
python train.py "${common[@]}" seed=42 trainer.precision=32-true model.channels_last=false model.compile=false \
  "hydra.run.dir=$OUT/fp32_seed42"
python train.py "${common[@]}" seed=42 "hydra.run.dir=$OUT/auto_seed42"
python train.py "${common[@]}" seed=43 "hydra.run.dir=$OUT/auto_seed43"
python -m ddpm_lit.summarize "dirs=$OUT"
python - "$OUT" <<'PY'
import csv, sys
from pathlib import Path

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

out = Path(sys.argv[1])
fig, ax = plt.subplots(figsize=(7, 3.5))
for run, style in (("fp32_seed42", "-"), ("auto_seed42", "--"), ("auto_seed43", ":")):
    rows = list(csv.DictReader(open(out / run / "csv" / "version_0" / "metrics.csv")))
    points = [(int(r["step"]) + 1, float(r["train/loss"])) for r in rows if r.get("train/loss")]
    ax.plot(*zip(*points), style, label=run.replace("_", ", "))
ax.set(xlabel="step", ylabel="train/loss (every 10th step)", yscale="log", title="experiment=seed, batch 128")
ax.legend()
fig.tight_layout()
fig.savefig(out / "same_science_loss.png", dpi=110)
print(f"written: {out / 'same_science_loss.png'}")
PY
