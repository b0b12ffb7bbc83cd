"""``electra image export RUN --onnx g.onnx``: a run's sampling generator as an ONNX model.

Inputs ``noise`` (float32, N × noise_dim) and, for a conditional run, ``label`` (int64, N); output ``images``
(uint8, N × 28 × 28), the same pixels ``electra image sample`` writes.  The batch size is free.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from electra.core.files import write_json
from electra.core.onnx_export import OPSET, export_onnx, require_onnx
from electra.image.data import to_uint8


class ImagesFromNoise(nn.Module):
    """Noise (and a class) → uint8 images: the generator in eval mode with the one-hot and the pixel mapping."""

    def __init__(self, generator: nn.Module, classes: int) -> None:
        super().__init__()
        self.generator, self.classes = generator, classes

    def forward(self, noise: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        if self.classes:
            noise = torch.cat([noise, nn.functional.one_hot(label, self.classes).to(noise.dtype)], dim=1)
        return to_uint8(self.generator(noise))


def export_generator(run_dir: str | Path, out: str | Path) -> dict:
    """Write the run's sampler (the EMA generator when the run keeps one) to ``out``; return what was written."""
    from electra.image.train import classes, load_run

    require_onnx()
    system = load_run(run_dir)
    cfg = system.config
    k = classes(cfg)
    wrapper = ImagesFromNoise(system.sampler, k)
    example = (torch.randn(2, cfg.noise_dim, device="cpu"),) + ((torch.tensor([0, 1], device="cpu"),) if k else ())
    names = ["noise"] + (["label"] if k else [])
    path = export_onnx(wrapper, example, names, ["images"], {n: {0: "batch"} for n in names}, out)
    info = {"onnx": str(path), "opset": OPSET, "noise_dim": cfg.noise_dim, "classes": k,
            "inputs": {"noise": f"float32 [batch, {cfg.noise_dim}]", **({"label": "int64 [batch]"} if k else {})},
            "outputs": {"images": "uint8 [batch, 28, 28]"}, "run": str(run_dir)}
    write_json(path.with_suffix(".json"), info)
    return info
