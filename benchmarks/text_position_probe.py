"""Why the ``tiny`` text models stay at the unigram stage: can the architecture learn to read its neighbour?

    python benchmarks/text_position_probe.py [--task pairs|corpus] [--models electra post-ln pre-ln]
        [--steps 1500] [--seeds 0] [--table]

A probe task with nothing to learn but position: rows of 128 tokens made of pairs (``a a b b c c …``, tokens
drawn uniformly from 100), 15% of the positions replaced by [MASK], the masked token to be predicted.  A model that
ignores context scores ln 100 = 4.61 nats; one that reads both neighbours 0.69 or less; the pair partner is always
a neighbour.  Three models of the ``tiny`` sizes (4 layers × 128, 2 heads, FFN 512, dropout 0.1, learnt absolute
positions, tied output layer) trained the same way (AdamW lr 1e-3, β 0.9/0.999, ε 1e-6, weight decay 0.01,
200 warm-up steps then linear decay, gradients clipped at 1, batch 32):

- ``electra``: the project's masked-LM model, HF ``ElectraForMaskedLM`` (post-LN, what every run here trains;
  weights drawn from N(0, 0.02²), the official recipe's ``initializer_range``); ``electra+KEY=VALUE…`` overrides
  keys of the ``tiny`` preset (``electra+init_range=0.05``);
- ``post-ln``: ``torch.nn.TransformerEncoder`` with LayerNorm after each residual sum (the same layout, torch's
  default initialisation: Xavier-uniform attention projections, Kaiming-uniform FFN: std 0.025–0.06 here);
- ``pre-ln``: the same with LayerNorm before each sublayer and a final LayerNorm (Xiong et al. 2020).

Each cell records the loss every 50 steps and the first logged step below 2 nats as JSON in
``benchmarks/results/text_position_probe/``; cells done are skipped.

``--task corpus`` trains the same three models the same way on gutenberg-40m's prepared shards (the 8,192-token
vocabulary of ``text_quality.py``; 15% of the non-special tokens masked, all by [MASK]) and records, besides the
training curve, the masked-token loss on 256 rows of the held-out books prepared by ``text_recipe.py`` (the same
positions masked for every model): where a model leaves the unigram stage (6.62 nats) on real text.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import say, write_cell  # noqa: E402

RESULTS = HERE / "results" / "text_position_probe"
VOCAB, FIRST, SYMBOLS, MASK = 128, 10, 100, 4
ROWS, LENGTH, MASK_PROB, LOG_EVERY, ESCAPED = 32, 128, 0.15, 50, 2.0


CORPUS_VOCAB, HELDOUT_ROWS = 8192, 256


def masked(rows: torch.Tensor, generator: torch.Generator, maskable: torch.Tensor):
    """(inputs with [MASK]s, targets, mask): MASK_PROB of the maskable positions."""
    chosen = (torch.rand(rows.shape, generator=generator) < MASK_PROB) & maskable
    return torch.where(chosen, torch.full_like(rows, MASK), rows), rows, chosen


def pair_batches(seed: int):
    """Batches of pair rows, one per step."""
    generator = torch.Generator().manual_seed(seed)

    def batch(step: int):
        tokens = torch.randint(FIRST, FIRST + SYMBOLS, (ROWS, LENGTH // 2), generator=generator)
        rows = tokens.repeat_interleave(2, dim=1)
        return masked(rows, generator, torch.ones_like(rows, dtype=torch.bool))
    return batch


def corpus_batches(seed: int):
    """gutenberg-40m's training rows in a seeded order (no row repeats within a run); the held-out batch."""
    from electra.text.corpus import TokenShards

    shards = TokenShards(HERE / "work" / "text_quality" / "shards")
    special = torch.tensor(sorted(shards.special.values()))
    assert shards.special["mask"] == MASK, "the probe's [MASK] id must be the corpus's"
    order = torch.randperm(shards.rows, generator=torch.Generator().manual_seed(seed))
    generator = torch.Generator().manual_seed(seed + 1)

    def maskable(rows: torch.Tensor) -> torch.Tensor:
        return ~torch.isin(rows, special)

    def batch(step: int):
        rows = torch.from_numpy(shards.rows_at(order[(step - 1) * ROWS: step * ROWS].numpy()))
        return masked(rows, generator, maskable(rows))

    heldout = TokenShards(HERE / "work" / "text_recipe" / "heldout-shards")
    rows = torch.from_numpy(heldout.rows_at(torch.arange(HELDOUT_ROWS).numpy()))
    return batch, masked(rows, torch.Generator().manual_seed(1234), maskable(rows))


def heldout_loss(logits_of, fixed, module) -> float:
    inputs, targets, chosen = fixed
    module.eval()
    with torch.no_grad():
        total = sum(nn.functional.cross_entropy(logits_of(inputs[i:i + ROWS])[chosen[i:i + ROWS]],
                                                targets[i:i + ROWS][chosen[i:i + ROWS]], reduction="sum").item()
                    for i in range(0, len(inputs), ROWS))
    module.train()
    return total / chosen.sum().item()


class TorchEncoder(nn.Module):
    """Token + position embeddings (std 0.02) → LayerNorm → 4 torch encoder layers → logits on the tied table."""

    def __init__(self, pre_ln: bool, vocab: int, hidden: int = 128, layers: int = 4, heads: int = 2,
                 ffn: int = 512) -> None:
        super().__init__()
        self.tokens, self.positions = nn.Embedding(vocab, hidden), nn.Embedding(512, hidden)
        nn.init.normal_(self.tokens.weight, std=0.02)
        nn.init.normal_(self.positions.weight, std=0.02)
        self.embed_norm = nn.LayerNorm(hidden)
        layer = nn.TransformerEncoderLayer(hidden, heads, ffn, 0.1, activation="gelu", batch_first=True,
                                           norm_first=pre_ln)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.final_norm = nn.LayerNorm(hidden) if pre_ln else nn.Identity()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.embed_norm(self.tokens(ids) + self.positions(torch.arange(ids.shape[1], device=ids.device)))
        return self.final_norm(self.encoder(h)) @ self.tokens.weight.T


def build(model: str, seed: int, vocab: int):
    """(module, a function ids → logits) for one of the three models."""
    torch.manual_seed(seed)
    if model.startswith("electra"):
        from electra.config import apply_overrides
        from electra.text.config import preset_config
        from electra.text.models import build_rtd_models

        extra = dict(item.split("=", 1) for item in model.split("+")[1:])
        cfg = apply_overrides(preset_config("tiny"), {"objective": "mlm", "seed": str(seed), **extra})
        module = build_rtd_models(cfg, vocab)["mlm"]
        return module, lambda ids: module(input_ids=ids).logits
    module = TorchEncoder(pre_ln=model == "pre-ln", vocab=vocab)
    return module, module


def cell_path(task: str, model: str, steps: int, seed: int) -> Path:
    return RESULTS / f"{'' if task == 'pairs' else task + '-'}{model}-{steps}steps-seed{seed}.json"


def run_cell(task: str, model: str, steps: int, seed: int) -> dict:
    from electra.core.schedules import warmup_linear_decay

    path = cell_path(task, model, steps, seed)
    if path.is_file():
        return json.loads(path.read_text())
    if task == "pairs":
        batch, fixed, vocab = pair_batches(seed), None, VOCAB
    else:
        (batch, fixed), vocab = corpus_batches(seed), CORPUS_VOCAB
    module, logits_of = build(model, seed, vocab)
    named = list(module.named_parameters())
    no_decay = [p for n, p in named if "norm" in n.lower() or n.endswith("bias")]
    decay = [p for n, p in named if not ("norm" in n.lower() or n.endswith("bias"))]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                                  lr=1e-3, betas=(0.9, 0.999), eps=1e-6)
    module.train()
    curve, heldout, t = {}, {}, time.perf_counter()
    for step in range(1, steps + 1):
        for group in optimizer.param_groups:
            group["lr"] = 1e-3 * warmup_linear_decay(step, 200, steps)
        inputs, targets, chosen = batch(step)
        loss = nn.functional.cross_entropy(logits_of(inputs)[chosen], targets[chosen])
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        optimizer.step()
        if step % LOG_EVERY == 0:
            curve[str(step)] = round(loss.item(), 3)
        if fixed is not None and step % (steps // 4) == 0:
            heldout[str(step)] = round(heldout_loss(logits_of, fixed, module), 4)
    escaped = next((int(s) for s, v in curve.items() if v < ESCAPED), None)
    result = {"task": task, "model": model, "steps": steps, "seed": seed, "seconds": round(time.perf_counter() - t),
              "first_step_below_2_nats": escaped, "final_loss": list(curve.values())[-1], "loss_curve": curve,
              **({"heldout_loss": heldout} if heldout else {})}
    write_cell(path, result, echo=False)
    say(f"{task} {model} seed {seed}: {heldout or ''} loss {result['final_loss']:.3f} at step {steps}; "
        f"below {ESCAPED} nats from step {escaped}")
    return result


def table(task, models, steps, seeds) -> None:
    say(f"{task}: {'model':24s} {'seed':>4s} {'below 2 nats at':>15s} {'final loss':>10s}  held-out loss by step"
        f"  |  training loss every 250 steps")
    for model in models:
        for seed in seeds:
            path = cell_path(task, model, steps, seed)
            if path.is_file():
                c = json.loads(path.read_text())
                every = " ".join(f"{v:.2f}" for s, v in c["loss_curve"].items() if int(s) % 250 == 0)
                held = " ".join(f"{s}: {v:.3f}" for s, v in c.get("heldout_loss", {}).items())
                say(f"{model:24s} {seed:4d} {str(c['first_step_below_2_nats']):>15s} {c['final_loss']:10.3f}  {held}"
                    f"  |  {every}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", choices=["pairs", "corpus"], default="pairs")
    parser.add_argument("--models", nargs="+", default=["electra", "post-ln", "pre-ln"],
                        help="electra, post-ln, pre-ln, or electra+KEY=VALUE… (the tiny preset with overrides)")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--table", action="store_true", help="print the cells done, run nothing")
    args = parser.parse_args()
    if not args.table:
        for seed in args.seeds:
            for model in args.models:
                run_cell(args.task, model, args.steps, seed)
    table(args.task, args.models, args.steps, args.seeds)


if __name__ == "__main__":
    main()
