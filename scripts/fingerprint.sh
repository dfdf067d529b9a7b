#!/usr/bin/env bash
# The numbers every app prints, at tiny sizes and fixed seeds, in one JSON: a change to the
# code's structure must leave them unchanged. Run it before and after, then compare:
#   bash scripts/fingerprint.sh OUT_DIR  ->  OUT_DIR/fingerprint.json
#   python scripts/fingerprint_diff.py BEFORE/fingerprint.json AFTER/fingerprint.json
# MODULE_PREFIX is the package whose modules are the commands run_figures, summarize and compare
# (ddpm_lit: python -m ddpm_lit.compare key=value ...), so a checkout that keeps them elsewhere runs it too.
set -euo pipefail
OUT=$(realpath -m "${1:?usage: fingerprint.sh OUT_DIR}")
PREFIX=${MODULE_PREFIX:-ddpm_lit}
DATA=${DATA_DIR:-$PWD/data}
rm -rf "$OUT" && mkdir -p "$OUT"
export WANDB_MODE=offline WANDB_SILENT=true
TINY=(trainer=cpu model.net.base_channels=8 model.net.time_emb_dim=32 model.net.attn_heads=2 schedule.timesteps=100
      model.val_sample_steps=5 model.num_val_samples=8 model.nn_reference_size=16 model.val_classifier_fid=false data.batch_size=32
      data.val_size=64 final_samples.num=8 final_samples.steps=5 trainer.max_steps=12 trainer.max_epochs=-1
      data.limit_train=192 trainer.precision=32-true trainer.deterministic=true logger=csv seed=3 paths.data_dir="$DATA")
python train.py "${TINY[@]}" hydra.run.dir="$OUT/train" > "$OUT/train.log" 2>&1
# The quick preset as composed (NHWC, torch.compile, v-prediction, cosine LR), for a fixed number
# of fp32 steps instead of its wall-clock budget, so that the steps do not depend on the machine.
python train.py experiment=quick time_budget_minutes=null trainer.max_steps=20 trainer.precision=32-true \
  data.limit_train=640 data.val_size=64 trainer.limit_val_batches=2 model.val_sample_steps=5 model.num_val_samples=8 \
  model.nn_reference_size=16 final_samples.num=8 final_samples.steps=5 logger=csv seed=3 paths.data_dir="$DATA" \
  hydra.run.dir="$OUT/quick" > "$OUT/quick.log" 2>&1
CKPT="$OUT/train/checkpoints/last.ckpt"
python sample.py ckpt_path="$CKPT" n=12 sampler.steps=5 batch_size=5 seed=1 paths.data_dir="$DATA" \
  hydra.run.dir="$OUT/sample" > "$OUT/sample.log" 2>&1
python evaluate.py ckpt_path="$CKPT" num_samples=16 sampler.steps=5 nll.num_images=4 nll.batch_size=4 fid.enabled=false \
  score_test=true reference_size=200 kid_subset_size=8 paths.data_dir="$DATA" ~logger cache_dir=null \
  hydra.run.dir="$OUT/evaluate" > "$OUT/evaluate.log" 2>&1
python -m "$PREFIX.run_figures" run_dir="$OUT/train" redraw=true num_samples=8 steps=5 > "$OUT/figures.log" 2>&1
python -m "$PREFIX.summarize" dirs="$OUT/train" > "$OUT/summarize.log" 2>&1
python -m "$PREFIX.compare" models="{tiny:$CKPT}" grid="[ddpm:3,5,ddim:4]" num_samples=8 reference_size=200 fid=false \
  paths.data_dir="$DATA" device=cpu out="$OUT/compare" > "$OUT/compare.log" 2>&1
python - "$OUT" <<'PY'
import hashlib, json, sys
from pathlib import Path
import numpy as np
out = Path(sys.argv[1])
def npz(p):
    with np.load(p) as f:
        return {k: hashlib.sha256(f[k].tobytes()).hexdigest()[:16] for k in sorted(f.files)}
def numbers(d):
    if isinstance(d, dict):
        return {k: numbers(v) for k, v in sorted(d.items()) if k not in ("timings", "seconds", "fit_seconds", "final_samples_seconds", "device", "ckpt_path", "samples_path", "cache_dir")}
    return d
fp = {
    "train/metrics": numbers(json.loads((out / "train/metrics.json").read_text())),
    "train/final.npz": npz(out / "train/samples/final.npz"),
    "quick/metrics": numbers(json.loads((out / "quick/metrics.json").read_text())),
    "quick/final.npz": npz(out / "quick/samples/final.npz"),
    "sample/samples.npz": npz(out / "sample/samples.npz"),
    "evaluate/metrics": numbers(json.loads((out / "evaluate/metrics.json").read_text())),
    "evaluate/samples.npz": npz(out / "evaluate/samples.npz"),
    "run_figures/final.npz": npz(out / "train/samples/final.npz"),
    "run_figures/files": sorted(p.name for p in (out / "train/figures").glob("*.png")),
    "compare/results": numbers(json.loads((out / "compare/results.json").read_text())),
}
# the table without its wall-clock column (fit minutes)
fp["runs_table/lines"] = [[c for i, c in enumerate(l.split("|")) if i != 5] for l in (out / "train/runs.md").read_text().splitlines() if l.startswith("|")]
(out / "fingerprint.json").write_text(json.dumps(fp, indent=1, sort_keys=True))
print(json.dumps(fp, sort_keys=True)[:2000])
PY
