"""The discriminator as a recogniser: MNIST test error of the semi-supervised GAN (preset ``ssgan``) with 20, 100
and 1,000 labelled digits, over several label draws, beside the same discriminator trained on the same labelled
digits alone (``unlabelled_weight=0``: no unlabelled images, no fakes).  Variants: ``ssgan`` and ``supervised``
classify with D's live weights; ``ssgan-avg`` with the moving average of D's weights, as the paper's test error is
measured, and records the live weights' error beside it; these and the variants built on them keep torch's initial
generator (``g_init=torch``), ``ssgan-avg-paperinit`` is the paper's recipe (the preset with ``augment=none``) and
``ssgan-avg-translation-decay`` the preset as it stands (its labelled digits shifted, the lr at its peak for two
thirds of the run, then linear to 0), ``ssgan-avg-translation`` the same at a constant lr.  Each has an
``-eps8`` twin with torch's default Adam ε in place of the preset's (the paper's ε sits under the square root).

    python benchmarks/semi_supervised.py [--labels 20 100 1000] [--draws 0 1 2] [--epochs 10] [--work DIR]
        [--variants ssgan ssgan-avg supervised ssgan-eps8 …] [--table]

Each cell (variant, labels, draw, epochs) trains ``electra image train --preset ssgan --labels N seed=DRAW`` on full
MNIST (the draw is the run's seed: it picks the labelled digits and the initial weights) and records the test error
after the last epoch (no model selection on the test set), the best epoch's error for reference, and the minutes
it took, as JSON in ``benchmarks/results/semi_supervised/``.  Cells already there are skipped, so the table fills
over several runs.  The paper's schedule is 300 epochs; ``--epochs`` sets how much of it a cell runs.  A cell's
run folder lives under ``--work`` (not committed) and checkpoints every epoch, so a cell stopped part-way (a
session's end) continues from its last epoch when the script runs again; its minutes add up over the calls.  A
cell for more epochs starts from a copy of the same variant's longest shorter run (the lr is constant, so that is
the same training), and its minutes include that run's; ``ssgan-avg-decay`` (the paper's schedule: the peak lr for
two thirds of the run, then linear to 0) decays over its own length: its cell for E epochs is ``ssgan-avg`` for the
first 2E/3 epochs, so it continues a copy of that finished ``ssgan-avg`` run (the same draw and labels, 2E/3 epochs)
with the decay written into the copy's config, and trains from the start where there is none.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SHARED, say, write_cell  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "semi_supervised"
# ssgan-avg: digits recognised by the moving average of D's weights (d_ema 0.9999, the paper's Polyak average); its
# cells also record the live weights' error, which is the plain ssgan cell's figure.  The variants below it keep
# torch's initial generator (g_init=torch), as they were measured; ssgan-avg-paperinit is the paper's recipe (the
# preset without its shifts, at a constant lr), ssgan-avg-translation the preset at a constant lr and
# ssgan-avg-translation-decay the preset as it stands.  The -eps8 variants take torch's default Adam ε (1e-8 outside
# the root) instead of the preset's 1e-4.
# Each variant names its augment and its lr schedule, so that its cells keep their meaning whatever the preset's
# defaults are.
CONSTANT_LR = {"lr_decay": "none"}
AS_MEASURED = {"augment": "none", **CONSTANT_LR}   # what a variant takes unless it names otherwise
# the ssgan preset as it stands, in the variants' terms
PRESET = {"g_init": "paper", "augment": "translation", "lr_decay": "linear", "lr_decay_start": 2 / 3}
VARIANTS = {name: {"g_init": "torch", **AS_MEASURED, **keys} for name, keys in {
    "ssgan": {"d_ema": 0.0}, "ssgan-avg": {}, "supervised": {"unlabelled_weight": 0.0, "d_ema": 0.0},
    # the paper's generator: uniform noise, batch norm without a scale, new fakes and a second batch
    "ssgan-avg-paperg": {"g_noise": "uniform", "g_bn_scale": False, "g_fresh_batch": True},
    "ssgan-avg-fresh": {"g_fresh_batch": True},   # … its generator step alone
    "ssgan-avg-noscale": {"g_bn_scale": False},   # … its batch norm alone
    # the paper's lr schedule: the peak for the first two thirds of the run, then linear to 0
    "ssgan-avg-decay": {"lr_decay": "linear", "lr_decay_start": 2 / 3}}.items()}
VARIANTS.update({name: {**AS_MEASURED, **keys} for name, keys in {
    "ssgan-avg-paperinit": {"g_init": "paper"},   # the generator's initial weights and output as the paper's
    # … and all of the paper's generator (uniform noise, no batch-norm scale, its G step): the port's G exactly
    "ssgan-avg-paper": {"g_noise": "uniform", "g_bn_scale": False, "g_fresh_batch": True, "g_init": "paper"},
    # the preset with CatGAN's class-balance term in D's loss (not the paper's)
    "ssgan-avg-balance": {"g_init": "paper", "class_balance": 1.0},
    "ssgan-avg-balance0.1": {"g_init": "paper", "class_balance": 0.1},
    # the preset with its labelled digits shifted by up to ±3 px (augment=translation; not the paper's)
    "ssgan-avg-translation": {"g_init": "paper", "augment": "translation"},
    # … with the paper's lr schedule, the preset as it stands: its cell for E epochs continues the constant-lr run
    # of 2E/3 epochs
    "ssgan-avg-translation-decay": PRESET,
    # … with CatGAN's class-balance term: the README's 20-label example as a user runs it
    "ssgan-avg-translation-decay-balance0.1": {**PRESET, "class_balance": 0.1},
    "supervised-translation": {"unlabelled_weight": 0.0, "d_ema": 0.0, "augment": "translation"}}.items()})
VARIANTS.update({f"{name}-eps8": {**keys, "adam_eps": 1e-8} for name, keys in list(VARIANTS.items())})


def cell_path(variant: str, labels: int, draw: int, epochs: int) -> Path:
    return RESULTS / f"{variant}-{labels}labels-draw{draw}-{epochs}ep.json"


def minutes_file(run: Path) -> Path:
    """Wall-clock minutes of the earlier calls on a cell's run folder."""
    return run.parent / f"{run.name}.minutes"


def shorter_run(variant: str, labels: int, draw: int, epochs: int, work: Path) -> Path | None:
    """The run folder of the same variant, labels and draw with the most epochs below ``epochs`` (checkpointed)."""
    found = {}
    for folder in work.glob(f"{variant}-{labels}labels-draw{draw}-*ep"):
        n = int(folder.name.rsplit("-", 1)[1][:-2])
        if n < epochs and (folder / "checkpoints").is_dir() and minutes_file(folder).is_file():
            found[n] = folder
    return found[max(found)] if found else None


def schedule_keys(variant: str) -> dict:
    """The variant's lr-schedule keys (``lr_decay``, ``lr_decay_start``, …): what sets a decaying variant apart
    from its constant-lr base."""
    return {k: v for k, v in VARIANTS[variant].items() if k.startswith("lr_")}


def constant_part(variant: str, labels: int, draw: int, epochs: int, work: Path) -> Path | None:
    """For a variant whose lr decays after a share of the run: the finished run of the same variant without the
    decay that stopped where the decay starts (its first epochs are the same training), if one is there."""
    rest = {**{k: v for k, v in VARIANTS[variant].items() if k not in schedule_keys(variant)}, **CONSTANT_LR}
    base = [name for name, keys in VARIANTS.items() if keys == rest]
    start_epoch = epochs * VARIANTS[variant].get("lr_decay_start", 0.0)
    if not base or abs(start_epoch - round(start_epoch)) > 1e-9 or round(start_epoch) == 0:
        return None
    cell = cell_path(base[0], labels, draw, round(start_epoch))
    folder = work / cell.stem
    return folder if cell.is_file() and (folder / "checkpoints").is_dir() and minutes_file(folder).is_file() else None


def run_cell(variant: str, labels: int, draw: int, epochs: int, work: Path) -> dict:
    from electra.config import apply_overrides
    from electra.core.metrics import read_metrics
    from electra.image.config import preset_config
    from electra.image.train import train_image

    path = cell_path(variant, labels, draw, epochs)
    if path.is_file():
        return json.loads(path.read_text())
    run = work / path.stem
    spent = minutes_file(run)
    t = time.perf_counter()
    # a run whose lr decays over its length is not a shorter run trained on: only constant-lr variants continue one
    constant_lr = VARIANTS[variant].get("lr_decay", "none") == "none"
    if (run / "checkpoints").is_dir():
        shorter = None
    elif constant_lr:
        shorter = shorter_run(variant, labels, draw, epochs, work)
    else:
        shorter = constant_part(variant, labels, draw, epochs, work)
    if shorter is not None:
        # the lr is the same up to the shorter run's end, so this cell is that run trained on: continue a copy of it
        shutil.rmtree(run, ignore_errors=True)
        shutil.copytree(shorter, run)
        spent.write_text(minutes_file(shorter).read_text())
        if not constant_lr:   # the decay is not a key a resume may change (it changes the maths): the copy gets it
            config = json.loads((run / "config.json").read_text())
            config.update(schedule_keys(variant))
            (run / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        say(f"{path.stem}: continuing a copy of {shorter.name}")
    resume = (run / "checkpoints").is_dir()
    # minutes of the earlier calls on this run (none where it starts again from nothing)
    earlier = float(spent.read_text()) if resume and spent.is_file() else 0.0
    try:
        if resume:
            train_image(resume=str(run), overrides={"epochs": epochs}, progress=False)
        else:
            shutil.rmtree(run, ignore_errors=True)   # a folder without a checkpoint holds nothing to continue
            cfg = apply_overrides(preset_config("ssgan"), {"dataset": "mnist", "data_dir": str(SHARED / "mnist"),
                                                           "labels": labels, "seed": draw, "epochs": epochs,
                                                           **VARIANTS[variant]})
            train_image(cfg, out=str(run), progress=False)
    finally:   # a call stopped part-way (Ctrl-C, SIGTERM) counts its minutes too: the next call continues its run
        minutes = earlier + (time.perf_counter() - t) / 60
        if run.is_dir():
            spent.write_text(f"{minutes:.3f}\n")
    rows = [r for r in read_metrics(run / "metrics.jsonl") if "test_error" in r]
    errors = [r["test_error"] for r in rows]
    result = {"variant": variant, "labels": labels, "draw": draw, "epochs": epochs,
              "adam_eps": json.loads((run / "config.json").read_text())["adam_eps"],
              "test_error": errors[-1], "best_epoch_error": min(errors), "errors_by_epoch": errors,
              "minutes": round(minutes, 2)}
    if "test_error_live" in rows[-1]:
        result["live_errors_by_epoch"] = [r["test_error_live"] for r in rows]
    write_cell(path, result, echo=False)
    say(f"{variant} {labels} labels draw {draw}: test error {100 * errors[-1]:.2f}% after {epochs} epochs "
        f"({minutes:.1f} min)")
    return result


def table(labels_list, draws, epochs, variants) -> None:
    say(f"\n{'variant':15s} {'labels':>6s} {'epochs':>6s} {'draws':>5s} {'error % (mean ± std)':>21s} "
        f"{'best epoch %':>12s} {'live D %':>8s} {'min/run':>7s}")
    for variant in variants:
        for labels in labels_list:
            done = [json.loads(cell_path(variant, labels, d, epochs).read_text()) for d in draws
                    if cell_path(variant, labels, d, epochs).is_file()]
            if not done:
                continue
            errs = [100 * c["test_error"] for c in done]
            best = [100 * c["best_epoch_error"] for c in done]
            live = [100 * c["live_errors_by_epoch"][-1] for c in done if "live_errors_by_epoch" in c]
            std = statistics.stdev(errs) if len(errs) > 1 else float("nan")
            say(f"{variant:15s} {labels:6d} {epochs:6d} {len(done):5d} {statistics.mean(errs):12.2f} ± {std:5.2f}  "
                f"{statistics.mean(best):12.2f} {statistics.mean(live) if live else float('nan'):8.2f} "
                f"{statistics.mean(c['minutes'] for c in done):7.1f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--labels", nargs="+", type=int, default=[20, 100, 1000])
    parser.add_argument("--draws", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--work", default=str(Path(__file__).resolve().parent / "work" / "semi_supervised"),
                        help="run folders of the cells (kept until a cell is recorded)")
    parser.add_argument("--table", action="store_true", help="print the cells done, run nothing")
    args = parser.parse_args()
    # SIGTERM (a session's end, `kill`) unwinds like Ctrl-C, so the stopped cell's minutes are written
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not args.table:
        Path(args.work).mkdir(parents=True, exist_ok=True)
        for draw in args.draws:            # every setting once before any gets a second draw
            for labels in args.labels:
                for variant in args.variants:
                    run_cell(variant, labels, draw, args.epochs, Path(args.work))
    table(args.labels, args.draws, args.epochs, args.variants)


if __name__ == "__main__":
    main()
