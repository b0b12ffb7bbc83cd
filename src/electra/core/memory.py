"""Refusing model sizes that cannot fit, before anything is allocated.

The models are first built on the ``meta`` device (shapes only, no memory); their parameters, with gradients and
two Adam moments, need 16 bytes each in float32.  Where the caller says how one training batch enters the models,
that forward also runs on the meta device and the outputs of every leaf module are counted (backward keeps about
that much; it is a lower bound, so a refusal is never wrong).  Sizes beyond what the device has free are a clear
error instead of the allocator's out-of-memory traceback (or the operating system's OOM killer) minutes later.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from electra.errors import UserError

BYTES_PER_PARAMETER = 16   # float32 weight + gradient + Adam's two moments


def free_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import os

    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def activation_bytes(modules: dict[str, torch.nn.Module], forward: Callable[[dict], None]) -> int:
    """Bytes of every leaf module's output tensors while ``forward(modules)`` runs (on meta tensors)."""
    total = 0

    def count(module, inputs, output) -> None:
        nonlocal total
        for t in output if isinstance(output, (tuple, list)) else (output,):
            if isinstance(t, torch.Tensor):
                total += t.numel() * t.element_size()

    handles = [m.register_forward_hook(count) for module in modules.values() for m in module.modules()
               if not any(True for _ in m.children())]
    try:
        with torch.device("meta"):
            forward(modules)
    finally:
        for h in handles:
            h.remove()
    return total


def require_fits(build: Callable[[], dict[str, torch.nn.Module]], device: torch.device, what: str,
                 forward: Callable[[dict], None] | None = None, extra_bytes: int = 0) -> int:
    """Build the modules on the meta device, count their distinct parameters and refuse them if their training
    state — and, with ``forward`` (one training batch through the meta modules) plus ``extra_bytes`` (what
    no module outputs, e.g. attention probabilities), its activations — cannot fit in ``device``'s free memory;
    return the parameter count."""
    with torch.device("meta"):
        modules = build()
    activations = extra_bytes + (activation_bytes(modules, forward) if forward is not None else 0)
    seen, count = set(), 0
    for module in modules.values():
        for p in module.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                count += p.numel()
    state, free = count * BYTES_PER_PARAMETER, free_bytes(device)
    if state > free:
        raise UserError(f"{what} has {count / 1e6:,.0f}M parameters: about {state / 2**30:,.1f} GiB with gradients "
                        f"and Adam state, but {device} has {free / 2**30:,.1f} GiB free; choose smaller sizes")
    if state + activations > free:
        raise UserError(f"{what} needs at least {(state + activations) / 2**30:,.1f} GiB to train a batch "
                        f"({activations / 2**30:,.1f} GiB of it activations), but {device} has {free / 2**30:,.1f} "
                        f"GiB free; choose a smaller batch size (or grad_accum) or smaller sizes")
    return count
