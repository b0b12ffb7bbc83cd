"""Image grids and strips written as PNG with Pillow, atomically (``core.files``)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from electra.core.files import atomic_file


def make_grid(images: torch.Tensor | np.ndarray, ncol: int | None = None, pad: int = 2, scale: int = 1) -> np.ndarray:
    """uint8 N×28×28 → one uint8 picture with the images in rows of ``ncol`` on a grey frame."""
    images = np.asarray(images, dtype=np.uint8)
    n, h, w = images.shape
    ncol = ncol or max(1, math.ceil(math.sqrt(n)))
    nrow = math.ceil(n / ncol)
    grid = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad), 96, dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, ncol)
        grid[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = images[i]
    if scale > 1:
        grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
    return grid


def save_png(array: np.ndarray, path: Path) -> Path:
    from PIL import Image

    path = Path(path)
    with atomic_file(path) as tmp:
        Image.fromarray(np.asarray(array, dtype=np.uint8), mode="L").save(tmp, format="PNG")
    return path


def save_grid(images, path: Path, ncol: int | None = None, scale: int = 2) -> Path:
    return save_png(make_grid(images, ncol=ncol, scale=scale), path)
