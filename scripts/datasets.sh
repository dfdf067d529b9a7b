#!/usr/bin/env bash
# MNIST beside Fashion-MNIST with one budget: the `quick` preset (14 minutes of training, start-up
# and final samples on this machine) on each set, and the class-conditional model on
# Fashion-MNIST; each last checkpoint scored with N samples of the 100-step ancestral sampler
# against 10,000 training images of its own set, in the features of that set's classifier, and
# as many real test images scored the same way (the floor at this N). The conditional model is
# scored with guidance w = 1 (none) and w = GUIDANCE, with the classifier's accuracy per class.
#   bash scripts/datasets.sh [N]        # N defaults to 1000
# Runs go to outputs/datasets/<name>/{train,eval*,sample_w*}; finished ones (a metrics.json) are reused; the
# table is printed at the end and written to outputs/datasets/table.md.
set -euo pipefail
N=${1:-1000}
GUIDANCE=${GUIDANCE:-2}
ROOT=outputs/datasets
declare -A RUNS=(
  [mnist]="data=mnist model.net.num_classes=null"
  [fashion_mnist]="data=fashion_mnist model.net.num_classes=null"
  [fashion_mnist_cond]="data=fashion_mnist model.net.num_classes=10"
)
ORDER=(fashion_mnist_cond fashion_mnist mnist)
for name in "${ORDER[@]}"; do  # the trainings first, one at a time: each one's budget is the machine's alone
  dir=$ROOT/$name
  if [[ ! -f $dir/train/metrics.json ]]; then
    start=$(date +%s)
    # shellcheck disable=SC2086
    python train.py experiment=quick hydra.run.dir="$dir/train" logger=csv ${RUNS[$name]}
    echo $(( $(date +%s) - start )) > "$dir/train/wall_seconds"
  fi
done
score() {  # score <name> <eval folder> [overrides...]
  local dir=$ROOT/$1 out=$ROOT/$1/$2
  shift 2
  if [[ ! -f $out/metrics.json ]]; then
    python evaluate.py ckpt_path="$dir/train/checkpoints/last.ckpt" num_samples="$N" sampler.steps=100 \
      nll.enabled=false score_test=true fid.enabled=false logger=csv hydra.run.dir="$out" "$@"
  fi
}
score mnist eval
score fashion_mnist eval
score fashion_mnist_cond eval_w1 guidance_scale=1
score fashion_mnist_cond eval guidance_scale="$GUIDANCE"
# the conditional model's grid: one class per column (T-shirt/top ... Ankle boot), 8 draws of each
if [[ ! -f $ROOT/fashion_mnist_cond/sample_w$GUIDANCE/samples.png ]]; then
  python sample.py ckpt_path="$ROOT/fashion_mnist_cond/train/checkpoints/last.ckpt" n=80 nrow=10 \
    guidance_scale="$GUIDANCE" sampler.steps=100 trajectory=0 hydra.run.dir="$ROOT/fashion_mnist_cond/sample_w$GUIDANCE"
fi
python - "$ROOT" <<'PY'
import json, sys
from pathlib import Path
root = Path(sys.argv[1])
rows = ["| run | data set | steps | minutes | guidance | classifier FID | same, real test images | precision (k=3) | recall (k=3) | class shares (min–max) | accuracy on the class asked for | classifier's test accuracy |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|---|---:|---:|"]
per_class = []
for name, folder in (("mnist", "eval"), ("fashion_mnist", "eval"), ("fashion_mnist_cond", "eval_w1"), ("fashion_mnist_cond", "eval")):
    run = root / name
    train = json.loads((run / "train" / "metrics.json").read_text())
    metrics = json.loads((run / folder / "metrics.json").read_text())
    ev, test, src = metrics["samples"], metrics["test"], metrics["source"]
    k = sum(1 for key in ev if key.startswith("class_share_"))
    shares = [ev[f"class_share_{c}"] for c in range(k)]
    minutes = int((run / "train" / "wall_seconds").read_text()) / 60
    accuracy = f"{ev['class_accuracy']:.3f}" if "class_accuracy" in ev else "–"
    guidance = "–" if src["guidance_scale"] is None else f"{src['guidance_scale']:g}"
    rows.append(f"| {name} | {src['dataset_title']} | {train['global_step']:.0f} | {minutes:.1f} | {guidance} | "
                f"{ev['classifier_fid']:.2f} | {test['classifier_fid']:.2f} | {ev['precision']:.3f} | {ev['recall']:.3f} | "
                f"{min(shares):.3f}–{max(shares):.3f} | {accuracy} | {src['classifier_test_accuracy']:.3f} |")
    if "class_accuracy_per_class" in ev:
        per_class.append((f"{name}, w = {guidance}", src["class_names"], ev["class_accuracy_per_class"]))
lines = rows
if per_class:
    names = per_class[0][1]
    lines += ["", "| accuracy per class | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    lines += [f"| {label} | " + " | ".join(f"{acc[str(c)]:.2f}" for c in range(len(names))) + " |" for label, _, acc in per_class]
table = "\n".join(lines)
(root / "table.md").write_text(table + "\n")
print(table)
PY
