#!/usr/bin/env bash
# The study's own configuration on one GPU, in one go, with everything a reader needs written to
# one folder of at most 8 files of at most 16 MiB (what a lent GPU machine can send back), inside
# the 10 minutes one command may run there:
#   environment, benchmark (bench.txt), training of `experiment=seed trainer=gpu` (50 epochs, or as
#   many as TRAIN_MINUTES allows: the run's log says which), the sampling front end's NFE/s before and
#   after conf/speed (bench), 10,000 samples at 20 steps with DPM-Solver++(2M) and with the respaced
#   ancestral sampler, timed with the speed settings sample.py chooses, 1,000 samples with all 1,000 steps
#   scored by evaluate.py with the bits/dim of 1,000 test images, the EMA weights as float16
#   shards, and metrics.json summing it all up.
#
#   bash scripts/gpu_prepare.sh                # here, once: wheels, MNIST and the classifier in .gpu/
#   bash scripts/gpu_run.sh                    # there, from the repo root (OUT=folder, default outputs/gpu_run)
#
# Afterwards, on any machine: the standard FID of the returned samples, and the weights back as a checkpoint:
#   python evaluate.py samples_path=OUT/samples_dpmpp2m_20.npz
#   python -m ddpm_lit.apps.shards join OUT/weights_fp16.*.pt -o gpu_seed.ckpt
#
# Every size is a variable, so tests/test_gpu_run.py runs the whole script on a CPU with a tiny
# network in a minute: TRAINER, TRAIN_OVERRIDES (train and bench), EVAL_OVERRIDES, BENCH_ARGS,
# TRAIN_MINUTES, N_FAST, N_FULL, N_BPD, SAMPLE_BATCH.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-outputs/gpu_run}
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/gpu_run.XXXXXX")}
TRAIN_MINUTES=${TRAIN_MINUTES:-5.5}  # the training run's whole budget; the script must end inside 10 minutes
TRAINER=${TRAINER:-gpu}
TRAIN_OVERRIDES=${TRAIN_OVERRIDES:-}
EVAL_OVERRIDES=${EVAL_OVERRIDES:-}
BENCH_ARGS=${BENCH_ARGS:-bench.steps=50 bench.warmup=10 bench.repeats=2 bench.sample_steps=[20,1000] bench.sample_batch=1000 bench.diffusers=true 'bench.ablate=["trainer.precision=32-true model.channels_last=false model.compile=false","model.channels_last=false model.compile=false"]'}
N_FAST=${N_FAST:-10000}
N_FULL=${N_FULL:-1000}
N_BPD=${N_BPD:-1000}
SAMPLE_BATCH=${SAMPLE_BATCH:-2500}
mkdir -p "$OUT" "$WORK"
T0=$(date +%s)
: > "$WORK/timings.txt"
quiet() {  # progress bars' carriage-return frames out of the logs
  tr '\r' '\n' | { grep --line-buffered -v 'it/s\]$' || true; }
}
phase() {  # phase NAME COMMAND...: run it, note its wall seconds
  local name=$1 start
  shift
  start=$(date +%s)
  echo "== [$(( start - T0 )) s] $name"
  "$@"
  echo "$name $(( $(date +%s) - start ))" >> "$WORK/timings.txt"
}

# Packages the machine lacks, MNIST and the classifier, from .gpu/ (scripts/gpu_prepare.sh).
if [[ -d .gpu/wheels ]] && ! python3 -c "import hydra, omegaconf, diffusers" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/ddpm-site .gpu/wheels/*.whl
  export PYTHONPATH=/tmp/ddpm-site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 WANDB_MODE=offline
if [[ -d .gpu/mnist ]]; then
  mkdir -p data/MNIST/raw
  for f in .gpu/mnist/*.gz; do
    target=data/MNIST/raw/$(basename "$f" .gz)
    [[ -f $target ]] || gunzip -c "$f" > "$target"
  done
fi
for weights in mnist_cnn.pt mnist_judge.pt; do
  if [[ -f .gpu/classifier/$weights && ! -f data/classifier/$weights ]]; then
    mkdir -p data/classifier && cp ".gpu/classifier/$weights" data/classifier/
  fi
done

environment() {
  python3 - <<'PY'
import platform, torch, lightning
print(f"python {platform.python_version()}, torch {torch.__version__}, lightning {lightning.__version__}")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"GPU: {p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs, capability {p.major}.{p.minor}")
else:
    print(f"no GPU: CPU with {torch.get_num_threads()} threads")
PY
  nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv 2>/dev/null || true
}
phase environment environment 2>&1 | tee "$WORK/env.txt"

# shellcheck disable=SC2086
phase bench python3 -m ddpm_lit.bench experiment=seed trainer="$TRAINER" logger=csv $TRAIN_OVERRIDES $BENCH_ARGS 2>&1 \
  | quiet | tee "$WORK/bench.txt"

# The study's run. The validation hook samples 64 images with a 100-step chain each epoch
# (the full 1,000-step chain would cost ~20 % of the training time); the final grid uses all T,
# with the study's trajectory every 100 steps.
# shellcheck disable=SC2086
phase train python3 train.py experiment=seed trainer="$TRAINER" logger=csv time_budget_minutes="$TRAIN_MINUTES" \
  post_fit_reserve_seconds=30 model.val_sample_steps=100 final_samples.steps=null hydra.run.dir="$WORK/train" \
  $TRAIN_OVERRIDES 2>&1 | quiet | tee "$WORK/train.txt"
CKPT=$WORK/train/checkpoints/last.ckpt

# The sampling front end on the trained weights: as loaded (fp32, eager) against conf/speed/auto's
# choice for 10,000 images, beside the bare network calls, in NFE/s of a 20-step chain.
phase bench_sampling python3 -m ddpm_lit.bench bench.training=false bench.sampling_ckpt="$CKPT" \
  "bench.sample_steps=[20]" bench.repeats=2 bench.sampling_num="$N_FAST" 2>&1 | quiet | tee "$WORK/bench_sampling.txt"

for sampler in dpmpp_2m ddpm; do
  phase "sample_${sampler}_20" python3 sample.py ckpt_path="$CKPT" n="$N_FAST" sampler=$sampler sampler.steps=20 \
    batch_size="$SAMPLE_BATCH" trajectory=0 hydra.run.dir="$WORK/sample_${sampler}_20" 2>&1 | quiet
done
phase evaluate_ddpm_1000 python3 evaluate.py ckpt_path="$CKPT" num_samples="$N_FULL" sampler=ddpm sampler.steps=null \
  batch_size="$N_FULL" fid.enabled=false nll.num_images="$N_BPD" nll.batch_size="$N_BPD" logger=csv \
  hydra.run.dir="$WORK/eval_ddpm_1000" $EVAL_OVERRIDES 2>&1 | quiet

# What comes back: at most 8 files.
cp "$WORK/bench.txt" "$OUT/bench.txt"
cp "$WORK/sample_dpmpp_2m_20/samples.npz" "$OUT/samples_dpmpp2m_20.npz"
cp "$WORK/sample_ddpm_20/samples.npz" "$OUT/samples_ddpm_20.npz"
cp "$WORK/eval_ddpm_1000/samples.npz" "$OUT/samples_ddpm_1000.npz"
python3 -m ddpm_lit.apps.shards split "$CKPT" "$OUT" --max-mib 15
python3 - "$WORK" "$OUT" "$(( $(date +%s) - T0 ))" <<'PY'
import csv, json, sys
from pathlib import Path

work, out, seconds = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
train = json.loads((work / "train" / "metrics.json").read_text())
rows = list(csv.DictReader(next((work / "train" / "csv").rglob("metrics.csv")).open()))
losses = [(int(r["epoch"]), float(r["train/loss_epoch"])) for r in rows if r.get("train/loss_epoch")]
timings = dict(line.split() for line in (work / "timings.txt").read_text().splitlines())
evaluation = json.loads((work / "eval_ddpm_1000" / "metrics.json").read_text())
summary = {
    "environment": (work / "env.txt").read_text().strip().splitlines(),
    "wall_seconds": {k: int(v) for k, v in timings.items()} | {"whole_script": seconds},
    "train": train,
    "epochs_completed": len(losses),
    "seconds_per_epoch": train["fit_seconds"] / max(len(losses), 1),
    "train_loss_by_epoch": losses,
    "sampling": {name: json.loads((work / name / "sample.json").read_text())
                 for name in ("sample_dpmpp_2m_20", "sample_ddpm_20")},
    "evaluate_ddpm_1000": {k: evaluation[k] for k in ("samples", "test", "nll", "timings") if k in evaluation},
    "bench": (work / "bench.txt").read_text().splitlines(),
    "bench_sampling": (work / "bench_sampling.txt").read_text().splitlines(),
}
(out / "metrics.json").write_text(json.dumps(summary, indent=2))
print(f"epochs {len(losses)}, last train/loss_epoch {losses[-1][1] if losses else float('nan'):.4f}, "
      f"{summary['seconds_per_epoch']:.1f} s per epoch, bits/dim {evaluation.get('nll', {}).get('bpd', float('nan')):.3f}")
PY
tar -czf "$OUT/run.tar.gz" -C "$WORK" env.txt train.txt timings.txt bench_sampling.txt train/metrics.json train/train.log train/csv \
  train/samples train/figures sample_dpmpp_2m_20/samples.png sample_ddpm_20/samples.png \
  eval_ddpm_1000/metrics.json eval_ddpm_1000/evaluation.md eval_ddpm_1000/grid.png eval_ddpm_1000/bound_terms.png
ls -l "$OUT"
echo "== done in $(( $(date +%s) - T0 )) s; $(find "$OUT" -type f | wc -l) files in $OUT"
