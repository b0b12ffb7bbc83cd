"""RTD pre-training throughput: the project's step vs the layout existing ports use, same sizes, same batch.

Reference layout (written here, the way lucidrains/electra-pytorch and similar ports do it): an
``ElectraForMaskedLM`` generator that projects *every* position onto the full vocabulary, sampling and the MLM
loss then picked out at the masked positions, plus ``ElectraForPreTraining``; AdamW, clip 1.0.  The project's step
(``RTDObjective`` in the core Trainer) computes generator logits at the masked positions only.  Both use the
``tiny`` preset with a 30,522-token vocabulary (BERT's), batch 32 × 128 tokens, and run alternately in one process;
medians of several rounds.  Also prints an MFU estimate (useful model FLOPs per token × tokens/s ÷ a float32 matmul
peak measured in the same run) and, from a separate process running only the project's step, its peak RSS.

    python benchmarks/text_throughput.py [--rounds 5] [--steps 8] [--vocab 30522]
    python benchmarks/text_throughput.py --sharing-ab [--vocab 8192]   # shared vs gdes embeddings, alternating
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
import torch.nn.functional as F

from common import TimedSlices, matmul_peak_gflops, median, peak_rss_mb, say
from electra.config import apply_overrides
from electra.core.schedules import EveryStep, warmup_linear_decay
from electra.core.trainer import NO_CHECKPOINTS, Plan
from electra.text.config import preset_config
from electra.text.corpus import make_batch
from electra.text.masking import apply_mask, generator_draw, gumbel_sample, mask_positions
from electra.text.models import build_rtd_models
from electra.text.objectives import MaskedLMObjective, RTDObjective
from electra.text.pretrain import build_optimizer

IDS = {"pad": 0, "unk": 100, "cls": 101, "sep": 102, "mask": 103}  # BERT's uncased vocabulary layout


def random_batches(vocab: int, batch: int, seq: int):
    def batches(step, micro=0):
        g = torch.Generator().manual_seed(step)
        ids = torch.randint(1000, vocab, (batch, seq), generator=g)
        ids[:, 0], ids[:, seq // 2], ids[:, -1] = IDS["cls"], IDS["sep"], IDS["sep"]
        return make_batch(ids, IDS["pad"], IDS["sep"])
    return batches


class ReferenceStep:
    def __init__(self, cfg, vocab):
        self.cfg = cfg
        self.m = build_rtd_models(cfg, vocab, fast=False)  # stock HF modules, as ports use them
        self.opt = build_optimizer(cfg, self.m)
        self.rng = torch.Generator().manual_seed(0)
        self.draw = generator_draw(cfg.batch_size, self.rng)
        self.special = torch.tensor(sorted(IDS.values()))
        for m in self.m.values():
            m.train()

    def step(self, batch):
        ids, am, tt = batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
        positions, weights = mask_positions(ids, am, self.special, self.cfg.mask_prob, self.draw)
        masked = apply_mask(ids, positions, weights, IDS["mask"], self.cfg.mask_token_prob, self.draw)
        logits = self.m["generator"](input_ids=masked, attention_mask=am, token_type_ids=tt).logits  # B×L×V
        picked = logits.gather(1, positions.unsqueeze(-1).expand(-1, -1, logits.shape[-1]))
        targets = ids.gather(1, positions)
        mlm = (F.cross_entropy(picked.transpose(1, 2), targets, reduction="none") * weights).sum() / weights.sum()
        sampled = gumbel_sample(picked, 1.0, self.draw)
        corrupted = masked.scatter(1, positions, torch.where(weights.bool(), sampled, masked.gather(1, positions)))
        labels = (corrupted != ids).float()
        d = self.m["discriminator"](input_ids=corrupted, attention_mask=am, token_type_ids=tt).logits
        loss = mlm + 50 * F.binary_cross_entropy_with_logits(d, labels)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in self.opt.param_groups for p in g["params"]], 1.0)
        self.opt.step()
        return loss.item()


def useful_flops_per_token(cfg, vocab, batch, full_vocabulary: bool = False) -> float:
    """Training FLOPs per token of the work the objective needs: 6 × (linear-layer MACs + attention MACs) per
    token, with the vocabulary projection counted at the masked positions only (what the recipe asks for) —
    or, with ``full_vocabulary``, at every position (what the reference layout executes)."""
    models = build_rtd_models(cfg, vocab)
    macs = 0

    def hook(m, inp, out):
        nonlocal macs
        macs += m.in_features * m.out_features * (out.numel() // out.shape[-1])

    handles = [m.register_forward_hook(hook) for mod in models.values() for m in mod.modules()
               if isinstance(m, torch.nn.Linear)]
    if cfg.objective == "rtd":
        obj = RTDObjective(models["generator"], models["discriminator"], cfg, IDS, vocab, seed=0)
    else:
        obj = MaskedLMObjective(models["mlm"], cfg, IDS, vocab, seed=0)
    with torch.no_grad():
        if full_vocabulary:
            inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
            models["generator"](**inputs), models["discriminator"](**inputs)
        else:
            obj.losses("joint", batch, {})
    for h in handles:
        h.remove()
    tokens = batch["input_ids"].numel()
    seq = batch["input_ids"].shape[1]
    attention = 0
    for name in models:
        c = models[name].config
        attention += 2 * c.num_hidden_layers * seq * c.hidden_size  # QKᵀ and AV, per token
    return 6 * (macs / tokens + attention)


def project_trainer(cfg, vocab, batches, tmp):
    m = build_rtd_models(cfg, vocab)
    obj = RTDObjective(m["generator"], m["discriminator"], cfg, IDS, vocab, seed=0)
    plan = Plan(modules=m, optimizers={"model": build_optimizer(cfg, m)}, objective=obj,
                schedule=EveryStep(("joint",)), batches=batches, steps_per_epoch=10**9, total_steps=10**9,
                items_per_step=cfg.batch_size * cfg.seq_len, item_name="tokens", log_every=10**9,
                checkpoints=NO_CHECKPOINTS, grad_clip=cfg.grad_clip, micro_batch=cfg.batch_size,
                lr_schedule=lambda step, fraction: warmup_linear_decay(step, cfg.warmup_steps, cfg.steps))
    slices = TimedSlices(plan, tmp)

    def run(steps):
        return steps * cfg.batch_size * cfg.seq_len / slices(steps)
    return run


def sharing_ab(rounds: int, steps: int, vocab: int) -> None:
    """The project's step with ``embedding_sharing=shared`` and ``gdes``, in alternating rounds; medians."""
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for sharing in ("shared", "gdes"):
            cfg = apply_overrides(preset_config("tiny"), {"embedding_sharing": sharing})
            (Path(tmp) / sharing).mkdir()
            runs[sharing] = project_trainer(cfg, vocab, random_batches(vocab, cfg.batch_size, cfg.seq_len),
                                            Path(tmp) / sharing)
            runs[sharing](2)   # warm-up
        rates: dict[str, list[float]] = {name: [] for name in runs}
        for r in range(rounds):
            for name, run in runs.items():
                rates[name].append(run(steps))
            say(f"round {r + 1}: " + ", ".join(f"{name} {v[-1]:.0f} tok/s" for name, v in rates.items()))
    shared, gdes = median(rates["shared"]), median(rates["gdes"])
    say(f"SUMMARY sharing: gdes/shared = {gdes / shared:.3f} ({gdes:.0f} vs {shared:.0f} tokens/s, median of "
        f"{rounds} rounds, tiny, vocab {vocab})")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=30522)
    parser.add_argument("--only-project", type=int, default=0, help="(internal) run N project steps, print RSS")
    parser.add_argument("--sharing-ab", action="store_true", help="time shared against gdes embeddings instead")
    args = parser.parse_args()
    if args.sharing_ab:
        return sharing_ab(args.rounds, args.steps, args.vocab)
    cfg = apply_overrides(preset_config("tiny"), {"dropout": 0.1})
    batches = random_batches(args.vocab, cfg.batch_size, cfg.seq_len)
    if args.only_project:
        with tempfile.TemporaryDirectory() as tmp:
            project_trainer(cfg, args.vocab, batches, tmp)(args.only_project)
        print(f"{peak_rss_mb():.0f}")
        return
    say(f"tiny preset: D {cfg.num_layers}×{cfg.hidden_size}, G {cfg.generator_sizes()}, vocab {args.vocab}, "
        f"batch {cfg.batch_size}×{cfg.seq_len}; threads {torch.get_num_threads()}; torch {torch.__version__}")
    peak = matmul_peak_gflops()
    flops = useful_flops_per_token(cfg, args.vocab, batches(0))
    executed = useful_flops_per_token(cfg, args.vocab, batches(0), full_vocabulary=True)
    reference = ReferenceStep(cfg, args.vocab)
    with tempfile.TemporaryDirectory() as tmp:
        project = project_trainer(cfg, args.vocab, batches, tmp)
        project(2)
        for s in range(2):
            reference.step(batches(s))
        rates = {"reference": [], "project": []}
        for r in range(args.rounds):
            t = time.perf_counter()
            for s in range(args.steps):
                reference.step(batches(s))
            rates["reference"].append(args.steps * cfg.batch_size * cfg.seq_len / (time.perf_counter() - t))
            rates["project"].append(project(args.steps))
            say(f"round {r + 1}: reference {rates['reference'][-1]:.0f} tok/s, project {rates['project'][-1]:.0f} tok/s")
    ref, mine = median(rates["reference"]), median(rates["project"])
    for name, rate in (("reference", ref), ("project", mine)):
        say(f"{name:9s} {rate:8.0f} tokens/s  MFU {100 * rate * flops / (peak * 1e9):5.1f}% "
            f"(useful {flops / 1e6:.1f} MFLOP/token, matmul peak {peak:.0f} GFLOP/s)")
    say(f"work per token: reference executes {executed / 1e6:.1f} MFLOP (vocabulary projection at every position), "
        f"the project {flops / 1e6:.1f}: a {executed / flops:.2f}x ratio of work; the reference runs its larger "
        f"matrices at {100 * ref * executed / (peak * 1e9):.0f}% of peak, the project at {100 * mine * flops / (peak * 1e9):.0f}%")
    rss = subprocess.run([sys.executable, __file__, "--only-project", "6", "--vocab", str(args.vocab)],
                         capture_output=True, text=True).stdout.strip().splitlines()
    say(f"peak RSS of tiny pre-training (project step alone, separate process): {rss[-1] if rss else '?'} MB")
    say(f"SUMMARY text_throughput: project/reference = {mine / ref:.2f}x ({mine:.0f} vs {ref:.0f} tokens/s, "
        f"median of {args.rounds} rounds, tiny, vocab {args.vocab})")


if __name__ == "__main__":
    main()
