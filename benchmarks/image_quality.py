"""Sample quality per CPU-minute: each preset trained for a fixed wall-clock budget on full MNIST, then scored.

For every budget (minutes) it trains each candidate with ``electra image train --minutes B``, samples 10,000
images, and scores them with the project's evaluator (LeNet-FID, KID, precision/recall, class coverage) against
the MNIST test split.  Beside them: the real-data floor and the textbook DCGAN loop (pytorch/examples style,
width 64 as in the tutorial) trained for the same budget.  Prints a table and a final summary line.

    python benchmarks/image_quality.py [--budgets 3 10] [--candidates seed dcgan vae vaegan dcgan-no-ema]
        [--variant NAME=PRESET,key=value,...]   # extra candidates, e.g. dcgan-lr1e-3=dcgan,lr=1e-3
        [--seeds 0 1 2]                         # train every candidate once per seed; summarise by the median

GAN runs this short vary a lot with the seed (10-minute LeNet-FID 51 vs 66 for seeds 0 and 1 of one preset), so a
candidate is judged by its median over ``--seeds``, with the worst seed printed beside it.  The textbook baseline
runs with the same seeds, and the ratio compares medians.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import torch

from common import SHARED, say
from electra.config import apply_overrides, parse_assignments
from electra.image.config import preset_config
from electra.image.evaluate import evaluate
from electra.image.train import sample_images, train_image

CANDIDATES = {
    "seed": ("seed", {}),
    "dcgan": ("dcgan", {}),
    "dcgan-no-ema": ("dcgan", {"ema": 0.0}),     # the preset sampled from its live generator
    "vae": ("vae", {}),
    "vaegan": ("vaegan", {}),
}
COLUMNS = ("fid", "kid", "precision", "recall", "classes_covered", "class_kl")


def train_textbook(minutes: float, out: Path, seed: int = 0) -> tuple[int, np.ndarray]:
    from image_throughput import TextbookLoop

    from electra.image.data import load_dataset

    data = load_dataset("mnist", "train", str(SHARED / "mnist"))
    cfg = apply_overrides(preset_config("dcgan"), {"width": 64, "seed": seed})
    loop = TextbookLoop(cfg, data.images)
    t, steps = time.perf_counter(), 0
    while time.perf_counter() - t < minutes * 60:
        loop.step()
        steps += 1
    z = torch.randn(10_000, 100, generator=torch.Generator().manual_seed(0))
    images = sample_images(loop.netG, z).numpy()
    np.save(out, images)
    return steps, images


def row(name, budget, steps, report, seed=0, key="generated"):
    r = report[key]
    return {"candidate": name, "seed": seed, "minutes": budget, "steps": steps, **{c: r[c] for c in COLUMNS}}


def summarise(rows, budget):
    """Per candidate at one budget: the median FID and KL over its seeds and its worst seed's FID."""
    out = []
    for name in dict.fromkeys(r["candidate"] for r in rows if r["minutes"] == budget):
        mine = [r for r in rows if r["minutes"] == budget and r["candidate"] == name]
        out.append({"candidate": name, "seeds": len(mine), "fid": float(np.median([r["fid"] for r in mine])),
                    "class_kl": float(np.median([r["class_kl"] for r in mine])),
                    "worst_fid": max(r["fid"] for r in mine),
                    "classes_covered": min(r["classes_covered"] for r in mine)})
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--budgets", type=float, nargs="+", default=[3.0, 10.0])
    parser.add_argument("--candidates", nargs="*", default=list(CANDIDATES))
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=PRESET,key=value,...",
                        help="an extra candidate: a preset with config overrides")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="train each candidate with each seed")
    parser.add_argument("--no-textbook", action="store_true")
    parser.add_argument("--out", default=None, help="keep runs and a results JSON here")
    args = parser.parse_args()
    for spec in args.variant:
        name, _, rest = spec.partition("=")
        preset, *assignments = rest.split(",")
        CANDIDATES[name] = (preset, parse_assignments(assignments))
        args.candidates.append(name)
    root = Path(args.out or tempfile.mkdtemp(prefix="image_quality-"))
    root.mkdir(parents=True, exist_ok=True)
    data_dir = str(SHARED / "mnist")

    def suffix(seed: int) -> str:   # run names carry the seed only when there are several
        return f"-seed{seed}" if len(args.seeds) > 1 else ""

    rows, floor = [], None
    for budget in args.budgets:
        for name in args.candidates:
            preset, extra = CANDIDATES[name]
            for seed in args.seeds:
                cfg = apply_overrides(preset_config(preset), {"dataset": "mnist", "data_dir": data_dir,
                                                              "epochs": 1000, "minutes": budget, "seed": seed, **extra})
                run = train_image(cfg, out=str(root / f"{name}-{budget:g}min{suffix(cfg.seed)}"), progress=False)
                steps = json.loads((run / "checkpoints/last/state.json").read_text())["step"]
                report = evaluate(run, "mnist", data_dir, n=10_000, floor=floor is None, progress=False)
                floor = floor or report.get("real_floor")
                rows.append(row(name, budget, steps, report, cfg.seed))
                say(json.dumps(rows[-1]))
        for seed in [] if args.no_textbook else args.seeds:
            npy = root / f"textbook-{budget:g}min{suffix(seed)}.npy"
            steps, _ = train_textbook(budget, npy, seed)
            report = evaluate(npy, "mnist", data_dir, n=10_000, floor=floor is None, progress=False)
            floor = floor or report.get("real_floor")
            rows.append(row("textbook-dcgan64", budget, steps, report, seed))
            say(json.dumps(rows[-1]))
    header = (f"{'candidate':18s} {'seed':>4s} {'min':>4s} {'steps':>6s} {'FID':>8s} {'KID':>8s} {'prec':>6s} "
              f"{'recall':>6s} {'cls':>4s} {'KL':>7s}")
    say("\n" + header)
    floor_row = {"candidate": "real floor", "seed": 0, "minutes": 0, "steps": 0, **{c: floor[c] for c in COLUMNS}} \
        if floor else None
    for r in rows + ([floor_row] if floor_row else []):
        say(f"{r['candidate']:18s} {r['seed']:4d} {r['minutes']:4g} {r['steps']:6d} {r['fid']:8.2f} {r['kid']:8.3f} "
            f"{r['precision']:6.3f} {r['recall']:6.3f} {r['classes_covered']:4d} {r['class_kl']:7.4f}")
    summaries = {f"{b:g}": summarise(rows, b) for b in args.budgets}
    (root / "results.json").write_text(json.dumps({"rows": rows, "by_candidate": summaries, "real_floor": floor},
                                                  indent=2))
    for budget in args.budgets:
        mine = [r for r in summaries[f"{budget:g}"] if not r["candidate"].startswith("textbook")]
        base = [r for r in summaries[f"{budget:g}"] if r["candidate"].startswith("textbook")]
        if not mine:
            if base:
                n = base[0]["seeds"]
                say(f"SUMMARY image_quality {budget:g} min: textbook only, "
                    f"{f'median of {n} seeds ' if n > 1 else ''}FID {base[0]['fid']:.2f}, KL {base[0]['class_kl']:.4f}")
            continue
        if len(args.seeds) > 1:
            say(f"\n{'candidate':18s} {'seeds':>5s} {'median FID':>10s} {'worst FID':>9s} {'median KL':>9s}  ({budget:g} min)")
            for r in mine:
                say(f"{r['candidate']:18s} {r['seeds']:5d} {r['fid']:10.2f} {r['worst_fid']:9.2f} {r['class_kl']:9.4f}")
        best = min(mine, key=lambda r: r["fid"])
        ratio = f", textbook FID {base[0]['fid']:.2f} → ratio {best['fid'] / base[0]['fid']:.2f}" if base else ""
        median = f"median of {best['seeds']} seeds " if best["seeds"] > 1 else ""
        say(f"SUMMARY image_quality {budget:g} min: best {best['candidate']} {median}FID {best['fid']:.2f}, "
            f"{best['classes_covered']} classes, KL {best['class_kl']:.4f}{ratio}")


if __name__ == "__main__":
    main()
