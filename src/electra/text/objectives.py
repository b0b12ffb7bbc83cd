"""Text objectives: ELECTRA's replaced-token detection (RTD) and BERT-style masked LM, as one-update objectives.

RTD, per batch (Clark et al. 2020; the official ``run_pretraining.py``):
  1. choose 15% of each row's non-special tokens (at most ⌊0.155·L⌋); 85% become [MASK], 15% stay;
  2. the generator predicts the originals at the chosen positions only (its vocabulary projection never runs on
     the other ~85% of positions): L_MLM = mean NLL;
  3. replacements are exact samples of its softmax in float32 at temperature 1 (inverse CDF by default; Gumbel-max
     as in the official code with sampler=gumbel: the same distribution) — no gradient flows through them, so the discriminator's loss never reaches the generator's own weights;
  4. a token is "replaced" iff it differs from the original (a sample equal to the original is "original");
  5. the discriminator labels every non-padding token: L_Disc = mean sigmoid cross-entropy;
  L = L_MLM + λ·L_Disc with λ = 50, one optimizer over both (the shared embeddings learn from both terms).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from electra.core.randomness import StepRandom
from electra.text.config import TextConfig
from electra.text.masking import SAMPLERS, apply_mask, binary_auc, mask_positions


def gather_positions(hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    return hidden.gather(1, positions.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))


def masked_lm_logits(mlm_model, input_ids, attention_mask, token_type_ids, positions) -> torch.Tensor:
    """An ``ElectraForMaskedLM``'s logits at ``positions`` only (B×P×V instead of B×L×V)."""
    hidden = mlm_model.electra(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=token_type_ids).last_hidden_state
    return mlm_model.generator_lm_head(mlm_model.generator_predictions(gather_positions(hidden, positions)))


def token_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """−log P(target) at each position (log-softmax over the last axis + gather: no transposed copy of the
    B×P×V logits)."""
    return -F.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def weighted_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return (values * weights).sum() / (weights.sum() + 1e-6)


class MaskedLMObjective:
    """BERT-style masked LM (80% [MASK], 10% random, 10% kept) in the same harness: the equal-compute baseline."""

    updates = {"joint": ("model",)}   # one update stepping the one optimizer over every parameter

    def __init__(self, model, cfg: TextConfig, special_ids: dict[str, int], vocab_size: int, seed: int):
        self.model, self.cfg, self.ids, self.vocab_size = model, cfg, special_ids, vocab_size
        self.special = torch.tensor(sorted(special_ids.values()), device="cpu")
        self.random = StepRandom(seed)   # the trainer points it at each micro-batch's rows of the global batch

    def draw(self, stream: str, rows: int):
        return lambda *tail: self.random.rand(stream, rows, *tail)

    def _mask(self, batch, mask_token_prob: float, random_token_prob: float):
        ids, am = batch["input_ids"], batch["attention_mask"]
        rows = ids.shape[0]
        self.special = self.special.to(ids.device)
        positions, weights = mask_positions(ids, am, self.special, self.cfg.mask_prob, self.draw("select", rows))
        masked = apply_mask(ids, positions, weights, self.ids["mask"], mask_token_prob, self.draw("kind", rows),
                            random_token_prob, self.vocab_size, max(self.ids.values()) + 1)
        return positions, weights, masked, ids.gather(1, positions)

    def _mlm(self, model, batch, masked, positions, targets, weights):
        logits = masked_lm_logits(model, masked, batch["attention_mask"], batch["token_type_ids"], positions)
        nll = token_nll(logits, targets)
        loss = weighted_mean(nll, weights)
        accuracy = weighted_mean((logits.detach().argmax(-1) == targets).float(), weights)
        return logits, loss, accuracy

    def losses(self, update, batch, cache):
        positions, weights, masked, targets = self._mask(batch, 0.8, 0.1)
        _, loss, accuracy = self._mlm(self.model, batch, masked, positions, targets, weights)
        return {"model": loss}, {"loss": loss.detach(), "mlm_loss": loss.detach(), "gen_acc": accuracy}

    def summarize(self, means):
        return means


class RTDObjective(MaskedLMObjective):
    """ELECTRA's joint generator + discriminator loss (see the module docstring)."""

    def __init__(self, generator, discriminator, cfg: TextConfig, special_ids: dict[str, int], vocab_size: int,
                 seed: int):
        super().__init__(generator, cfg, special_ids, vocab_size, seed)
        self.generator, self.discriminator = generator, discriminator

    def corrupt(self, batch):
        """(masked inputs, positions, weights, generator logits, corrupted inputs, replaced labels, sampled)."""
        positions, weights, masked, targets = self._mask(batch, self.cfg.mask_token_prob, 0.0)
        logits, mlm_loss, gen_acc = self._mlm(self.generator, batch, masked, positions, targets, weights)
        sampled = SAMPLERS[self.cfg.sampler](logits, self.cfg.temperature, self.draw("sample", logits.shape[0]))
        fill = torch.where(weights.bool(), sampled, masked.gather(1, positions))
        corrupted = masked.scatter(1, positions, fill)
        labels = (corrupted != batch["input_ids"]) & batch["attention_mask"].bool()
        return positions, weights, targets, sampled, corrupted, labels, mlm_loss, gen_acc

    def losses(self, update, batch, cache):
        positions, weights, targets, sampled, corrupted, labels, mlm_loss, gen_acc = self.corrupt(batch)
        am = batch["attention_mask"].float()
        d_logits = self.discriminator(input_ids=corrupted, attention_mask=batch["attention_mask"],
                                      token_type_ids=batch["token_type_ids"]).logits.float()
        bce = F.binary_cross_entropy_with_logits(d_logits, labels.float(), reduction="none")
        disc_loss = weighted_mean(bce, am)
        total = mlm_loss + self.cfg.disc_weight * disc_loss
        with torch.no_grad():
            valid = am.bool()
            predicted = (d_logits > 0) & valid
            replaced = labels & valid
            true_pos = (predicted & replaced).sum().float()
            metrics = {
                "loss": total.detach(), "mlm_loss": mlm_loss.detach(), "disc_loss": disc_loss.detach(),
                "gen_acc": gen_acc,
                "sampled_is_original": weighted_mean((sampled == targets).float(), weights),
                "replaced_frac": weighted_mean(labels.float(), am),
                "disc_acc": weighted_mean((predicted == replaced).float(), am),
                "disc_auc": binary_auc(d_logits[valid], replaced[valid]),
                "disc_precision": true_pos / predicted.sum().clamp(min=1),
                "disc_recall": true_pos / replaced.sum().clamp(min=1),
            }
        return {"model": total}, metrics
