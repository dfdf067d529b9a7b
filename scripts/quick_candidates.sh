#!/usr/bin/env bash
# Candidates for the `quick` preset, each trained with the preset's whole-run time budget on this
# machine and scored as the preset is judged: MNIST-FID, precision/recall and class shares of
# N samples drawn with the 100-step ancestral sampler.
#   bash scripts/quick_candidates.sh [N] [NAME...]
# Runs go to outputs/quick_candidates/<name>/{train,eval}; finished ones (a metrics.json) are
# reused; the table is printed at the end and written to outputs/quick_candidates/table.md.
set -euo pipefail
N=${1:-1000}
shift || true
ROOT=outputs/quick_candidates
# Settings in full, so that a candidate means the same whatever the preset now says (the preset is
# class-conditional since v_b32_lr2e-3_fast_cond; the others are unconditional).
declare -A RUNS=(
  [v]="model.diffusion.objective=v data.batch_size=128 model.optimizer.lr=1e-3 model.net.num_classes=null"
  [v_b64]="model.diffusion.objective=v data.batch_size=64 model.optimizer.lr=1e-3 model.net.num_classes=null"
  [v_b32]="model.diffusion.objective=v data.batch_size=32 model.optimizer.lr=1e-3 model.net.num_classes=null"
  [v_b64_lr2e-3]="model.diffusion.objective=v data.batch_size=64 model.optimizer.lr=2e-3 model.net.num_classes=null"
  [v_b32_lr2e-3]="model.diffusion.objective=v data.batch_size=32 model.optimizer.lr=2e-3 model.net.num_classes=null"
  [v_b16_lr2e-3]="model.diffusion.objective=v data.batch_size=16 model.optimizer.lr=2e-3 model.net.num_classes=null"
  [v_b32_lr2e-3_minsnr]="model.diffusion.objective=v data.batch_size=32 model.optimizer.lr=2e-3 model.diffusion.loss_weighting=min_snr model.net.num_classes=null"
  [v_b32_lr4e-3]="model.diffusion.objective=v data.batch_size=32 model.optimizer.lr=4e-3 model.net.num_classes=null"
  [v_b32_lr2e-3_fast]="model.diffusion.objective=v data.batch_size=32 model.optimizer.lr=2e-3 model.channels_last=true model.compile=true model.net.num_classes=null"
  [v_b32_lr4e-3_fast]="model.diffusion.objective=v data.batch_size=32 model.optimizer.lr=4e-3 model.channels_last=true model.compile=true model.net.num_classes=null"
  [v_b32_lr2e-3_fast_b99]="model.diffusion.objective=v data.batch_size=32 model.optimizer.lr=2e-3 model.channels_last=true model.compile=true model.optimizer.betas=[0.9,0.99] model.net.num_classes=null"
  [eps_b32]="model.diffusion.objective=eps data.batch_size=32 model.optimizer.lr=1e-3 model.net.num_classes=null"
  [eps_b32_lr2e-3_fast]="model.diffusion.objective=eps data.batch_size=32 model.optimizer.lr=2e-3 model.channels_last=true model.compile=true model.net.num_classes=null"
  [v_b32_lr2e-3_fast_c48]="model.diffusion.objective=v data.batch_size=32 model.optimizer.lr=2e-3 model.channels_last=true model.compile=true model.net.base_channels=48 model.net.num_classes=null"
  [v_b32_lr2e-3_fast_gn]="model.diffusion.objective=v data.batch_size=32 model.optimizer.lr=2e-3 model.channels_last=true model.compile=true model.net.norm=group model.net.num_classes=null"
  [v_b32_lr2e-3_fast_cond]="model.diffusion.objective=v data.batch_size=32 model.optimizer.lr=2e-3 model.channels_last=true model.compile=true model.net.num_classes=10"
  [v_b32_lr2e-3_fast_linear]="model.diffusion.objective=v data.batch_size=32 model.optimizer.lr=2e-3 model.channels_last=true model.compile=true schedule=linear model.net.num_classes=null"
)
ORDER=("$@")
[[ ${#ORDER[@]} -gt 0 ]] || ORDER=(v v_b64 v_b32 v_b64_lr2e-3 v_b32_lr2e-3)
for name in "${ORDER[@]}"; do
  dir=$ROOT/$name
  if [[ ! -f $dir/train/metrics.json ]]; then
    start=$(date +%s)
    # shellcheck disable=SC2086
    python train.py experiment=quick hydra.run.dir="$dir/train" ${RUNS[$name]}
    echo $(( $(date +%s) - start )) > "$dir/train/wall_seconds"
  fi
  if [[ ! -f $dir/eval/metrics.json ]]; then
    python evaluate.py ckpt_path="$dir/train/checkpoints/last.ckpt" num_samples="$N" sampler.steps=100 \
      nll.enabled=false score_test=false fid.enabled="${FID:-false}" logger=csv hydra.run.dir="$dir/eval"
  fi
done
python - "$ROOT" "${ORDER[@]}" <<'PY'
import json, sys
from pathlib import Path
from omegaconf import OmegaConf
root, names = Path(sys.argv[1]), sys.argv[2:]
rows = ["| candidate | objective | batch | lr | other settings | precision | steps | minutes | MNIST-FID | FID | precision (k=3) | recall (k=3) | class shares (min–max) | confident share | real test digits | mean confidence |",
        "|---|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
for name in names:
    run = root / name
    train = json.loads((run / "train" / "metrics.json").read_text())
    scored = json.loads((run / "eval" / "metrics.json").read_text())
    ev, source = scored["samples"], scored["source"]
    cfg = OmegaConf.load(run / "train" / ".hydra" / "config.yaml")
    log = (run / "train" / "train.log").read_text()
    precision = log.split(", precision ", 1)[1].split()[0] if ", precision " in log else "?"
    shares = [ev[f"class_share_{c}"] for c in range(10)]
    minutes = int((run / "train" / "wall_seconds").read_text()) / 60
    fid = f"{ev['fid']:.2f}" if "fid" in ev else "–"
    fast = [k for k in ("channels_last", "compile") if cfg.model.get(k)]
    weighting = [] if cfg.model.diffusion.get("loss_weighting", "simple") == "simple" else [f"{cfg.model.diffusion.loss_weighting} loss"]
    net = cfg.model.net
    weighting += [f"c = {net.base_channels}"] if net.base_channels != 32 else []
    weighting += [f"{net.norm} norm"] if net.get("norm", "batch") != "batch" else []
    weighting += [f"{cfg.schedule.name} schedule"] if cfg.schedule.name != "cosine" else []
    weighting += [f"{net.num_classes} classes, w = {cfg.model.guidance_scale:g}"] if net.get("num_classes") else []
    rows.append(f"| {name} | {cfg.model.diffusion.objective} | {cfg.data.batch_size} | {cfg.model.optimizer.lr:g} | "
                f"{', '.join(fast + weighting) or '–'} | {precision} | "
                f"{train['global_step']:.0f} | {minutes:.1f} | {ev['classifier_fid']:.2f} | {fid} | {ev['precision']:.3f} | "
                f"{ev['recall']:.3f} | {min(shares):.3f}–{max(shares):.3f} | {ev['confident_share']:.3f} | "
                f"{source['judge_test_confident_share']:.3f} | {ev['mean_confidence']:.3f} |")
table = "\n".join(rows)
(root / "table.md").write_text(table + "\n")
print(table)
PY
