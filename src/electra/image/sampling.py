"""``sample_run``: draw images from a trained run as a PNG grid, an N×28×28 uint8 .npy, a folder of PNGs, or a
latent-interpolation strip."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from electra.core.files import atomic_file, atomic_folder, fresh_folder
from electra.errors import UserError
from electra.image.pictures import make_grid, save_grid, save_png
from electra.image.conditional import generator_inputs, with_classes
from electra.image.train import class_names, classes, load_run, sample_images


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation: keeps intermediate noise at the norm Gaussian samples have (linear would shrink it)."""
    a_n, b_n = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    omega = torch.acos((a_n * b_n).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b


def requested_labels(run_dir: str | Path, system, n: int, digit: int | None, class_name: str | None,
                     rng: torch.Generator) -> torch.Tensor | None:
    """The class of each of ``n`` samples: ``digit`` / ``class_name`` for all, else uniform; None when the run is
    not conditional (and then neither may be given)."""
    cfg = system.config
    if not classes(cfg):
        if digit is not None or class_name is not None:
            raise UserError(f"{run_dir} is not a conditional run (preset cdcgan / objective cgan): it cannot "
                            f"draw a chosen class")
        return None
    names = class_names(run_dir, cfg)
    if class_name is not None:
        if class_name not in names:
            raise UserError(f"--class {class_name!r} is not one of the run's classes ({', '.join(names[:10])})")
        digit = names.index(class_name)
    if digit is not None:
        if not 0 <= digit < cfg.num_classes:
            raise UserError(f"--digit {digit}: the run has {cfg.num_classes} classes, 0 to {cfg.num_classes - 1}")
        return torch.full((n,), digit, dtype=torch.long, device="cpu")
    return torch.randint(0, cfg.num_classes, (n,), generator=rng, device="cpu")


def sample_run(run_dir: str | Path, n: int, out: str | Path, seed: int = 0, interpolate: bool = False,
               steps: int = 10, digit: int | None = None, class_name: str | None = None) -> Path:
    """Write ``n`` samples (or ``n`` interpolation rows of ``steps`` images) from a run to ``out``; return it.
    A conditional run draws class ``digit`` (or the class named ``class_name``), else classes at random."""
    if n < 1:
        raise UserError(f"--n must be at least 1, got {n}")
    out = Path(out)
    kind = "png" if out.suffix.lower() == ".png" else "npy" if out.suffix.lower() == ".npy" else "dir"
    if kind == "dir" and out.suffix:
        raise UserError(f"--out {out}: use a name ending in .png (grid), .npy (array) or a folder name")
    if interpolate and kind != "png":
        raise UserError("--interpolate writes a picture; give --out ending in .png")
    system = load_run(run_dir)
    rng = torch.Generator().manual_seed(seed)
    dim, k = system.config.noise_dim, classes(system.config)
    if interpolate:
        ends = torch.randn(n, 2, dim, generator=rng, device="cpu")
        labels = requested_labels(run_dir, system, n, digit, class_name, rng)
        t = torch.linspace(0, 1, steps, device="cpu").view(1, steps, 1)
        z = slerp(ends[:, :1], ends[:, 1:], t).reshape(n * steps, dim)
        if labels is not None:   # each row walks between two noises within one class
            z = with_classes(z, labels.repeat_interleave(steps), k)
        images = sample_images(system.sampler, z)
        return save_png(make_grid(images.numpy(), ncol=steps, scale=2), out)
    labels = requested_labels(run_dir, system, n, digit, class_name, rng)
    z = generator_inputs(n, dim, k, rng, labels)
    images = sample_images(system.sampler, z).numpy()
    out.parent.mkdir(parents=True, exist_ok=True)
    if kind == "png":
        return save_grid(images, out, ncol=min(n, max(1, math.ceil(math.sqrt(n)))))
    if kind == "npy":
        with atomic_file(out) as tmp:
            np.save(tmp, images)
        return out
    width = len(str(n - 1))
    with atomic_folder(fresh_folder(out)) as tmp:
        for i, img in enumerate(images):
            save_png(img, tmp / f"{i:0{width}d}.png")
    return out
