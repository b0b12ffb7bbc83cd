"""Finding and loading HF ELECTRA models and their tokenizers from run folders or plain HF directories."""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

from electra.errors import UserError


def resolve_model_dir(model: str | Path, part: str) -> Path:
    """A run folder → its ``part`` subfolder (discriminator/generator/mlm); an HF directory → itself."""
    path = Path(model)
    if not path.exists():
        raise UserError(f"model {path} does not exist; give a run folder or an HF ELECTRA {part} directory")
    candidates = [path / part, path] if part != "discriminator" else [path / "discriminator", path / "mlm", path]
    for c in candidates:
        if (c / "config.json").is_file():
            return c
    raise UserError(f"{path} holds no config.json; give a run folder or an HF ELECTRA {part} directory")


RUN_PARTS = ("generator", "mlm", "discriminator")


def model_parts(model: str | Path) -> dict[str, Path]:
    """name → HF folder: a text run's ``generator/``, ``mlm/`` and ``discriminator/`` (those it has), or one plain
    HF ELECTRA folder named by its architecture (``ElectraForPreTraining`` → discriminator, ``ElectraForMaskedLM``
    → generator)."""
    path = Path(model)
    if not path.is_dir():
        raise UserError(f"model {path} does not exist; give a text run folder or an HF ELECTRA folder")
    parts = {name: path / name for name in RUN_PARTS if (path / name / "config.json").is_file()}
    if parts:
        return parts
    if not (path / "config.json").is_file():
        raise UserError(f"{path} holds no ELECTRA models (discriminator/, generator/ or mlm/, or an HF folder's "
                        f"config.json)")
    architectures = read_hf_config(path).get("architectures") or []
    if any("MaskedLM" in a for a in architectures):
        return {"generator": path}
    if any("PreTraining" in a for a in architectures):
        return {"discriminator": path}
    raise UserError(f"{path / 'config.json'} names architectures {architectures}; an ELECTRA generator is "
                    f"ElectraForMaskedLM, a discriminator ElectraForPreTraining")


def read_hf_config(folder: Path) -> dict:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{folder / 'config.json'} is unreadable ({exc})") from None
    if config.get("model_type") != "electra":
        raise UserError(f"{folder} is a '{config.get('model_type')}' model, not an ELECTRA one")
    return config


@contextmanager
def _without_hub_kernels():
    """transformers with the ``kernels`` package (a dependency from 5.x) swaps a loaded model's layers for kernels
    fetched from the Hugging Face Hub, and does it again on the device of every ``train()``/``eval()`` switch.  A run
    here must not reach the network, must compute the same on every device, and never runs downloaded code, so
    models are loaded with Hub kernels off (its own switch, ``USE_HUB_KERNELS``) and keep the torch layers."""
    before = os.environ.get("USE_HUB_KERNELS")
    os.environ["USE_HUB_KERNELS"] = "NO"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("USE_HUB_KERNELS", None)
        else:
            os.environ["USE_HUB_KERNELS"] = before


def pretrained(cls, folder: Path, **kwargs):
    """``cls.from_pretrained`` from safetensors only (a pytorch_model.bin is a pickle, which is never loaded), with
    the torch layers (no Hub kernels)."""
    with _without_hub_kernels():
        return cls.from_pretrained(str(folder), use_safetensors=True, **kwargs)


def load_hf(cls, folder: Path, what: str, **kwargs):
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    read_hf_config(folder)
    try:
        return pretrained(cls, folder, **kwargs)
    except (OSError, ValueError, RuntimeError) as exc:
        raise UserError(f"cannot load {folder} as an ELECTRA {what} ({str(exc).splitlines()[0][:160]})") from None


def model_tokenizer(folder: Path):
    from electra.text.tokenizer import load_tokenizer

    for candidate in (folder, folder.parent / "tokenizer", folder.parent / "data" / "tokenizer"):
        if (candidate / "tokenizer.json").is_file() or (candidate / "vocab.txt").is_file():
            return load_tokenizer(candidate)
    raise UserError(f"no tokenizer (tokenizer.json or vocab.txt) beside the model in {folder}")
