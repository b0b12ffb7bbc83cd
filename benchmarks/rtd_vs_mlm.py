"""The paper's central claim, measured with this project's code: RTD pre-training beats masked-LM pre-training at
equal compute.

Pre-trains the same discriminator-sized architecture with ``--objective rtd`` and ``--objective mlm`` for the same
number of steps and batch on the English text in ../shared/data/text, then fine-tunes both — and a randomly
initialised model of the same shape — on SST-2 and CoLA with several seeds.  Prints one table (objective,
pre-training steps, time and FLOP estimate, SST-2 accuracy median, CoLA MCC median) and a summary line.

    python benchmarks/rtd_vs_mlm.py [--steps 1500] [--seeds 3] [--sst2-train 20000] [--documents file]
        [--finetune-lr 3e-4] [--tasks sst-2 cola] [--out DIR]

``--out`` keeps every run; re-running with the same folder reuses finished pre-training and fine-tuning runs, so a
second fine-tuning lr costs only the fine-tuning.

The corpus's blank lines separate paragraphs (Gutenberg, WikiText) or speeches (Shakespeare), so with the official
blank-line document boundary the average example fills under half of its 128 slots; ``--documents file`` (the
default here) treats each file as one document and fills the rows, twice the text per step at the same cost.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch

from common import SHARED, say
from text_throughput import random_batches, useful_flops_per_token
from electra.config import apply_overrides
from electra.text.config import preset_config
from electra.text.corpus import prepare_corpus
from electra.text.finetune import finetune
from electra.text.pretrain import pretrain
from electra.text.tokenizer import train_tokenizer

TEXT = sorted((SHARED / "text").glob("*/*.txt"))
TEXT = [p for p in TEXT if p.name not in ("LICENSE.txt",)]


def random_init(like_run: Path, out: Path) -> Path:
    """A discriminator of the same shape with fresh weights, saved beside its tokenizer."""
    from transformers import ElectraConfig, ElectraForPreTraining

    torch.manual_seed(0)
    config = ElectraConfig.from_pretrained(str(like_run / "discriminator"))
    ElectraForPreTraining(config).save_pretrained(str(out / "discriminator"))
    for f in (like_run / "discriminator").iterdir():
        if f.name.startswith(("tokenizer", "vocab", "special")):
            (out / "discriminator" / f.name).write_bytes(f.read_bytes())
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sst2-train", type=int, default=20_000, help="SST-2 training examples used (of 67,349)")
    parser.add_argument("--documents", default="file", choices=["file", "blank-line"])
    parser.add_argument("--finetune-lr", type=float, default=None,
                        help="fine-tuning peak lr (default: the recipe's 3e-4 for small models)")
    parser.add_argument("--tasks", nargs="+", default=["sst-2", "cola"], choices=["sst-2", "cola"])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    root = Path(args.out or tempfile.mkdtemp(prefix="rtd_vs_mlm-"))
    root.mkdir(parents=True, exist_ok=True)
    tok = root / "tokenizer"
    if not tok.exists():
        train_tokenizer([str(p) for p in TEXT], 8192, tok)
    data = root / "shards"
    if not data.exists():
        prepare_corpus([str(p) for p in TEXT], tok, 128, data, progress=False, documents=args.documents)
    manifest = json.loads((data / "manifest.json").read_text())
    say(f"corpus: {manifest['rows']} examples, {manifest['tokens']} tokens, "
        f"{100 * manifest['tokens'] / (manifest['rows'] * 128):.0f}% of row slots filled (documents: {args.documents})")
    rows = []
    models = {}
    for objective in ("rtd", "mlm"):
        run = root / f"pretrain-{objective}"
        timing = run / "benchmark_seconds.txt"   # so a reused run still reports how long it took
        if not (run / "metrics.jsonl").exists():
            t = time.perf_counter()
            cfg = apply_overrides(preset_config("tiny"), {"objective": objective, "steps": args.steps})
            pretrain(cfg, data=str(data), out=str(run), progress=False)
            timing.write_text(f"{time.perf_counter() - t:.1f}\n")
        elapsed = float(timing.read_text()) if timing.exists() else float("nan")
        models[objective] = (run, elapsed)
    models["random"] = (random_init(models["rtd"][0], root / "random-init"), 0.0)
    glue = SHARED / "glue"
    suffix = f"-lr{args.finetune_lr:g}" if args.finetune_lr else ""   # runs (reused by --out) per fine-tuning lr
    for name, (model, elapsed) in models.items():
        scores, seeds = {}, {}
        for task in args.tasks:
            extra = {"max_train_examples": args.sst2_train} if task == "sst-2" else {}
            if args.finetune_lr:
                extra["lr"] = args.finetune_lr
            out = root / f"ft-{name}-{task}{suffix}"
            res = finetune(model, task, glue, out=out, progress=False,
                           overrides={"seeds": args.seeds, **extra}) if not (out / "results.json").exists() else \
                json.loads((out / "results.json").read_text())
            first = list(res["median"])[0]
            scores[task] = res["median"][first]["accuracy" if task == "sst-2" else "mcc"]
            seeds[task] = [s["scores"][first]["accuracy" if task == "sst-2" else "mcc"] for s in res["seeds"]]
        flops = 0.0
        if name != "random":
            cfg = apply_overrides(preset_config("tiny"), {"objective": name})
            per_token = useful_flops_per_token(cfg, 8192, random_batches(8192, cfg.batch_size, cfg.seq_len)(0))
            flops = per_token * args.steps * cfg.batch_size * cfg.seq_len
        rows.append({"objective": name, "pretrain_steps": args.steps if name != "random" else 0,
                     "pretrain_minutes": elapsed / 60, "pretrain_pflop": flops / 1e15,
                     "sst2_acc": scores.get("sst-2", float("nan")), "cola_mcc": scores.get("cola", float("nan")),
                     "per_seed": seeds})
        say(json.dumps(rows[-1]))
    say(f"\n{'objective':10s} {'steps':>6s} {'minutes':>8s} {'PFLOP':>7s} {'SST-2 acc':>10s} {'CoLA MCC':>9s}")
    for r in rows:
        say(f"{r['objective']:10s} {r['pretrain_steps']:6d} {r['pretrain_minutes']:8.1f} {r['pretrain_pflop']:7.3f} "
            f"{100 * r['sst2_acc']:10.1f} {100 * r['cola_mcc']:9.1f}")
    (root / f"results{suffix}.json").write_text(json.dumps(rows, indent=2))
    by = {r["objective"]: r for r in rows}
    say(f"SUMMARY rtd_vs_mlm: RTD − MLM = {100 * (by['rtd']['sst2_acc'] - by['mlm']['sst2_acc']):+.1f} SST-2 points, "
        f"{100 * (by['rtd']['cola_mcc'] - by['mlm']['cola_mcc']):+.1f} CoLA MCC points after {args.steps} steps "
        f"(median of {args.seeds} seeds, fine-tuning lr {args.finetune_lr or 'recipe'})")


if __name__ == "__main__":
    main()
