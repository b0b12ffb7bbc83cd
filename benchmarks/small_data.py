"""Learning from the 5,000 embedded digits: the default run (``electra image train``: dcgan, 1,950 steps on the
embedded set) with and without DiffAugment and other changes, scored against MNIST's test split.

    python benchmarks/small_data.py [--variants none translation,cutout ema=0.995+real_label=0.9] [--seeds 0 1 2]
        [--table]

A variant is an augment policy (``none``, ``translation,cutout``: the ``augment=`` value), ``KEY=VALUE``
overrides joined by ``+``, or ``full-mnist``: the same run on all 60,000 MNIST training digits for the same number
of steps (does the small data set, or the short run, limit the default run?).  Each cell (variant, seed) trains
the default config with it and ``seed=S`` (same steps: the default run's length is a step count), samples 10,000
digits and scores them with ``electra image eval`` against MNIST's test split; it records LeNet-FID, KID,
precision/recall and the last logged D(x), D(G(z)), L_D, L_G (to see whether D takes over at the end), as JSON in
``benchmarks/results/small_data/``.  Cells done are skipped.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SHARED, say, write_cell  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "small_data"
END_KEYS = ("D(x)", "D(G(z))", "L_D", "L_G")


def cell_path(variant: str, seed: int) -> Path:
    return RESULTS / f"{variant.replace(',', '+').replace('=', '-')}-seed{seed}.json"


@functools.cache
def default_steps() -> int:
    """The default run's length in steps: its epochs over the embedded set."""
    from electra.image.config import DEFAULT_PRESET, preset_config
    from electra.image.data import load_dataset

    cfg = preset_config(DEFAULT_PRESET)
    return cfg.epochs * (len(load_dataset(cfg.dataset, "train", None, False)) // cfg.batch_size)


def overrides(variant: str) -> dict[str, str]:
    if variant == "full-mnist":
        return {"dataset": "mnist", "data_dir": str(SHARED / "mnist"), "steps": str(default_steps())}
    if "=" not in variant:
        return {"augment": variant}
    return dict(item.split("=", 1) for item in variant.split("+"))


def run_cell(variant: str, seed: int) -> dict:
    from electra.config import apply_overrides
    from electra.core.metrics import read_metrics
    from electra.image.config import DEFAULT_PRESET, preset_config
    from electra.image.evaluate import evaluate
    from electra.image.train import train_image

    path = cell_path(variant, seed)
    if path.is_file():
        return json.loads(path.read_text())
    cfg = apply_overrides(preset_config(DEFAULT_PRESET), {**overrides(variant), "seed": seed})
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        run = train_image(cfg, out=str(Path(tmp) / "run"), progress=False)
        minutes = (time.perf_counter() - t) / 60
        rows = [r for r in read_metrics(run / "metrics.jsonl") if "L_D" in r]
        tail = rows[-max(1, len(rows) // 10):]   # the last tenth of the run's rows
        report = evaluate(run, "mnist", str(SHARED / "mnist"), n=10_000, floor=False, progress=False, write=False)
    result = {"variant": variant, **overrides(variant), "seed": seed, "steps": rows[-1]["step"],
              "train_minutes": round(minutes, 2),
              **{k: report["generated"][k] for k in ("fid", "kid", "precision", "recall")},
              "end": {k: statistics.mean(r[k] for r in tail) for k in END_KEYS}}
    write_cell(path, result, echo=False)
    say(f"{variant} seed {seed}: FID {result['fid']:.1f} (train {minutes:.1f} min); end " +
        ", ".join(f"{k} {v:.3f}" for k, v in result["end"].items()))
    return result


def table(variants, seeds) -> None:
    say(f"\n{'variant':34s} {'seeds':>5s} {'FID median':>10s} {'FID each':>22s} {'D(x)':>6s} {'D(G(z))':>7s} "
        f"{'L_D':>6s} {'L_G':>6s}")
    for variant in variants:
        done = [json.loads(cell_path(variant, s).read_text()) for s in seeds if cell_path(variant, s).is_file()]
        if not done:
            continue
        fids = [c["fid"] for c in done]
        end = {k: statistics.median(c["end"][k] for c in done) for k in END_KEYS}
        say(f"{variant:34s} {len(done):5d} {statistics.median(fids):10.1f} {' '.join(f'{f:.1f}' for f in fids):>22s} "
            f"{end['D(x)']:6.3f} {end['D(G(z))']:7.3f} {end['L_D']:6.3f} {end['L_G']:6.3f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--variants", nargs="+", default=["none", "translation,cutout"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--table", action="store_true", help="print the cells done, run nothing")
    args = parser.parse_args()
    if not args.table:
        for seed in args.seeds:
            for variant in args.variants:
                run_cell(variant, seed)
    table(args.variants, args.seeds)


if __name__ == "__main__":
    main()
