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

    sizes = cfg.generator_sizes() if generator else cfg.discriminator_sizes()
    return ElectraConfig(
        vocab_size=vocab_size, embedding_size=cfg.embedding_size, hidden_size=sizes["hidden_size"],
        num_hidden_layers=sizes["num_layers"], num_attention_heads=sizes["num_heads"],
        intermediate_size=sizes["intermediate_size"], hidden_act="gelu", hidden_dropout_prob=cfg.dropout,
        attention_probs_dropout_prob=cfg.dropout, max_position_embeddings=cfg.max_position_embeddings,
        type_vocab_size=2, initializer_range=cfg.init_range, pad_token_id=pad_id, tie_word_embeddings=True,
    )


def share_embeddings(generator, discriminator) -> None:
    """Make the generator use the discriminator's embeddings module and tie its output layer to that table."""
    generator.electra.embeddings = discriminator.electra.embeddings
    generator.generator_lm_head.weight = discriminator.electra.embeddings.word_embeddings.weight


class StoppedPlusDelta(torch.nn.Module):
    """An embedding table read as stop_gradient(the generator's table) + a zero-initialised delta of the
    discriminator's own (DeBERTa-v3's gradient-disentangled embedding sharing, He et al. 2021): the generator's
    MLM loss alone shapes the shared table, the discriminator's loss only the delta."""

    def __init__(self, shared: torch.nn.Embedding) -> None:
        super().__init__()
        self._shared = (shared,)   # a tuple, not a submodule: those parameters are the generator's
        self.padding_idx = shared.padding_idx
        self.delta = torch.nn.Parameter(torch.zeros_like(shared.weight))

    @property
    def weight(self) -> torch.Tensor:
        return self._shared[0].weight.detach() + self.delta

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.embedding(ids, self.weight, self.padding_idx)


GDES_TABLES = ("word_embeddings", "position_embeddings", "token_type_embeddings")


def disentangle_embeddings(generator, discriminator) -> None:
    """GDES: the discriminator keeps its own embeddings module (its LayerNorm is its own), whose tables read the
    generator's through ``StoppedPlusDelta``; the generator's output layer stays tied to its own table."""
    for name in GDES_TABLES:
        setattr(discriminator.electra.embeddings, name,
                StoppedPlusDelta(getattr(generator.electra.embeddings, name)))
    generator.generator_lm_head.weight = generator.electra.embeddings.word_embeddings.weight


def plain_discriminator(discriminator):
    """The discriminator as a stock HF model: GDES tables become ordinary ones holding the summed weights (what
    is exported), so plain transformers loads it as an ordinary ELECTRA."""
    import copy

    embeddings = discriminator.electra.embeddings
    if not isinstance(embeddings.word_embeddings, StoppedPlusDelta):
        return discriminator
    plain = copy.deepcopy(discriminator)
    for name in GDES_TABLES:
        table = getattr(embeddings, name)
        weight = table.weight.detach().clone()
        setattr(plain.electra.embeddings, name, torch.nn.Embedding(weight.shape[0], weight.shape[1],
                                                                   padding_idx=table.padding_idx,
                                                                   _weight=weight, device=weight.device))
    return plain


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
    if cfg.embedding_sharing == "gdes":
        # the generator starts from the tables the discriminator was built with, as under "shared"
        generator.electra.embeddings.load_state_dict(discriminator.electra.embeddings.state_dict())
        disentangle_embeddings(generator, discriminator)
    else:
        share_embeddings(generator, discriminator)
    return {"generator": generator, "discriminator": discriminator}


def load_pretrained_pair(folder: str | Path, sharing: str = "shared") -> dict[str, torch.nn.Module]:
    """``--init-from`` for an RTD run: an HF ELECTRA generator + discriminator (a run folder or any folder with both
    subfolders)."""
    from transformers import ElectraForMaskedLM, ElectraForPreTraining

    from electra.text.hf_io import pretrained

    folder = Path(folder)
    parts = {"generator": folder / "generator", "discriminator": folder / "discriminator"}
    for name, path in parts.items():
        if not (path / "config.json").is_file():
            raise UserError(f"--init-from {folder}: no {name}/config.json; give a folder holding HF ELECTRA "
                            f"generator/ and discriminator/ subfolders")
    try:
        discriminator = pretrained(ElectraForPreTraining, parts["discriminator"])
        generator = pretrained(ElectraForMaskedLM, parts["generator"])
    except (OSError, ValueError) as exc:
        raise UserError(f"--init-from {folder}: cannot load the models ({str(exc).splitlines()[0][:160]})") from None
    fast_training(generator), fast_training(discriminator)
    if sharing == "gdes":   # the exported discriminator's table becomes the delta's starting point: none
        generator.electra.embeddings.load_state_dict(discriminator.electra.embeddings.state_dict())
        disentangle_embeddings(generator, discriminator)
    else:
        share_embeddings(generator, discriminator)
    return {"generator": generator, "discriminator": discriminator}


def load_pretrained_mlm(folder: str | Path) -> dict[str, torch.nn.Module]:
    """``--init-from`` for an MLM run: an MLM run folder (its ``mlm/``) or any HF ELECTRA masked-LM folder."""
    from transformers import ElectraForMaskedLM

    from electra.text.hf_io import pretrained

    folder = Path(folder)
    path = folder / "mlm" if (folder / "mlm" / "config.json").is_file() else folder
    if not (path / "config.json").is_file():
        raise UserError(f"--init-from {folder}: no mlm/config.json or config.json; give an MLM run folder or an HF "
                        f"ELECTRA masked-LM folder")
    try:
        model = pretrained(ElectraForMaskedLM, path)
    except (OSError, ValueError) as exc:
        raise UserError(f"--init-from {folder}: cannot load the model ({str(exc).splitlines()[0][:160]})") from None
    return {"mlm": fast_training(model)}


def export_hf(modules: dict[str, torch.nn.Module], out: Path, tokenizer_dir: Path) -> None:
    """Write each module as an HF model folder (config.json + model.safetensors + tokenizer files), atomically."""
    import shutil

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # its per-save "Writing model shards" bars would break our progress bar
    for name, module in modules.items():
        if name == "discriminator":
            module = plain_discriminator(module)
        with atomic_folder(Path(out) / name) as tmp:
            module.save_pretrained(str(tmp), safe_serialization=True)
            for f in Path(tokenizer_dir).iterdir():
                shutil.copy(f, tmp / f.name)
