"""The tables of docs/sampling.md from ``python -m ddpm_lit.compare`` output folders (results.json):

    python scripts/sampler_table.py outputs/sampler_study outputs/sampler_study_seed1 ...

The first folder gives the table of every cell against its 1000-step ancestral chain (ddpm:1000);
all of them together give each 20-step sampler's MNIST-FID over the seeds, against the chains of
the seeds that have one.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def load(folder: str) -> dict:
    return json.loads((Path(folder) / "results.json").read_text())


def chain_of(results: dict, model: str) -> float | None:
    cell = results["cells"].get(f"{model}|ddpm|1000")
    return cell["classifier_fid"] if cell else None


def cell_table(results: dict) -> str:
    rows = ["| sampler | steps | MNIST-FID | × 1000-step chain | recall | confident share | NFE/s |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    for cell in sorted(results["cells"].values(), key=lambda c: (c["sampler"], c["steps"])):
        chain = chain_of(results, cell["model"])
        ratio = f"{cell['classifier_fid'] / chain:.2f}" if chain else "–"
        nfe = f"{cell['nfe_per_s']:.0f}" if cell.get("nfe_per_s") else "–"
        rows.append(f"| {cell['sampler']} | {cell['steps']} | {cell['classifier_fid']:.3f} | {ratio} | "
                    f"{cell['recall']:.3f} | {cell['confident_share']:.3f} | {nfe} |")
    return "\n".join(rows)


def seed_table(all_results: list[dict]) -> str:
    by_sampler: dict[str, list[float]] = {}
    chains = [c for c in (chain_of(r, "quick") for r in all_results) if c is not None]
    for results in all_results:
        for cell in results["cells"].values():
            if cell["steps"] == 20:
                by_sampler.setdefault(cell["sampler"], []).append(cell["classifier_fid"])
    chain = statistics.mean(chains) if chains else None
    rows = [f"| 20-step sampler | seeds | MNIST-FID, mean ± sd | × the chain's mean ({len(chains)} seed"
            f"{'s' if len(chains) != 1 else ''}: {chain:.3f}) |" if chain else "| 20-step sampler | seeds | MNIST-FID | |",
            "|---|---:|---:|---:|"]
    for sampler, values in sorted(by_sampler.items(), key=lambda kv: statistics.mean(kv[1])):
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        ratio = f"{statistics.mean(values) / chain:.2f}" if chain else "–"
        rows.append(f"| {sampler} | {len(values)} | {statistics.mean(values):.3f} ± {sd:.3f} | {ratio} |")
    return "\n".join(rows)


def main(folders: list[str]) -> None:
    if not folders:
        sys.exit(__doc__)
    results = [load(f) for f in folders]
    print(f"Seed {results[0]['seed']}, N = {results[0]['num_samples']} per cell:\n")
    print(cell_table(results[0]))
    if len(results) > 1:
        print("\nOver the seeds:\n")
        print(seed_table(results))


if __name__ == "__main__":
    main(sys.argv[1:])
