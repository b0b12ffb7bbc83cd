"""Faster CPU training of the HF ELECTRA classes without changing what they compute.

Dropout's random masks were the largest non-matmul cost of a ``tiny`` step: hidden-state dropout runs as
``nn.Dropout`` modules, attention-probability dropout inside torch's scaled-dot-product attention, both drawing one
random number per element.  ``fast_training`` swaps the modules for ``electra.core.dropout.FastDropout`` and points
the model at an attention function registered with transformers' ``AttentionInterface``: softmax(QKᵀ·s + mask),
the cheap dropout, times V — the eager maths of the library's own ``eager_attention_forward`` — while training on
the CPU, and torch's fused SDPA otherwise (inference, eval, GPUs).  The name is internal to the process: configs
written by ``save_pretrained`` do not record an attention implementation, so saved models load anywhere.
"""

from __future__ import annotations

import torch

from electra.core.dropout import dropout as fast_dropout
from electra.core.dropout import use_fast_dropout

ATTENTION = "electra_cpu_dropout"


def _attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if dropout == 0.0 or query.device.type != "cpu":
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                      **kwargs)
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    scores = torch.matmul(query, key.transpose(2, 3)).mul_(scaling)
    if attention_mask is not None:  # the sdpa mask format: bool (True = attend) or additive float
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill_(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores.add_(attention_mask)
    probs = fast_dropout(torch.softmax(scores, dim=-1), dropout)
    return torch.matmul(probs, value).transpose(1, 2).contiguous(), None


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    if ATTENTION not in ALL_ATTENTION_FUNCTIONS:
        AttentionInterface.register(ATTENTION, _attention)
        ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION, sdpa_mask)


def fast_training(model):
    """Switch an HF ELECTRA model (in place) to the cheap-dropout attention and dropout modules; return it."""
    _register()
    use_fast_dropout(model)
    model.set_attn_implementation(ATTENTION)
    return model
