"""Generator and discriminator as Hugging Face ELECTRA classes, wired the way the official recipe wires them.

- the discriminator is ``ElectraForPreTraining`` (encoder + per-token "replaced" head): the product;
- the generator is ``ElectraForMaskedLM`` of the same depth at a fraction of the width;
- one embeddings module (token, position, segment tables + LayerNorm) is shared by both — the same tensors,
  not copies — and the generator's output layer is tied to that shared token table (re-tied after sharing, which
  is where ports go wrong: the old tie would leave the output layer on an orphaned matrix).
Run folders store both in HF format, so ``from_pretrained`` and ``pipeline`` load them directly.
"""

from __future__ import annotations

from pathlib import Path

import torch

from electra.core.files import atomic_folder
from electra.errors import UserError
from electra.text.config import TextConfig
from electra.text.fast_training import fast_training


def hf_config(cfg: TextConfig, vocab_size: int, generator: bool, pad_id: int = 0):
    from transformers import ElectraConfig

    sizes = cfg.generator_sizes() if generator else {"hidden_size": cfg.hidden_size, "num_heads": cfg.num_heads,
                                                     "intermediate_size": cfg.intermediate_size}
    return ElectraConfig(
        vocab_size=vocab_size, embedding_size=cfg.embedding_size, hidden_size=sizes["hidden_size"],
        num_hidden_layers=cfg.num_layers, num_attention_heads=sizes["num_heads"],
        intermediate_size=sizes["intermediate_size"], hidden_act="gelu", hidden_dropout_prob=cfg.dropout,
        attention_probs_dropout_prob=cfg.dropout, max_position_embeddings=cfg.max_position_embeddings,
        type_vocab_size=2, initializer_range=0.02, pad_token_id=pad_id, tie_word_embeddings=True,
    )


def share_embeddings(generator, discriminator) -> None:
    """Make the generator use the discriminator's embeddings module and tie its output layer to that table."""
    generator.electra.embeddings = discriminator.electra.embeddings
    generator.generator_lm_head.weight = discriminator.electra.embeddings.word_embeddings.weight


def build_rtd_models(cfg: TextConfig, vocab_size: int, pad_id: int = 0,
                     fast: bool = True) -> dict[str, torch.nn.Module]:
    """Fresh models for ``cfg.objective``; ``fast=False`` leaves them as stock HF modules (the benchmark's
    reference layout)."""
    from transformers import ElectraForMaskedLM, ElectraForPreTraining

    speed = fast_training if fast else (lambda model: model)
    torch.manual_seed(cfg.seed)
    if cfg.objective == "mlm":
        return {"mlm": speed(ElectraForMaskedLM(hf_config(cfg, vocab_size, generator=False, pad_id=pad_id)))}
    discriminator = speed(ElectraForPreTraining(hf_config(cfg, vocab_size, generator=False, pad_id=pad_id)))
    generator = speed(ElectraForMaskedLM(hf_config(cfg, vocab_size, generator=True, pad_id=pad_id)))
    share_embeddings(generator, discriminator)
    return {"generator": generator, "discriminator": discriminator}


def load_pretrained_pair(folder: str | Path) -> dict[str, torch.nn.Module]:
    """``--init-from``: an HF ELECTRA generator + discriminator (a run folder or any folder with both subfolders)."""
    from transformers import ElectraForMaskedLM, ElectraForPreTraining

    folder = Path(folder)
    parts = {"generator": folder / "generator", "discriminator": folder / "discriminator"}
    for name, path in parts.items():
        if not (path / "config.json").is_file():
            raise UserError(f"--init-from {folder}: no {name}/config.json; give a folder holding HF ELECTRA "
                            f"generator/ and discriminator/ subfolders")
    try:
        # safetensors only: a pytorch_model.bin is a pickle, which is never loaded
        discriminator = ElectraForPreTraining.from_pretrained(str(parts["discriminator"]), use_safetensors=True)
        generator = ElectraForMaskedLM.from_pretrained(str(parts["generator"]), use_safetensors=True)
    except (OSError, ValueError) as exc:
        raise UserError(f"--init-from {folder}: cannot load the models ({str(exc).splitlines()[0][:160]})") from None
    share_embeddings(fast_training(generator), fast_training(discriminator))
    return {"generator": generator, "discriminator": discriminator}


def export_hf(modules: dict[str, torch.nn.Module], out: Path, tokenizer_dir: Path) -> None:
    """Write each module as an HF model folder (config.json + model.safetensors + tokenizer files), atomically."""
    import shutil

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # its per-save "Writing model shards" bars would break our progress bar
    for name, module in modules.items():
        with atomic_folder(Path(out) / name) as tmp:
            module.save_pretrained(str(tmp), safe_serialization=True)
            for f in Path(tokenizer_dir).iterdir():
                shutil.copy(f, tmp / f.name)
