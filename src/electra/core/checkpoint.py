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

from electra.core.files import atomic_folder, old_folder, sha256_file
from electra.errors import UserError

LAST = "last"
TENSOR_FILES = ("model.safetensors", "optimizer.safetensors")


class NonFiniteError(UserError):
    """A loss, gradient or weight turned NaN or inf: training cannot go on from these weights."""


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
    weights = flatten_state(modules)
    require_finite(weights, "checkpoint")
    with atomic_folder(final) as tmp:
        save_file(weights, str(tmp / "model.safetensors"))
        opt_tensors: dict[str, torch.Tensor] = dict(rng_state())
        opt_scalars = {}
        for name, opt in optimizers.items():
            t, s = _optimizer_split(opt, name)
            opt_tensors.update(t)
            opt_scalars[name] = s
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        checksums = {name: sha256_file(tmp / name) for name in TENSOR_FILES}
        payload = {"format": "electra-checkpoint-1", **state, "optimizers": opt_scalars, "sha256": checksums}
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
        state = json.loads((ckpt / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"checkpoint state {ckpt / 'state.json'} is unreadable ({exc}); the run folder is "
                        f"damaged") from None
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        raise UserError(f"checkpoint state {ckpt / 'state.json'} holds no step; the run folder is damaged")
    return state


def require_finite(tensors: dict[str, torch.Tensor], what: str) -> None:
    """Refuse to write NaN or inf weights anywhere a later run or user would load them."""
    floats = [(k, t) for k, t in tensors.items() if t.is_floating_point() and t.numel()]
    if not floats:
        return
    finite = torch.stack([t.isfinite().all() for _, t in floats]).cpu()   # one sync for all tensors
    if not bool(finite.all()):
        bad = [k for (k, _), ok in zip(floats, finite.tolist()) if not ok]
        raise NonFiniteError(f"not writing the {what}: {len(bad)} tensors hold NaN or inf (e.g. {bad[0]})")


def read_tensors(path: Path, sha256: str | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; with ``sha256``, only if the file's bytes still have that checksum."""
    if not path.is_file():
        raise UserError(f"missing checkpoint file {path}")
    if sha256 is not None and sha256_file(path) != sha256:
        raise UserError(f"checkpoint file {path} does not match the checksum recorded when it was written "
                        f"(changed or damaged bytes); the run folder is damaged")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"checkpoint file {path} is corrupt ({exc})") from None


def _checked(ckpt: Path, state: dict, name: str) -> dict[str, torch.Tensor]:
    return read_tensors(ckpt / name, state.get("sha256", {}).get(name))


def load_weights(ckpt: Path, modules: dict[str, torch.nn.Module]) -> None:
    load_modules(modules, _checked(ckpt, read_checkpoint_state(ckpt), "model.safetensors"), ckpt)


def load_checkpoint(ckpt: Path, modules: dict[str, torch.nn.Module],
                    optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, Any]:
    """Restore modules, optimizers and the global RNG in place; return the JSON state (step, …)."""
    state = read_checkpoint_state(ckpt)
    load_modules(modules, _checked(ckpt, state, "model.safetensors"), ckpt)
    tensors = _checked(ckpt, state, "optimizer.safetensors")
    for name, opt in optimizers.items():
        if name not in state.get("optimizers", {}):
            raise UserError(f"checkpoint {ckpt} has no optimizer '{name}'; it was made by another objective")
        _optimizer_join(opt, name, tensors, state["optimizers"][name])
    torch.set_rng_state(tensors["rng.torch"])
    return state
