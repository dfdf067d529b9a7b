"""Image files of generated samples: PNG grids and the ``.npz`` layout every scorer reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ddpm_lit.core.pixels import to_pixel_levels
from ddpm_lit.errors import DataError, first_line
from ddpm_lit.io import atomic_write


def save_grid(unit: torch.Tensor, path: Path, nrow: int = 8) -> torch.Tensor:
    """Save images (N, C, H, W) in [0, 1] as a PNG grid ``nrow`` images wide at ``path``; return the grid."""
    from torchvision.utils import (  # torchvision's import takes seconds; only grids need it
        make_grid,
        save_image,
    )

    grid = make_grid(unit.cpu(), nrow=nrow, padding=2, pad_value=1.0)
    with atomic_write(path) as f:
        save_image(grid, f, format=path.suffix.lstrip(".") or "png")
    return grid


# ---- samples files ---------------------------------------------------------------------
def save_samples_npz(images: torch.Tensor, path: str | Path, labels: torch.Tensor | None = None) -> Path:
    """Images (N, C, H, W) in [−1, 1] -> ``arr_0`` uint8 (N, H, W, C), the ADM evaluation layout;
    the class labels of a conditional model's samples, when given, as ``arr_1`` (N,) int64."""
    levels = to_pixel_levels(images.cpu()).to(torch.uint8)
    path = Path(path)
    arrays = {"arr_0": levels.permute(0, 2, 3, 1).numpy()}
    if labels is not None:
        arrays["arr_1"] = torch.as_tensor(labels).long().cpu().numpy()
    with atomic_write(path) as f:
        np.savez(f, **arrays)
    return path


def load_samples_npz(path: str | Path, image_size: int = 28) -> torch.Tensor:
    """``arr_0`` of an .npz, uint8 (N, H, W, 1) or (N, H, W) -> (N, 1, H, W) in [−1, 1]."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"samples file {path} does not exist")
    try:
        f = np.load(path, allow_pickle=False)  # an object array (a pickle) is refused, never run
    except Exception as e:  # not numpy's format at all
        raise DataError(f"{path} is not a readable .npz file: {e}") from None
    if not isinstance(f, np.lib.npyio.NpzFile):
        raise DataError(f"{path} is a single array, not an .npz archive with `arr_0` (save it with np.savez)")
    with f:
        if "arr_0" not in f:
            raise DataError(f"{path} has no array `arr_0` (it has {sorted(f.files)})")
        try:
            arr = f["arr_0"]
        except Exception as e:  # truncated member, object array, foreign zip entry
            raise DataError(f"{path}: arr_0 is not a readable array: {first_line(e)}") from None
    if arr.dtype != np.uint8:
        raise DataError(f"{path}: arr_0 must be uint8 pixel levels 0-255, got {arr.dtype}")
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4 or arr.shape[1:] != (image_size, image_size, 1) or len(arr) == 0:
        raise DataError(
            f"{path}: arr_0 must have shape (N, {image_size}, {image_size}, 1) with N ≥ 1, got {arr.shape}"
        )
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 127.5 - 1.0
