"""``electra text export RUN --onnx DIR``: a text run's (or HF ELECTRA folder's) networks as ONNX models.

``discriminator.onnx``: ``input_ids``, ``attention_mask`` (int64, batch × length) → ``logits`` (batch × length; the
sigmoid is P(replaced)).  ``generator.onnx`` (or ``mlm.onnx`` for an MLM run): the same inputs → ``logits``
(batch × length × vocabulary).  Batch and length are free up to the model's positions.  The tokenizer goes beside
them as ``tokenizer.json`` (the ``tokenizers`` library reads it) with ``export.json`` saying what each file holds.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from electra.core.files import atomic_folder, fresh_folder, write_json
from electra.core.onnx_export import OPSET, export_onnx, require_onnx
from electra.text.hf_io import load_hf, model_parts, model_tokenizer


class LogitsOnly(nn.Module):
    """An HF model called with ids and mask, returning its logits tensor alone (ONNX wants plain outputs)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def export_text(model: str | Path, out: str | Path) -> dict:
    """Write each network of ``model`` as ONNX into the new folder ``out``; return export.json's content."""
    from transformers import ElectraForMaskedLM, ElectraForPreTraining

    require_onnx()
    model = Path(model)
    parts = model_parts(model)
    tokenizer = model_tokenizer(next(iter(parts.values())))
    out = fresh_folder(Path(out))
    info = {"opset": OPSET, "source": str(model), "tokenizer": "tokenizer.json", "models": {}}
    with atomic_folder(out) as tmp:
        for name, folder in parts.items():
            cls = ElectraForPreTraining if name == "discriminator" else ElectraForMaskedLM
            # eager attention: the exported graph must apply the mask it is given, whatever the example's mask
            net = load_hf(cls, folder, name, attn_implementation="eager").eval()
            positions = net.config.max_position_embeddings
            ids = torch.tensor([[2, 5, 6, 3], [2, 7, 3, 0]], device="cpu") % net.config.vocab_size
            mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]], device="cpu")
            axes = {0: "batch", 1: "length"}
            export_onnx(LogitsOnly(net), (ids, mask), ["input_ids", "attention_mask"], ["logits"],
                        {"input_ids": axes, "attention_mask": axes}, tmp / f"{name}.onnx", {"length": positions})
            shape = "[batch, length]" if name == "discriminator" else f"[batch, length, {net.config.vocab_size}]"
            info["models"][name] = {"file": f"{name}.onnx", "inputs": "input_ids, attention_mask: int64 "
                                    "[batch, length]", "logits": f"float32 {shape}", "max_length": positions}
        tokenizer.save(str(tmp / "tokenizer.json"))
        write_json(tmp / "export.json", info)
    return info
