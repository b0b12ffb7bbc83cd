"""Refusing model sizes that cannot fit, before anything is allocated.

The models are first built on the ``meta`` device (shapes only, no memory); their parameters, with gradients and
two Adam moments, need 16 bytes each in float32.  Sizes beyond what the device has free are a clear error instead
of the allocator's out-of-memory traceback (or the operating system's OOM killer) minutes later.
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


def require_fits(build: Callable[[], dict[str, torch.nn.Module]], device: torch.device, what: str) -> int:
    """Build the modules on the meta device, count their distinct parameters and refuse them if their training
    state cannot fit in ``device``'s free memory; return the parameter count."""
    with torch.device("meta"):
        modules = build()
    seen, count = set(), 0
    for module in modules.values():
        for p in module.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                count += p.numel()
    need, free = count * BYTES_PER_PARAMETER, free_bytes(device)
    if need > free:
        raise UserError(f"{what} has {count / 1e6:,.0f}M parameters: about {need / 2**30:,.1f} GiB with gradients "
                        f"and Adam state, but {device} has {free / 2**30:,.1f} GiB free; choose smaller sizes")
    return count
