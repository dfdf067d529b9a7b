"""The model card of an exported folder (its README.md): Hugging Face front matter (library,
tags, data set, pipeline, the scores as a model index), then the grid, how to load it, the
scores of evaluate.py, the data set and what trained it."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import yaml

from ddpm_lit.data.sets import BUILTIN_SETS
from ddpm_lit.reporting.tables import EVALUATION_ROWS

GRID = "samples.png"
# The Hub's ids of the built-in sets.
HUB_DATASETS = {"mnist": "ylecun/mnist", "fashion_mnist": "zalando-datasets/fashion_mnist"}
# The scores the front matter's model index lists (the card's table shows every one).
HEADLINE = ("fid", "classifier_fid", "kid", "precision", "recall", "confident_share", "bpd")
FAMILY_TAGS = {"ddpm": ["diffusion", "ddpm"], "vae": ["vae"], "gan": ["gan"]}


def _dataset(config: dict[str, Any]) -> tuple[str, str, str | None]:
    """(name, title, Hub id) of the set the model was trained on."""
    name = str((config.get("dataset") or {}).get("dataset", "mnist"))
    title = BUILTIN_SETS[name].title if name in BUILTIN_SETS else name
    return name, title, HUB_DATASETS.get(name)


def _scores(scores: dict[str, Any] | None, title: str) -> list[tuple[str, str, str, float]]:
    """(key, label, shown value, value) of every headline metric of evaluate.py's results."""
    if not scores:
        return []
    samples = scores["samples"]
    rows = [(m.key, m.label(title, long=True), m.show(samples[m.key]), float(samples[m.key]))
            for m in EVALUATION_ROWS if isinstance(samples.get(m.key), (int, float))]
    nll = scores.get("nll") or {}
    if isinstance(nll.get("bpd"), (int, float)):
        bound = "negative ELBO" if nll.get("bound") == "elbo" else "variational bound"
        rows.append(("bpd", f"NLL bound ({bound}), bits/dim ↓", f"{nll['bpd']:.3f} ± {nll.get('bpd_stderr', 0):.3f}",
                     float(nll["bpd"])))
    return rows


def front_matter(config: dict[str, Any], scores: dict[str, Any] | None) -> dict[str, Any]:
    """The card's YAML front matter, in the Hub's model card keys."""
    family = config["family"]
    name, title, hub_id = _dataset(config)
    conditional = config.get("num_classes") is not None
    pipeline = "unconditional-image-generation" if not conditional else "image-generation"
    meta: dict[str, Any] = {
        "library_name": "ddpm-lit",
        "tags": [*FAMILY_TAGS.get(family, [family]), name.replace("_", "-"), "pytorch", "safetensors",
                 "class-conditional" if conditional else "unconditional-image-generation"],
        "pipeline_tag": pipeline,
    }
    if hub_id:
        meta["datasets"] = [hub_id]
    rows = [row for row in _scores(scores, title) if row[0] in HEADLINE]
    if rows:
        meta["metrics"] = [key for key, *_ in rows]
        meta["model-index"] = [{
            "name": f"ddpm-lit {family} on {title}",
            "results": [{
                "task": {"type": pipeline, "name": "image generation"},
                "dataset": {"name": title, "type": hub_id or name},
                "metrics": [{"type": key, "name": label, "value": round(value, 6)} for key, label, _, value in rows],
            }],
        }]
    return meta


def model_card(config: dict[str, Any], scores: dict[str, Any] | None = None, grid: str | None = None,
               training_config: dict[str, Any] | None = None, repo_id: str | None = None) -> str:
    """README.md of an exported folder with config.json's content ``config``; ``scores``:
    evaluate.py's metrics.json (None: not evaluated); ``grid``: where samples.png comes from
    (None: there is none); ``training_config``: the run's composed Hydra config."""
    family = config["family"]
    name, title, hub_id = _dataset(config)
    where = repo_id or "path/to/this/folder"
    lines = ["---", yaml.safe_dump(front_matter(config, scores), sort_keys=False, allow_unicode=True).rstrip(), "---", ""]
    lines += [f"# {family.upper()} on {title}", ""]
    lines += [f"{config.get('description') or family.upper()}, trained with ddpm-lit on {title}: "
              f"{config['image_shape'][1]}×{config['image_shape'][2]} images, "
              + (f"{config['num_classes']} classes" if config.get("num_classes") else "unconditional")
              + (", exponential moving average (EMA) of the weights." if config.get("ema_weights") else ", the trained weights (no EMA)."),
              ""]
    if grid:
        lines += [f"![samples]({GRID})", "", f"*{grid[0].upper()}{grid[1:]}.*", ""]
    lines += ["## Use", "", "```python", "import torch", "import ddpm_lit", "",
              f'model = ddpm_lit.load_pretrained("{where}")  # no Lightning, no Hydra',
              "images = model.sample(16, generator=torch.Generator().manual_seed(0))  # (16, C, H, W) in [-1, 1]"]
    if config.get("num_classes"):
        lines += [f"images = model.sample(8, class_labels=torch.full((8,), 3))  # class {(config.get('class_names') or ['3'] * 4)[3]!r}"
                  + (", classifier-free guidance w = model.guidance_scale" if family == "ddpm" else "")]
    if family == "ddpm":
        lines += ['images = model.sample(16, sampler="dpmpp_2m", steps=20)  # 20 network calls instead of T']
    lines += ["```", ""]
    if family == "ddpm":
        lines += ["Or with diffusers' schedulers (`scheduler_config.json`; which of them match which sampler of "
                  "ddpm-lit, and how closely, is in the project's docs/diffusers.md):", "", "```python",
                  "from diffusers import DDPMScheduler", "",
                  f'scheduler = DDPMScheduler.from_pretrained("{where}")', "```", "",
                  f"`python sample.py ckpt_path={where}` and `python evaluate.py ckpt_path={where}` take the folder too.", ""]
    rows = _scores(scores, title)
    lines += ["## Scores", ""]
    if rows:
        src = scores["source"]
        sampler = src.get("sampler")
        if isinstance(sampler, dict):  # {"name": "dpmpp_2m", "steps": 20, ...}: the options given
            options = [f"{k} {v}" for k, v in sampler.items() if k != "name" and v is not None]
            sampler = ", ".join([str(sampler.get("name")), *options])
        lines += [f"evaluate.py on {int(scores['samples']['num_images'])} samples"
                  + (f" (sampler {sampler})" if sampler else "")
                  + f", against {src.get('reference_size')} {title} training images; {src.get('classifier')}"
                  + (f"; Inception: {src['inception']}" if src.get("inception") else "; no Inception (standard) FID")
                  + ".", "", "| metric | value |", "|---|---|"]
        lines += [f"| {label} | {shown} |" for _, label, shown, _ in rows]
    else:
        lines += ["Not evaluated when exported: `python evaluate.py ckpt_path=<its checkpoint>`, then `export.py` again, "
                  "shows evaluate.py's scores here."]
    lines += ["", "## Data", ""]
    dataset = config.get("dataset") or {}
    lines += [f"{title}" + (f" ([{hub_id}](https://huggingface.co/datasets/{hub_id}))" if hub_id else "")
              + (f", classes: {', '.join(config['class_names'])}" if config.get("class_names") else "") + ".",
              ""]
    if dataset and set(dataset) - {"dataset"}:
        lines += ["```json", json.dumps(dataset, indent=2), "```", ""]
    lines += ["## Training", ""]
    training = config.get("training")
    if training:
        lines += ["```bash", training["command"], "```", ""]
        facts = []
        if "epochs" in training:
            facts.append(f"{training['epochs']} epochs")
        if "global_step" in training:
            facts.append(f"{training['global_step']} optimizer steps")
        if "fit_seconds" in training:
            facts.append(f"{training['fit_seconds'] / 60:.1f} minutes of training")
        if "params" in training:
            facts.append(f"{training['params'] / 1e6:.2f} M parameters")
        if facts:
            sentence = ", ".join(facts)
            lines += [sentence[0].upper() + sentence[1:] + ".", ""]
    else:
        lines += ["The checkpoint was not in a run dir of train.py: its command is not known.", ""]
    if training_config:
        lines += ["<details><summary>The composed config (Hydra)</summary>", "", "```yaml",
                  yaml.safe_dump(training_config, sort_keys=False).rstrip(), "```", "", "</details>", ""]
    lines += ["## Files", "", "| file | what |", "|---|---|",
              "| `model.safetensors` | the weights" + (" (EMA)" if config.get("ema_weights") else "") + " |",
              "| `config.json` | the networks' classes and arguments, the diffusion process, sampling defaults, data set |"]
    if family == "ddpm":
        lines.append("| `scheduler_config.json` | the process in diffusers' `DDPMScheduler` format |")
    if grid:
        lines.append(f"| `{GRID}` | the grid above |")
    return "\n".join(lines) + "\n"


CARD_STYLE = """
body { font: 15px/1.55 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1f2328; margin: 0; }
main { display: flex; gap: 32px; max-width: 1180px; margin: 24px auto; padding: 0 24px; }
article { flex: 1; min-width: 0; } aside { width: 300px; font-size: 13px; }
aside pre { background: #f6f8fa; border: 1px solid #d0d7de; border-radius: 6px; padding: 10px; white-space: pre-wrap; }
h1 { border-bottom: 1px solid #d8dee4; padding-bottom: .3em; } h2 { border-bottom: 1px solid #d8dee4; padding-bottom: .3em; }
table { border-collapse: collapse; } td, th { border: 1px solid #d0d7de; padding: 6px 13px; }
pre { background: #f6f8fa; padding: 12px; border-radius: 6px; overflow: auto; } code { font-size: 85%; }
img { max-width: 100%; image-rendering: pixelated; }
"""


def card_html(card: str, folder: Path) -> str:
    """The model card ``card`` (README.md's text) rendered as markdown, its front matter beside it as
    the Hub shows metadata, images read from ``folder``; for a screenshot (``reporting.screenshot``)."""
    import markdown

    front, body = "", card
    if card.startswith("---\n"):
        _, front, body = card.split("---\n", 2)
    content = markdown.markdown(body, extensions=["tables", "fenced_code", "md_in_html"])
    return (f'<!doctype html><html><head><meta charset="utf-8"><base href="{folder.resolve().as_uri()}/">'
            f"<style>{CARD_STYLE}</style></head><body data-drawn=\"1\"><main><article>{content}</article>"
            f"<aside><b>README.md metadata</b><pre>{html.escape(front)}</pre></aside></main></body></html>")
