#!/usr/bin/env bash
# Train one model per objective, loss weighting, variance and conditioning with the same budget,
# then compare them across samplers and step counts (python -m ddpm_lit.compare).
#   bash scripts/compare.sh [EPOCHS] [NUM_SAMPLES]
# Defaults: the `quick` preset for 2 epochs (c = 32, 858 optimizer steps, about 6 min each on
# 2 CPU cores) and 500 samples per cell. Finished runs (a metrics.json in their folder) are
# reused, interrupted ones resume from their last.ckpt, and the comparison skips cells it has
# scored, so the script picks up where it stopped.
set -euo pipefail
EPOCHS=${1:-2}
N=${2:-500}
ROOT=outputs/compare/epochs_${EPOCHS}
# The quick preset as these runs were measured: a fixed number of epochs at batch 128 in fp32,
# constant learning rate, ε-prediction unless a run says otherwise (the preset itself now trains
# for a wall-clock budget; see scripts/quick_candidates.sh).
BASE="time_budget_minutes=null model.net.num_classes=null trainer.precision=32-true model.lr_schedule=constant data.batch_size=128 model.diffusion.objective=eps model.val_classifier_fid=true"
declare -A RUNS=(
  [eps]=""
  [x0]="model.diffusion.objective=x0"
  [v]="model.diffusion.objective=v"
  [eps_vlb]="model.diffusion.loss_weighting=vlb"
  [eps_min_snr]="model.diffusion.loss_weighting=min_snr"
  [eps_learned]="model.diffusion.variance=learned"
  [cond]="model.net.num_classes=10"
  # the bound's weight puts 98 % of its mass on the last 10 steps of the cosine schedule; on the
  # linear one it is spread out, so both schedules are trained, with eps on linear to compare
  [eps_linear]="schedule=linear"
  [eps_vlb_linear]="schedule=linear model.diffusion.loss_weighting=vlb"
)
ORDER=(eps x0 v eps_vlb eps_min_snr eps_learned cond eps_linear eps_vlb_linear)
for name in "${ORDER[@]}"; do
  dir=$ROOT/train/$name
  if [[ ! -f $dir/metrics.json ]]; then
    resume=()
    [[ -f $dir/checkpoints/last.ckpt ]] && resume=(ckpt_path="$dir/checkpoints/last.ckpt")
    # shellcheck disable=SC2086
    python train.py experiment=quick $BASE trainer.max_epochs="$EPOCHS" logger=csv hydra.run.dir="$dir" \
      final_samples.steps=100 ${RUNS[$name]} "${resume[@]}"
  fi
done
models() {  # models={NAME:CHECKPOINT,...} of the names given
  local items=() name
  for name in "$@"; do items+=("$name:$ROOT/train/$name/checkpoints/last.ckpt"); done
  (IFS=,; printf 'models={%s}\n' "${items[*]}")
}
compare() { python -m ddpm_lit.compare num_samples="$N" out="$ROOT/table" "$@"; }
SMALL='[ddpm:100,ddim:20,50,dpmpp_2m:10,20,50]'
# The study's model (eps) over the whole grid, with the study's sampler (ddpm, 1000 steps);
# the other objectives and weightings over a smaller one (1000 steps cost 500k network calls).
# DDIM with η = 1 has the ancestral step's distribution: it separates the sampler's noise from its code.
compare "$(models eps)" grid='[ddpm:10,20,50,100,1000,ddim:10,20,50,100,dpmpp_2m:10,20,50,100,"ddim/eta=1:20",100]'
compare "$(models x0 v eps_vlb eps_min_snr eps_learned)" grid="$SMALL"
# EMA: the eps run again, with the raw weights its checkpoint keeps beside the average
compare raw_models="{eps_no_ema:$ROOT/train/eps/checkpoints/last.ckpt}" grid="$SMALL"
# Classifier-free guidance: accuracy on the requested digits against the guidance scale
compare "$(models cond)" grid='[dpmpp_2m:20]' guidance='[0,1,2,4]'
compare "$(models eps_linear eps_vlb_linear)" grid="$SMALL"
