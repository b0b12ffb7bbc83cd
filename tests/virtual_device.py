"""The CPU acting as a second device, so device placement is tested on a machine without a GPU.

Inside ``VirtualDevice()``, a tensor "on the device" is a wrapper around a real CPU tensor that reports the device
``meta`` (the one non-CPU device every torch build has, with autograd support).  Every operation runs for real on
the wrapped CPU data — so whole HF models, autograd, optimizers, ``.item()`` and boolean indexing work, unlike
fake ``cuda`` tensors or the bare ``meta`` device — but an operation that mixes a device tensor with a CPU tensor
of one or more dimensions raises ``DeviceMismatch``, exactly where CUDA would raise "Expected all tensors to be on
the same device".  As on CUDA, 0-dim CPU tensors may mix (torch treats them as scalars) and ``copy_`` may cross.

Creating on the device: ``torch.zeros(..., device=DEVICE)``, ``x.to(DEVICE)``, ``module.to(DEVICE)``; leaving it:
``x.cpu()`` / ``x.to("cpu")``.  ``x.numpy()`` on a device tensor fails, as on CUDA.

What it cannot see: CUDA-only kernels and their numerics (fused/flash attention, bf16 tensor cores, fp16 with a
GradScaler, which the project allows on CUDA only), host-device synchronisation costs, NCCL collectives, and code
that branches on ``device.type == "cuda"`` (here the type is ``meta``).
"""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

DEVICE = torch.device("meta")
_CROSSING = {torch.ops.aten._to_copy.default, torch.ops.aten.copy_.default}


class DeviceMismatch(RuntimeError):
    """A device tensor met a CPU tensor in one operation."""


class OnDevice(torch.Tensor):
    """A CPU tensor that says it lives on ``DEVICE``."""

    @staticmethod
    def __new__(cls, elem: torch.Tensor):
        out = torch.Tensor._make_wrapper_subclass(cls, elem.size(), strides=elem.stride(),
                                                  storage_offset=elem.storage_offset(), dtype=elem.dtype,
                                                  layout=elem.layout, device=DEVICE,
                                                  requires_grad=elem.requires_grad)
        out.elem = elem
        return out

    def __repr__(self) -> str:
        return f"OnDevice({self.elem!r})"

    def __tensor_flatten__(self):
        return ["elem"], None

    @staticmethod
    def __tensor_unflatten__(inner, meta, outer_size, outer_stride):
        return OnDevice(inner["elem"])

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        return _run(func, args, kwargs or {})


def _names_device(kwargs: dict) -> bool:
    return kwargs.get("device") is not None and torch.device(kwargs["device"]).type == DEVICE.type


def _run(func, args, kwargs):
    on_device, host = False, []

    def look(x):
        nonlocal on_device
        if isinstance(x, OnDevice):
            on_device = True
        elif isinstance(x, torch.Tensor) and x.dim() > 0 and x.device.type == "cpu":
            host.append(x)
        return x

    tree_map(look, (args, kwargs))
    if on_device and host and func not in _CROSSING:
        raise DeviceMismatch(f"{func} mixes a device tensor with a CPU tensor of shape {tuple(host[0].shape)}")
    _State.ops += on_device
    to_device = _names_device(kwargs)
    if to_device:
        kwargs = {**kwargs, "device": torch.device("cpu")}
    unwrap = lambda x: x.elem if isinstance(x, OnDevice) else x  # noqa: E731
    out = func(*tree_map(unwrap, args), **tree_map(unwrap, kwargs))
    if func is torch.ops.aten.copy_.default:
        return args[0]
    if func is torch.ops.aten._to_copy.default and kwargs.get("device") is not None and not to_device:
        return out   # .cpu() / .to("cpu"): the result lives on the host
    if not (on_device or to_device):
        return out
    return tree_map(lambda x: OnDevice(x) if type(x) is torch.Tensor else x, out)


class _State:
    ops = 0   # operations that ran on the device since the mode was entered


class VirtualDevice(TorchDispatchMode):
    """Within this mode, factories and ``.to`` naming ``DEVICE`` make device tensors; ``ops`` counts the
    operations that ran on the device, so a test can tell that the device was really used."""

    def __enter__(self):
        _State.ops = 0
        return super().__enter__()

    @property
    def ops(self) -> int:
        return _State.ops

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return _run(func, args, kwargs or {})
