"""Helpers the benchmark scripts share: a matmul peak, FLOP counting from layer shapes, medians, peak RSS, result
cells."""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def matmul_peak_gflops(n: int = 1024, repeats: int = 20) -> float:
    """Best-of-3 float32 GEMM rate on this machine, measured now (the 'peak' the MFU figures divide by)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = max(best, 2 * n**3 * repeats / (time.perf_counter() - t) / 1e9)
    return best


def forward_macs(module: nn.Module, example: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass for one example, from Conv/ConvTranspose/Linear shapes."""
    total = 0

    def hook(m, inputs, output):
        nonlocal total
        if isinstance(m, nn.Linear):
            total += m.in_features * m.out_features * (output.numel() // output.shape[-1]) // output.shape[0]
        elif isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1] * m.in_channels // m.groups
            total += k * output[0].numel()
        elif isinstance(m, nn.ConvTranspose2d):
            k = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            total += k * inputs[0][0].numel()

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, (nn.Linear, nn.Conv2d,
                                                                                       nn.ConvTranspose2d))]
    was = module.training
    module.eval()
    with torch.no_grad():
        module(example)
    module.train(was)
    for h in handles:
        h.remove()
    return total


def median(values):
    return statistics.median(values)


def peak_rss_mb() -> float:
    """This process's peak resident memory.  VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork + exec,
    so a child started by a large parent would report the parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class TimedSlices:
    """Runs a plan's steps in slices (one per benchmark round) through the core Trainer, without checkpoints;
    each call returns the slice's seconds.  The plan should have a huge total_steps and NO_CHECKPOINTS."""

    def __init__(self, plan, run_dir, device=None) -> None:
        from electra.core.trainer import Trainer

        self.trainer = Trainer(plan, Path(run_dir), device, progress=False)

    def __call__(self, steps: int, synchronize=lambda: None) -> float:
        self.trainer.stop_at = self.trainer.step + steps
        synchronize()
        t = time.perf_counter()
        self.trainer.run()
        synchronize()
        return time.perf_counter() - t


def say(*args):
    print(*args, flush=True, file=sys.stdout)


def write_cell(path: Path, values: dict, echo: bool = True) -> dict:
    """Write one finished cell's JSON by rename, so a benchmark stopped mid-write never leaves a half file that the
    next run would read as done."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(values, indent=1) + "\n")
    partial.replace(path)
    if echo:
        say(f"cell {path.stem}: {json.dumps(values)[:300]}")
    return values
