"""The markdown tables: evaluate.py's ``evaluation.md``, the runs table of ``python -m ddpm_lit.summarize``,
the families table (``python -m ddpm_lit.families``) and the samplers' table
(``python -m ddpm_lit.compare``). Each names the metrics it shows; their titles, formats and
scales come from the metric catalogue (``ddpm_lit.catalogue``), so a metric reads alike in all of them.
"""

from __future__ import annotations

from typing import Any

from ddpm_lit.catalogue import Metric, metric
from ddpm_lit.runs import Run, differing_settings

# The final metrics of a training run (metrics.json): the runs table and the sweep page's columns.
RUN_COLUMNS: tuple[Metric, ...] = tuple(metric(k) for k in (
    "params", "epochs", "global_step", "fit_seconds", "final_samples_seconds", "train/loss_epoch", "val/loss",
    "val/classifier_fid", "val/ssim", "val/nn_ssim"))
# evaluate.py's scores of samples (and real test images), in evaluation.md's order.
EVALUATION_ROWS: tuple[Metric, ...] = tuple(metric(k) for k in (
    "fid", "classifier_fid", "kid", "precision", "recall", "confident_share", "mean_confidence", "inception_score",
    "class_accuracy", "class_entropy", "min_class_share", "classes_present", "nn_train_distance_mean", "nn_train_distance_median", "ssim", "nn_train_ssim"))
# A family's row of the families table (mean ± std over seeds); a missing value shows as –.
FAMILY_COLUMNS: tuple[Metric, ...] = tuple(metric(k) for k in (
    "fid", "classifier_fid", "kid", "precision", "recall", "confident_share", "mean_confidence", "classes_present",
    "class_entropy", "nn_train_distance_mean",
    "bpd", "iwae_bpd", "sampling_ms_per_image", "evaluations_per_image", "fit_minutes", "training_images_k",
    "params_m"))


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


# ---- the runs of a folder ------------------------------------------------------------------------
def _setting(value: Any) -> str:
    return "–" if value is None else f"`{value}`" if isinstance(value, str) else str(value)


def runs_table(runs: list[Run]) -> str:
    """A row per run: the settings in which the runs differ, then their final metrics (``RUN_COLUMNS``)."""
    differ, configs = differing_settings(runs)
    head = ["run"] + differ + [m.label() for m in RUN_COLUMNS]
    lines = [_row(head), "|" + "---|" * len(head)]
    for run, config in zip(runs, configs):
        metrics = run.metrics()
        cells = [run.name] + [_setting(config.get(k)) for k in differ]
        cells += [m.show(metrics[m.key]) if m.key in metrics else "–" for m in RUN_COLUMNS]
        lines.append(_row(cells))
    return "\n".join(lines)


def optuna_best_note(result: dict[str, Any]) -> str:
    """What follows "Optuna's best: <value> with <params>" in runs.md and on the sweep page: for a
    study in a storage (``optimization_results.yaml`` as ``ddpm_lit.config.sweeper`` writes it),
    the best trial's number (its job dir) and the study's trials when the file was written, every
    process's; "" for the plugin's own file (a study in one process's memory: its trials are the jobs)."""
    if "best_trial" not in result:
        return ""
    note = (f" (trial {result['best_trial']}, the best of the {result.get('complete_trials')} complete trials of "
            f"study {result.get('study_name')}, from every process that shares it")
    running = result.get("running_trials")
    return note + (f"; {running} more were running" if running else "") + ")"


# ---- an evaluation (evaluate.py's evaluation.md) -----------------------------------------------------
def class_table(samples: dict[str, Any], test: dict[str, Any] | None, class_names: list[str] | None) -> list[str]:
    """The share of each class among the samples (and test images) and, for a conditional model,
    the classifier's accuracy on each requested class, by name."""
    shares = sorted((int(k.rsplit("_", 1)[1]), v) for k, v in samples.items() if k.startswith("class_share_"))
    if not shares:
        return []
    per_class = samples.get("class_accuracy_per_class") or {}
    header = "| class | share of samples |" + (" share of test images |" if test else "") + (" accuracy |" if per_class else "")
    lines = ["", "Classes as the data set's classifier sees them:", "", header,
             "|---|---:|" + ("---:|" if test else "") + ("---:|" if per_class else "")]
    for c, share in shares:
        name = class_names[c] if class_names and c < len(class_names) else str(c)
        row = f"| {c}: {name} | {share:.3f} |"
        if test:
            row += f" {test.get(f'class_share_{c}', float('nan')):.3f} |"
        if per_class:
            acc = per_class.get(str(c))
            row += f" {acc:.3f} |" if acc is not None else " – |"
        lines.append(row)
    return lines


def _bound_lines(nll: dict[str, Any]) -> list[str]:
    """The likelihood bound in a sentence: the VAE's ELBO and IWAE, or a DDPM's variational bound."""
    if nll.get("bound") == "elbo":
        return [
            "",
            f"Negative ELBO: **{nll['elbo_bpd']:.3f} ± {nll['elbo_bpd_stderr']:.3f} bits/dim**; importance-weighted bound "
            f"(k = {nll['iwae_samples']}): **{nll['iwae_bpd']:.3f} ± {nll['iwae_bpd_stderr']:.3f} bits/dim** "
            f"(standard errors over {nll['num_images']} test images quantised to 8 bits).",
        ]
    return [
        "",
        f"Negative log-likelihood bound: **{nll['bpd']:.3f} ± {nll['bpd_stderr']:.3f} bits/dim** "
        f"(standard error over {nll['num_images']} test images; reverse variance {nll['variance']}; "
        f"L_T = {nll['prior_bpd']:.2e}, L_0 = {nll['l0_bpd']:.3f}, the KL term at t = T "
        f"{nll['last_step_bpd']:.3f}).",
    ]


def _confidence_lines(samples: dict[str, Any], src: dict[str, Any]) -> list[str]:
    """The confident share in a sentence, beside that of every real test image: the floor."""
    if "confident_share" not in samples:
        return []
    floor = src.get("judge_test_confident_share")
    accuracy = src.get("judge_test_accuracy")
    return [
        "",
        f"Readable samples: the set's judge (`{src.get('judge')}`, trained with outlier exposure"
        + (f"; test accuracy {accuracy:.4f}" if accuracy is not None else "")
        + f") reads **{samples['confident_share']:.1%}** of the samples with ≥ 90 % confidence"
        + (f", and {floor:.1%} of all real test images" if floor is not None else "")
        + "; the least confident are in least_confident.png, every sample's value in per_sample.csv.",
    ]


def evaluation_report(results: dict[str, Any]) -> str:
    """evaluate.py's evaluation.md of its ``results`` (metrics.json's content): what was scored, the
    metrics of the samples (and real test images), the likelihood bound, classes, timings, figures."""
    samples, test = results["samples"], results.get("test")
    src = results["source"]
    what = src["ckpt_path"] or src["samples_path"]
    lines = [f"# Evaluation of `{what}`", ""]
    if src["sampler"]:
        lines.append(f"Sampler: {src['sampler']}; EMA weights: {'yes' if src['ema_weights'] else 'no'}.")
    elif src.get("family"):
        lines.append(f"A {src['family']}: one network pass per image; EMA weights: {'yes' if src['ema_weights'] else 'no'}.")
    speed = src.get("speed")
    if speed:
        ranks = src.get("ranks") or 1
        lines.append(f"Drawn in {speed['precision']}, {'channels-last' if speed['channels_last'] else 'contiguous'}, "
                     f"{'compiled' if speed['compiled'] else 'eager'}, batches of {speed['batch_size']} on {speed['device']}"
                     + (f" over {ranks} ranks" if ranks > 1 else "") + " (conf/speed/; metrics.json: source.speed).")
    lines += [
        f"{int(samples['num_images'])} samples"
        + (f", {int(test['num_images'])} real test images" if test else "")
        + f"; distribution metrics against {src['reference_size']} training images (seed {src['reference_seed']}; "
        "precision/recall against as many of them as images scored); distances in pixel space with "
        f"images in [0, 1]. Features: {src['inception'] or 'no Inception'}, {src['classifier']}.",
        "",
        "| metric | samples | real test images |" if test else "| metric | samples |",
        "|---|---|---|" if test else "|---|---|",
    ]
    title = src.get("dataset_title") or "MNIST"
    for m in EVALUATION_ROWS:
        if m.key in samples:
            row = f"| {m.label(title, long=True)} | {m.show(samples[m.key])} |"
            if test:
                row += f" {m.show(test[m.key]) if m.key in test else '–'} |"
            lines.append(row)
    lines += _confidence_lines(samples, src)
    if "nll" in results:
        lines += _bound_lines(results["nll"])
    lines += class_table(samples, test, src.get("class_names"))
    lines += ["", "| step | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in results["timings"].items()]
    lines += ["", "![samples](grid.png)", "", "![least confident](least_confident.png)", "", "![classes](class_histogram.png)",
              "", "![SSIM](ssim_histogram.png)", "", "![nearest](nearest_training.png)"]
    if "nll" in results and results["nll"].get("bound") == "ddpm":
        lines += ["", "![bound](bound_terms.png)"]
    return "\n".join(lines) + "\n"


# ---- the families (python -m ddpm_lit.families) -------------------------------------------
def _mean_std(m: Metric, value: dict[str, Any] | None) -> str:
    if value is None:
        return "–"
    return m.show(value["mean"]) + (f" ± {m.show(value['std'])}" if value["std"] is not None else "")


def families_table(results: dict[str, Any]) -> str:
    """The summary table (mean ± std over seeds), the stability lines and the per-run table of
    the families' results (results.json's content: setup, runs, summary, test)."""
    summary, rows, setup = results["summary"], results["runs"], results["setup"]
    families = list(summary)
    test = results.get("test") or {}
    lines = [
        f"Budget: {setup['budget']}; seeds {', '.join(map(str, setup['seeds']))}; {setup['num_samples']} samples per run "
        f"against {setup['reference_size']} training images; bits/dim on {setup['nll_images']} test images "
        f"(IWAE k = {setup['iwae']}); DDPM sampled with {setup['ddpm_steps']} ancestral steps. Machine: {setup['machine']}.",
        "",
        "| metric (mean ± std over seeds) | " + " | ".join(families) + (" | real test images |" if results.get("test") else " |"),
        "|---|" + "---|" * (len(families) + (1 if results.get("test") else 0)),
    ]
    for m in FAMILY_COLUMNS:
        cells = [_mean_std(m, summary[family].get(m.key)) for family in families]
        if results.get("test"):
            cells.append(m.show(test[m.key]) if m.key in test else "–")
        lines.append(f"| {m.label()} | " + " | ".join(cells) + " |")
    fid = metric("classifier_fid")
    lines += ["", "| stability | " + " | ".join(families) + " |", "|---|" + "---|" * len(families)]
    lines.append(f"| {fid.label()} range over seeds | " + " | ".join(
        " – ".join(fid.show(v) for v in summary[f]["classifier_fid_range"]) for f in families) + " |")
    lines.append("| seeds collapsed | " + " | ".join(
        (", ".join(f"seed {s}: {why}" for s, why in summary[f]["collapsed"].items()) or "none") for f in families) + " |")
    lines += ["", "| family | seed | " + " | ".join(m.label() for m in FAMILY_COLUMNS) + " | collapsed |",
              "|---|---|" + "---|" * (len(FAMILY_COLUMNS) + 1)]
    for row in rows:
        cells = [m.show(row.get(m.key)) for m in FAMILY_COLUMNS]
        lines.append(f"| {row['family']} | {row['seed']} | " + " | ".join(cells) + f" | {row['collapsed'] or 'no'} |")
    return "\n".join(lines) + "\n"


# ---- the samplers (python -m ddpm_lit.compare) ----------------------------------------------
def compare_table(results: dict[str, Any], fid: bool) -> str:
    """Rows: model × sampler × steps (× guidance); columns: the metrics and the time to sample."""
    lines = []
    models = results.get("models", {})
    if models:
        lines += ["| model | checkpoint | training |", "|---|---|---|"]
        lines += [f"| {name} | `{m['ckpt']}` | {m['describe']} |" for name, m in models.items()]
        lines.append("")
    shown = [metric("classifier_fid")] + ([metric("fid")] if fid else []) + [
        metric("recall"), metric("confident_share"), metric("class_accuracy"), metric("sampling_seconds")]
    header = ["model", "sampler", "steps", "guidance"] + [m.label(results.get("dataset_title", "MNIST")) for m in shown]
    lines += [_row(header), "|" + "---|" * len(header)]
    for cell in results.get("cells", {}).values():
        row = [cell["model"], cell["sampler"], str(cell["steps"])]
        row.append("–" if cell["guidance"] is None else f"{cell['guidance']:g}")
        row += [m.show(cell.get(m.key)) for m in shown]
        lines.append(_row(row))
    n = results.get("num_samples")
    ref = results.get("reference_size")
    lines += [
        "",
        f"{n} samples per cell (seed {results.get('seed')}), against {ref} training images; FID is biased upwards "
        "at small N, so compare cells of one table, not with numbers at other N. Accuracy: the project "
        "classifier's agreement with the requested digits (conditional models, digits 0–9 equally often). "
        "Confident share: the images the set's judge reads with ≥ 90 % confidence"
        + (f" (real test images: {results['test_confident_share']:.3f})." if results.get("test_confident_share") is not None else "."),
    ]
    return "\n".join(lines) + "\n"
