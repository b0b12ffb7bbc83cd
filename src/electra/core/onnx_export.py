"""Writing a module as an ONNX file with PyTorch's exporter (``torch.export`` based), with dynamic axes.

The optional ``onnx`` extra (``pip install -e '.[onnx]'``) brings the packages the exporter needs (onnx,
onnxscript) and onnxruntime to run the result.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import warnings
from pathlib import Path

import torch

from electra.core.files import atomic_file
from electra.errors import UserError

OPSET = 18   # the exporter's own default opset in torch 2.13; onnxruntime ≥ 1.14 runs it


def require_onnx() -> None:
    try:
        for name in ("onnx", "onnxscript"):
            importlib.import_module(name)
    except ImportError:
        raise UserError("ONNX export needs the onnx extra: pip install -e '.[onnx]'") from None


def export_onnx(module: torch.nn.Module, example: tuple[torch.Tensor, ...], input_names: list[str],
                output_names: list[str], dynamic: dict[str, dict[int, str]], out: str | Path,
                max_sizes: dict[str, int] | None = None) -> Path:
    """Export ``module`` (in eval mode, on the CPU) called on ``example`` to ``out``.  ``dynamic`` names, per input,
    the axes that may change size ({0: "batch"}); ``max_sizes`` caps a named axis (a text model's positions)."""
    require_onnx()
    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise UserError(f"--onnx {out}: give a file name ending in .onnx")
    dims: dict[str, torch.export.Dim] = {}
    for axes in dynamic.values():
        for name in axes.values():
            dims.setdefault(name, torch.export.Dim(name, max=(max_sizes or {}).get(name)))
    shapes = tuple({axis: dims[name] for axis, name in dynamic.get(n, {}).items()} or None for n in input_names)
    module = module.eval().cpu()
    out.parent.mkdir(parents=True, exist_ok=True)
    chatter = io.StringIO()
    with atomic_file(out) as tmp, torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(chatter), \
            _quiet_loggers():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, example, input_names=input_names, output_names=output_names,
                                    dynamic_shapes=shapes, opset_version=OPSET, dynamo=True, verbose=False,
                                    external_data=False)
        program.save(str(tmp))
    return out


@contextlib.contextmanager
def _quiet_loggers():
    """The exporter logs each stage and every missing optional op library (torchvision) at WARNING."""
    names = ("torch.onnx", "torch.export", "torch._export", "onnxscript", "torch.fx.experimental.symbolic_shapes")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
