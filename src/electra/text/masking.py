"""Small pure helpers of the RTD objective: choosing positions to mask, Gumbel-max sampling, ranking metrics."""

from __future__ import annotations

from typing import Callable

import torch


Draw = Callable[..., torch.Tensor]
"""``draw(*tail)`` → uniform [0, 1) numbers of shape (rows of this micro-batch, *tail) — see core.randomness."""


def generator_draw(rows: int, rng: torch.Generator) -> Draw:
    """A Draw from a plain torch.Generator (tests, tools)."""
    return lambda *tail: torch.rand((rows, *tail), generator=rng, device="cpu")


def mask_positions(input_ids: torch.Tensor, attention_mask: torch.Tensor, special: torch.Tensor,
                   mask_prob: float, draw: Draw) -> tuple[torch.Tensor, torch.Tensor]:
    """Choose ~mask_prob of each row's non-special tokens, at most ⌊(mask_prob + 0.005)·L⌋ (the official cap).

    Returns (positions B×P, weights B×P): weight 1 for a chosen position, 0 for padding of the P slots."""
    batch, length = input_ids.shape
    max_predictions = max(1, int((mask_prob + 0.005) * length))
    candidates = attention_mask.bool() & ~torch.isin(input_ids, special)
    n_candidates = candidates.sum(1)
    n_predict = torch.clamp((n_candidates.float() * mask_prob).round().long(), min=1, max=max_predictions)
    n_predict = torch.minimum(n_predict, n_candidates)
    scores = draw(length).to(input_ids.device).masked_fill(~candidates, -1.0)
    positions = scores.topk(max_predictions, dim=1).indices              # a uniform sample without replacement
    slots = torch.arange(max_predictions, device=input_ids.device)
    weights = (slots.unsqueeze(0) < n_predict.unsqueeze(1)).float()
    return positions, weights


def apply_mask(input_ids: torch.Tensor, positions: torch.Tensor, weights: torch.Tensor, mask_id: int,
               mask_token_prob: float, draw: Draw, random_token_prob: float = 0.0,
               vocab_size: int = 0, first_normal_id: int = 0) -> torch.Tensor:
    """[MASK] at mask_token_prob of the chosen positions, a random token at random_token_prob, the rest keep
    their original token.  ELECTRA: 85/0/15; BERT's MLM: 80/10/10."""
    kind, token = draw(positions.shape[1], 2).to(input_ids.device).unbind(-1)
    chosen = weights.bool()
    to_mask = (kind < mask_token_prob) & chosen
    to_random = (kind >= mask_token_prob) & (kind < mask_token_prob + random_token_prob) & chosen
    masked = input_ids.clone()
    rows = torch.arange(input_ids.shape[0], device=input_ids.device).unsqueeze(1).expand_as(positions)
    masked[rows[to_mask], positions[to_mask]] = mask_id
    if random_token_prob > 0:
        random_ids = first_normal_id + (token * (vocab_size - first_normal_id)).long()
        masked[rows[to_random], positions[to_random]] = random_ids[to_random]
    return masked


def gumbel_sample(logits: torch.Tensor, temperature: float, draw: Draw) -> torch.Tensor:
    """argmax(logits / T + Gumbel noise) in float32: an exact sample from softmax(logits / T)."""
    logits = logits.detach().float() / temperature
    uniform = draw(*logits.shape[1:]).to(logits.device).clamp_(1e-9, 1.0 - 1e-9)
    return (logits - torch.log(-torch.log(uniform))).argmax(-1)


def inverse_cdf_sample(logits: torch.Tensor, temperature: float, draw: Draw) -> torch.Tensor:
    """An exact sample from softmax(logits / T) in float32 by inverting the CDF: one uniform number per position
    instead of one per vocabulary entry (Gumbel-max draws |V| of them), so ~5× cheaper at |V| = 30,522.
    Same distribution as ``gumbel_sample``; the tests check both against the softmax."""
    probs = torch.softmax(logits.detach().float() / temperature, dim=-1)
    cdf = probs.cumsum(dim=-1)
    u = draw(*cdf.shape[1:-1], 1).to(cdf.device) * cdf[..., -1:]
    return torch.searchsorted(cdf, u, right=True).clamp_(max=cdf.shape[-1] - 1).squeeze(-1)


SAMPLERS = {"gumbel": gumbel_sample, "cdf": inverse_cdf_sample}


def binary_auc(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Area under the ROC curve (Mann–Whitney, ties broken arbitrarily) without leaving the device; NaN if one
    class is absent."""
    scores, labels = scores.float().flatten(), labels.bool().flatten()
    ranks = torch.empty_like(scores)
    ranks[scores.argsort()] = torch.arange(1, len(scores) + 1, dtype=scores.dtype, device=scores.device)
    n_pos = labels.sum().float()
    n_neg = (~labels).sum().float()
    auc = (ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return torch.where((n_pos > 0) & (n_neg > 0), auc, torch.full_like(auc, float("nan")))
