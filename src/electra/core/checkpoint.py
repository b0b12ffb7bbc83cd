"""Checkpoints: tensors in safetensors, everything else in a small JSON file, written atomically.

A checkpoint is a folder ``checkpoints/last`` holding ``model.safetensors`` (every module's state, keys prefixed by
module name), ``optimizer.safetensors`` + the optimizers' scalar state in ``state.json``, and the RNG states.
It is written into a temporary folder and renamed into place (``core.files.atomic_folder``), so a crash never
leaves a damaged checkpoint.
Nothing is ever unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from electra.core.files import atomic_folder, old_folder
from electra.errors import UserError

LAST = "last"


def flatten_state(modules: dict[str, torch.nn.Module]) -> dict[str, torch.Tensor]:
    """Every module's state under ``module.`` prefixes.  Tensors shared between keys (tied or shared embeddings)
    are stored once per key — safetensors refuses aliases — and re-shared by the model on load."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, m in modules.items():
        for k, v in m.state_dict().items():
            v = v.detach()
            ptr = v.untyped_storage().data_ptr() if v.numel() else id(v)
            out[f"{name}.{k}"] = v.clone().contiguous() if ptr in seen else v.contiguous()
            seen.add(ptr)
    return out


def load_modules(modules: dict[str, torch.nn.Module], tensors: dict[str, torch.Tensor], source: Path) -> None:
    """Load prefixed tensors into modules; any missing key or shape mismatch is a UserError naming the checkpoint."""
    for name, module in modules.items():
        prefix = f"{name}."
        state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        expected = module.state_dict()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        bad_shape = [k for k in expected if k in state and state[k].shape != expected[k].shape]
        if missing or unexpected or bad_shape:
            detail = (f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}" if unexpected
                      else f"shape of {bad_shape[0]} is {tuple(state[bad_shape[0]].shape)}, "
                           f"model wants {tuple(expected[bad_shape[0]].shape)}")
            raise UserError(f"checkpoint {source} does not fit the configured {name} ({detail}); "
                            f"it was made by another model or config")
        module.load_state_dict(state)


def _optimizer_split(opt: torch.optim.Optimizer, name: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {"param_groups": sd["param_groups"], "state": {}}
    for pid, pstate in sd["state"].items():
        entry = {}
        for k, v in pstate.items():
            if torch.is_tensor(v):
                tensors[f"{name}.{pid}.{k}"] = v.detach().contiguous()
                entry[k] = "tensor"
            else:
                entry[k] = v
        scalars["state"][str(pid)] = entry
    return tensors, scalars


def _like_param(saved: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """Saved state laid out like its parameter (safetensors stores contiguous tensors; a channels-last parameter
    with contiguous Adam moments would make the fused kernel pair the wrong elements)."""
    if saved.shape != param.shape:
        return saved
    return torch.empty_like(param, dtype=saved.dtype).copy_(saved)


def _optimizer_join(opt: torch.optim.Optimizer, name: str, tensors: dict[str, torch.Tensor], scalars: dict) -> None:
    params = [p for g in opt.param_groups for p in g["params"]]
    state = {}
    for pid, entry in scalars["state"].items():
        state[int(pid)] = {k: (_like_param(tensors[f"{name}.{pid}.{k}"], params[int(pid)]) if v == "tensor" else v)
                           for k, v in entry.items()}
    opt.load_state_dict({"state": state, "param_groups": scalars["param_groups"]})


def rng_state() -> dict[str, torch.Tensor]:
    return {"rng.torch": torch.get_rng_state()}


def save_checkpoint(run_dir: Path, modules: dict[str, torch.nn.Module], optimizers: dict[str, torch.optim.Optimizer],
                    state: dict[str, Any]) -> Path:
    """Write ``run_dir/checkpoints/last`` atomically and return its path."""
    final = Path(run_dir) / "checkpoints" / LAST
    with atomic_folder(final) as tmp:
        save_file(flatten_state(modules), str(tmp / "model.safetensors"))
        opt_tensors: dict[str, torch.Tensor] = dict(rng_state())
        opt_scalars = {}
        for name, opt in optimizers.items():
            t, s = _optimizer_split(opt, name)
            opt_tensors.update(t)
            opt_scalars[name] = s
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        payload = {"format": "electra-checkpoint-1", **state, "optimizers": opt_scalars}
        (tmp / "state.json").write_text(json.dumps(payload, indent=1), encoding="utf-8")
    return final


def find_checkpoint(run_dir: Path) -> Path:
    final = Path(run_dir) / "checkpoints" / LAST
    for folder in (final, old_folder(final)):  # the old one survives only a crash between the swap's two renames
        if (folder / "state.json").is_file():
            return folder
    raise UserError(f"no checkpoint in {run_dir}; pass a run folder written by 'electra … train'")


def has_checkpoint(run_dir: Path) -> bool:
    try:
        find_checkpoint(run_dir)
    except UserError:
        return False
    return True


def read_checkpoint_state(ckpt: Path) -> dict[str, Any]:
    try:
        return json.loads((ckpt / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"checkpoint state {ckpt / 'state.json'} is unreadable ({exc}); the run folder is damaged")


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise UserError(f"missing checkpoint file {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"checkpoint file {path} is corrupt ({exc})") from None


def load_weights(ckpt: Path, modules: dict[str, torch.nn.Module]) -> None:
    load_modules(modules, read_tensors(ckpt / "model.safetensors"), ckpt)


def load_checkpoint(ckpt: Path, modules: dict[str, torch.nn.Module],
                    optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, Any]:
    """Restore modules, optimizers and the global RNG in place; return the JSON state (step, …)."""
    state = read_checkpoint_state(ckpt)
    load_weights(ckpt, modules)
    tensors = read_tensors(ckpt / "optimizer.safetensors")
    for name, opt in optimizers.items():
        if name not in state.get("optimizers", {}):
            raise UserError(f"checkpoint {ckpt} has no optimizer '{name}'; it was made by another objective")
        _optimizer_join(opt, name, tensors, state["optimizers"][name])
    torch.set_rng_state(tensors["rng.torch"])
    return state
