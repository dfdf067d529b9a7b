#!/usr/bin/env bash
# Train one model per objective, loss weighting, variance and conditioning with the same budget,
# then compare them across samplers and step counts (python -m ddpm_lit.compare).
#   bash scripts/compare.sh [EPOCHS] [NUM_SAMPLES]
# Defaults: the `quick` preset for 2 epochs (c = 32, ~860 optimizer steps, about 6 min each on
# 2 CPU cores) and 500 samples per cell. Finished runs (a metrics.json in their folder) are
# reused, interrupted ones resume from their last.ckpt, and compare.py skips cells it has
# scored, so the script picks up where it stopped.
set -euo pipefail
EPOCHS=${1:-2}
N=${2:-500}
ROOT=outputs/compare/epochs_${EPOCHS}
declare -A RUNS=(
  [eps]=""
  [x0]="model.objective=x0"
  [v]="model.objective=v"
  [eps_vlb]="model.loss_weighting=vlb"
  [eps_min_snr]="model.loss_weighting=min_snr"
  [eps_learned]="model.variance=learned"
  [cond]="model.num_classes=10"
)
ORDER=(eps x0 v eps_vlb eps_min_snr eps_learned cond)
MODELS=()
for name in "${ORDER[@]}"; do
  dir=$ROOT/train/$name
  if [[ ! -f $dir/metrics.json ]]; then
    resume=()
    [[ -f $dir/checkpoints/last.ckpt ]] && resume=(ckpt_path="$dir/checkpoints/last.ckpt")
    # shellcheck disable=SC2086
    python train.py experiment=quick trainer.max_epochs="$EPOCHS" logger=csv hydra.run.dir="$dir" \
      final_samples.steps=100 ${RUNS[$name]} "${resume[@]}"
  fi
  MODELS+=(--model "$name=$dir/checkpoints/last.ckpt")
done
# The report's model (eps) over the whole grid, with the report's sampler (ddpm, 1000 steps);
# the other objectives and weightings over a smaller one (1000 steps cost 500k network calls).
python -m ddpm_lit.compare "${MODELS[@]:0:2}" --num-samples "$N" --out "$ROOT/table" \
  --grid ddpm:10,20,50,100,1000 ddim:10,20,50,100 dpmpp_2m:10,20,50,100
python -m ddpm_lit.compare "${MODELS[@]:2:10}" --num-samples "$N" --out "$ROOT/table" \
  --grid ddpm:100 ddim:20,50 dpmpp_2m:10,20,50
# EMA: the eps run again, with the raw weights its checkpoint keeps beside the average
python -m ddpm_lit.compare --model-raw "eps_no_ema=$ROOT/train/eps/checkpoints/last.ckpt" --num-samples "$N" \
  --out "$ROOT/table" --grid ddpm:100 ddim:20,50 dpmpp_2m:10,20,50
python -m ddpm_lit.compare "${MODELS[@]:12:2}" --num-samples "$N" --out "$ROOT/table" \
  --grid dpmpp_2m:20 --guidance 0,1,2,4
