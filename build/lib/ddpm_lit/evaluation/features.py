"""Features and FID statistics of image sets, cached on disk by content.

A cache entry is keyed by a hash of the images' 8-bit pixels and the extractor's identity
(network weights and preprocessing), so a change of data, resize or network never reuses a
stale entry and the same images are never passed through a network twice. Entries are written
to a temporary file and renamed, so an interrupted run leaves no half-written cache.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ddpm_lit.core.pixels import to_pixel_levels
from ddpm_lit.internals import fid_from_sufficient_statistics
from ddpm_lit.io import atomic_write, only_one_at_a_time

log = logging.getLogger(__name__)


def images_key(images: torch.Tensor) -> str:
    """A hash of images (N, C, H, W) in [−1, 1] by their 8-bit pixel levels."""
    levels = to_pixel_levels(images).to(torch.uint8)
    digest = hashlib.sha256(str(tuple(levels.shape)).encode())
    digest.update(levels.cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:20]


def cached(cache_dir: str | Path | None, name: str, key: str, compute: Callable[[], Any]) -> Any:
    """``compute()``, or its value saved earlier under ``cache_dir/name-key.pt``."""
    if cache_dir is None:
        return compute()
    path = Path(cache_dir) / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:20]}.pt"
    # Two processes after the same entry take turns: one computes it, the other reads it.
    with only_one_at_a_time(path, lambda: log.info("another process is computing %s; waiting", path)):
        if path.is_file():
            try:
                value = torch.load(path, map_location="cpu", weights_only=True)
                log.info("using cached %s (%s)", name, path)
                return value
            except Exception as e:  # unreadable (e.g. a disk filled up): compute it again
                log.warning("cache entry %s is unreadable (%s); recomputing it", path, e)
        value = compute()
        with atomic_write(path) as f:
            torch.save(value, f)
    return value


def batched_features(
    extractor: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    batch_size: int,
    device: torch.device | str = "cpu",
    desc: str | None = None,
) -> torch.Tensor:
    """``extractor`` over images (N, C, H, W) in batches, with a progress bar when ``desc`` is given: (N, D) on the CPU."""
    out = []
    with torch.no_grad():
        for i in tqdm(range(0, len(images), batch_size), desc=desc, unit="batch", disable=desc is None):
            out.append(extractor(images[i : i + batch_size].to(device)).float().cpu())
    return torch.cat(out)


def fid_statistics(features: torch.Tensor) -> dict[str, torch.Tensor]:
    """The sufficient statistics torchmetrics' FID keeps: feature sum, Σ f fᵀ and count, in float64."""
    f = features.double()
    return {"sum": f.sum(0), "cov_sum": f.T @ f, "n": torch.tensor(len(f))}


def fid_from_statistics(real: dict[str, torch.Tensor], fake: dict[str, torch.Tensor]) -> float:
    """Fréchet distance between two sets of ``fid_statistics``, computed by torchmetrics.

    With statistics complete here, no cross-process sync: under DDP only rank 0 calls this."""
    return fid_from_sufficient_statistics(real, fake)
