"""Does the pre-training pay?  RTD, RTD + GDES, MLM and no pre-training at equal CPU-minutes, on a real corpus.

    python benchmarks/text_quality.py [--budgets 15 60] [--models rtd gdes mlm random mlm-2phase rtd-2phase
        gdes-2phase rtd-2phase-halfdepth]
        [--work DIR]
        [--blimp-per-phenomenon 100] [--sst2-seeds 3] [--cola-seeds 5] [--only pretrain|zero-shot|finetune]
        [--tasks sst-2 cola] [--finetune-lr LR]

Pre-trains the ``tiny`` preset on ``gutenberg-40m`` (one pass at most: 60 minutes at ~10k tokens/s is ~36M of its
~55M tokens, so no text repeats) for a wall-clock budget (``minutes=``; the lr decays to 0 by the budget's end),
then measures each model: held-out figures on ``gutenberg-40m/valid`` and ``wiki-leads`` (``electra text eval``),
BLiMP (``electra text blimp``, generator PLL and discriminator; a seeded subset per phenomenon), SST-2 dev accuracy
fine-tuned on the full training set (median of seeds) and CoLA dev MCC (median of seeds).  ``random`` is the same
architecture with fresh weights, through the same measures.

``mlm-2phase``, ``rtd-2phase`` and ``gdes-2phase`` (RTD with GDES) are the recipe that leaves the unigram stage
(``text_recipe.py``): dropout 0, half the budget on rows of 32 tokens (batch 128: the same tokens per step), then the
other half on the 128-token rows from that model (``pretrain --init-from``); their generator is as wide as the
discriminator (the ¼-width one, 32 wide at ``tiny``, and the ½-width one do not leave the bag of words);
``rtd-2phase-halfdepth``'s has half the discriminator's layers, which makes its tokens cheaper.  Their budgets are
FLOP budgets at any size, and they fine-tune with the preset's dropout (0.1), as the other models do.

Budgets of up to 15 minutes are wall-clock (``minutes=``), to be run with nothing else on the machine.  Larger ones
are compute budgets: ``PFLOP_PER_MINUTE`` × minutes of useful training FLOPs (0.2 PFLOP for 60: four times the
15-minute cells' mean of 0.05), turned into a step count per model (an MLM step costs less than an RTD step, so
the MLM model takes more steps) with the lr decaying to 0 at the last step.  Such a cell is the same whatever else
the machine is doing, so it can run in the background, at one thread, and over several sessions: it continues
from its last checkpoint (every 500 steps).

Every finished cell writes a small JSON under ``benchmarks/results/text_quality/`` and is skipped when the script
runs again, so the table fills over several runs; models and shards live under ``--work`` (not committed).  A
recorded cell whose model is gone (a fresh checkout) trains again to the recorded step count, wall-clock cells
included, and records ``NAME-pretrain-again`` beside the original, so later seeds fine-tune the same recipe.  The
table is printed from whatever cells exist.  ``--finetune-lr LR`` fine-tunes at another peak lr than the recipe's,
in cells of their own (``NAME-sst-2-lrLR``), and the table shows those.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import SHARED, peak_rss_mb, say, write_cell  # noqa: E402
from electra.core.metrics import read_metrics  # noqa: E402

RESULTS = HERE / "results" / "text_quality"
CORPUS = SHARED / "text" / "gutenberg-40m"
HELDOUT = {"gutenberg": CORPUS / "valid.txt.gz", "wiki": SHARED / "text" / "wiki-leads" / "valid.txt.gz"}
MODELS = {"rtd": {"objective": "rtd"}, "gdes": {"objective": "rtd", "embedding_sharing": "gdes"},
          "mlm": {"objective": "mlm"}, "random": None,
          # two phases, half the budget each: rows of SHORT_ROWS tokens (4× the rows per step, the same tokens), then
          # the 128-token rows from that model; dropout 0 (fine-tuning puts the preset's 0.1 back)
          "mlm-2phase": {"objective": "mlm", "dropout": "0"},
          "rtd-2phase": {"objective": "rtd", "dropout": "0", "generator_width": "1"},
          "gdes-2phase": {"objective": "rtd", "dropout": "0", "generator_width": "1", "embedding_sharing": "gdes"},
          # a generator as wide as the discriminator at half its depth: a cheaper token than rtd-2phase's
          "rtd-2phase-halfdepth": {"objective": "rtd", "dropout": "0", "generator_width": "1",
                                   "generator_layers": "0.5"}}
TWO_PHASE = {"mlm-2phase", "rtd-2phase", "gdes-2phase", "rtd-2phase-halfdepth"}
SHORT_ROWS = 32
VOCAB = 8192
WALL_CLOCK_UP_TO = 15          # minutes; larger budgets are FLOP budgets
PFLOP_PER_MINUTE = 0.2 / 60    # the 15-minute cells alone: 0.044 (RTD), 0.052 (GDES), 0.054 (MLM) PFLOP


def cell_path(name: str) -> Path:
    return RESULTS / f"{name}.json"


def done(name: str) -> dict | None:
    path = cell_path(name)
    return json.loads(path.read_text()) if path.is_file() else None


def record(name: str, values: dict) -> dict:
    return write_cell(cell_path(name), values)


def corpus_shards(work: Path, seq_len: int = 128) -> Path:
    """The tokenizer and shards of the whole training corpus (made once; the prepare cell records its speed), in
    rows of 128 tokens (``shards``) or of another length (``shards-L``, made once from the same tokenizer)."""
    from electra.text.corpus import prepare_corpus
    from electra.text.tokenizer import train_tokenizer

    files = sorted(str(p) for p in CORPUS.glob("train-*.txt.gz"))
    tokenizer, shards = work / "tokenizer", work / "shards"
    if seq_len != 128:
        folder = work / f"shards-{seq_len}"
        if not (folder / "manifest.json").is_file():
            prepare_corpus(files, corpus_shards(work) / "tokenizer", seq_len, folder, documents="blank-line")
        return folder
    # a work folder made again (a fresh checkout) leaves the recorded cells as they are: the results cite them
    if not (tokenizer / "vocab.txt").is_file():
        t = time.perf_counter()
        train_tokenizer(files, VOCAB, tokenizer)
        if not done("corpus-tokenizer"):
            record("corpus-tokenizer", {"seconds": round(time.perf_counter() - t, 1), "vocab": VOCAB,
                                        "peak_rss_mb": round(peak_rss_mb())})
    if not (shards / "manifest.json").is_file():
        t = time.perf_counter()
        prepare_corpus(files, tokenizer, 128, shards, documents="blank-line")
        seconds = time.perf_counter() - t
        manifest = json.loads((shards / "manifest.json").read_text())
        compressed = sum(Path(f).stat().st_size for f in files)
        if not done("corpus-prepare"):
            record("corpus-prepare", {"seconds": round(seconds, 1), "compressed_mb": round(compressed / 1e6, 1),
                                      "compressed_mb_per_s": round(compressed / 1e6 / seconds, 2),
                                      "rows": manifest["rows"], "tokens": manifest["tokens"],
                                      "documents": manifest["documents"], "peak_rss_mb": round(peak_rss_mb())})
    return shards


def loading_cell(shards: Path, rounds: int = 5, steps: int = 8) -> None:
    """Is data loading a bottleneck?  ``tiny`` training steps fed from the real shards vs from random ids already
    in memory (the synthetic throughput benchmark's batches), in alternating rounds; medians."""
    import tempfile

    from common import median
    from electra.text.config import preset_config
    from electra.text.corpus import TokenShards
    from text_throughput import project_trainer, random_batches

    if done("loading"):
        return
    cfg = preset_config("tiny")
    feeds = {"shards": TokenShards(shards).batches(cfg.batch_size, seed=0),
             "synthetic": random_batches(VOCAB, cfg.batch_size, cfg.seq_len)}
    with tempfile.TemporaryDirectory() as tmp:
        for name in feeds:
            (Path(tmp) / name).mkdir()
        runs = {name: project_trainer(cfg, VOCAB, feed, Path(tmp) / name) for name, feed in feeds.items()}
        for run in runs.values():
            run(2)   # warm-up
        rates: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(rounds):
            for name, run in runs.items():
                rates[name].append(run(steps))
    medians = {name: round(median(r)) for name, r in rates.items()}
    record("loading", {"tokens_per_s": medians, "ratio": round(medians["shards"] / medians["synthetic"], 3),
                       "rounds": rounds, "steps_per_round": steps})


def random_model(shards: Path, out: Path) -> Path:
    """The tiny architecture with fresh weights (generator and discriminator), exported like a run."""
    from electra.text.config import preset_config
    from electra.text.models import build_rtd_models, export_hf

    if not (out / "discriminator" / "config.json").is_file():
        export_hf(build_rtd_models(preset_config("tiny"), VOCAB), out, shards / "tokenizer")
    return out


def last_step(run: Path) -> int:
    rows = read_metrics(run / "metrics.jsonl")
    return rows[-1]["step"] if rows else 0


def train_to(cfg, data: Path, run: Path, init_from: Path | None = None) -> None:
    """Pre-train ``run`` to ``cfg.steps``: from scratch (or from ``init_from``'s model), continuing a stopped run,
    or nothing when it is there."""
    from electra.text.pretrain import pretrain

    if last_step(run) >= cfg.steps:
        return
    if (run / "config.json").is_file():
        pretrain(resume=str(run), progress=False)
    else:
        pretrain(cfg, data=str(data), out=str(run), init_from=str(init_from) if init_from else None, progress=False)


def pretrain_cell(model: str, minutes: float, shards: Path, work: Path) -> Path:
    from electra.config import apply_overrides
    from electra.text.config import preset_config
    from text_throughput import random_batches, useful_flops_per_token

    name = f"{model}-{minutes:g}min"
    run = work / name
    if model == "random":
        return random_model(shards, run)
    recorded = done(f"{name}-pretrain")
    # a recorded cell whose model is gone or unfinished (models are not committed) trains again to the recorded step
    # count, a wall-clock cell too (its minutes on another machine would be another model); its figures go to a
    # ``-again`` cell, so the recorded one stays and the two runs can be compared
    if recorded and last_step(run) >= recorded["steps"]:
        return run
    base = apply_overrides(preset_config("tiny"), {**MODELS[model], "checkpoint_every": 500, "log_every": 100,
                                                   "plateau_check_step": 0})
    flops = lambda cfg: useful_flops_per_token(  # noqa: E731
        cfg, VOCAB, random_batches(VOCAB, cfg.batch_size, cfg.seq_len)(0))
    t = time.perf_counter()
    if model in TWO_PHASE:
        # FLOP budgets at any length: the two phases share PFLOP_PER_MINUTE × minutes equally
        short = apply_overrides(base, {"seq_len": SHORT_ROWS, "batch_size": base.batch_size * 128 // SHORT_ROWS})
        phases = [(short, corpus_shards(work, SHORT_ROWS), work / f"{name}-short-rows"), (base, shards, run)]
        budget, done_phases, start = "flops, two phases", [], None
        for cfg, data, folder in phases:
            per_token = flops(cfg)
            steps = round(PFLOP_PER_MINUTE * minutes * 1e15 / 2 / (per_token * cfg.batch_size * cfg.seq_len))
            cfg = apply_overrides(cfg, {"steps": steps})
            train_to(cfg, data, folder, start)
            done_phases.append((cfg, folder, per_token))
            start = folder
    else:
        per_token = flops(base)
        if recorded:
            budget, length = "steps" if minutes <= WALL_CLOCK_UP_TO else "flops", {"steps": recorded["steps"]}
        elif minutes <= WALL_CLOCK_UP_TO:
            budget, length = "wall-clock", {"minutes": minutes, "steps": 1_000_000}
        else:
            budget = "flops"
            length = {"steps": round(PFLOP_PER_MINUTE * minutes * 1e15 / (per_token * base.batch_size * base.seq_len))}
        cfg = apply_overrides(base, length)
        train_to(cfg, shards, run)
        done_phases = [(cfg, run, per_token)]
    tokens = pflop = 0.0
    for cfg, folder, per_token in done_phases:   # a wall-clock run's step count is known once it has run
        phase_tokens = last_step(folder) * cfg.batch_size * cfg.seq_len
        tokens, pflop = tokens + phase_tokens, pflop + per_token * phase_tokens / 1e15
    rows = read_metrics(run / "metrics.jsonl")
    tail = [r for r in rows if "mlm_loss" in r][-5:]
    record(f"{name}-pretrain" + ("-again" if recorded else ""), {
        "model": model, "minutes": minutes, "budget": budget, "steps": rows[-1]["step"],
        "phases": [{"seq_len": cfg.seq_len, "batch_size": cfg.batch_size, "steps": last_step(folder)}
                   for cfg, folder, _ in done_phases],
        "tokens_seen": int(tokens), "pflop": round(pflop, 3), "seconds_this_call": round(time.perf_counter() - t),
        "tokens_per_s_last": round(rows[-1].get("tokens_per_s", 0)),
        "final_train": {k: round(sum(r[k] for r in tail) / len(tail), 4) for k in tail[-1]
                        if k in ("mlm_loss", "disc_loss", "disc_auc")}})
    return run


def zero_shot_cell(model: str, minutes: float, run: Path, blimp_n: int) -> None:
    from electra.text.blimp import score_blimp
    from electra.text.heldout import evaluate_text

    name = f"{model}-{minutes:g}min"
    if not done(f"{name}-heldout"):
        figures = {}
        for corpus, path in HELDOUT.items():
            report = evaluate_text(run, [path], max_examples=2000, out=run / f"eval-{corpus}.json", seq_len=128)
            figures[corpus] = {k: report[k] for k in ("mlm_loss", "mlm_ppl", "disc_auc", "disc_loss") if k in report}
        record(f"{name}-heldout", figures)
    if not done(f"{name}-blimp"):
        t = time.perf_counter()
        report = score_blimp(run, SHARED / "blimp", blimp_n, out=run / "blimp.json")
        record(f"{name}-blimp", {"per_phenomenon": blimp_n, "seconds": round(time.perf_counter() - t),
                                 **{s: {"overall": r["overall"], "fields": r["fields"]}
                                    for s, r in report["scorers"].items()}})
    if not done(f"{name}-blimp-l2r"):   # the generator's PLL-word-l2r (a word's later pieces masked too)
        t = time.perf_counter()
        report = score_blimp(run, SHARED / "blimp", blimp_n, out=run / "blimp-l2r.json", pll="word-l2r")
        if "generator" in report["scorers"]:
            r = report["scorers"]["generator"]
            record(f"{name}-blimp-l2r", {"per_phenomenon": blimp_n, "seconds": round(time.perf_counter() - t),
                                         "generator": {"overall": r["overall"], "fields": r["fields"]}})


def finetune_name(model: str, minutes: float, task: str, lr: float | None) -> str:
    """A fine-tuning cell's name; a peak lr other than the recipe's (``--finetune-lr``) is part of it."""
    return f"{model}-{minutes:g}min-{task}" + (f"-lr{lr:g}" if lr else "")


def finetune_cell(model: str, minutes: float, run: Path, task: str, seeds: int, work: Path,
                  lr: float | None = None) -> None:
    from electra.text.config import preset_config
    from electra.text.finetune import finetune

    name = finetune_name(model, minutes, task, lr)
    recorded = (done(name) or {}).get("per_seed", [])
    if len(recorded) >= seeds:
        return
    out = work / name
    # a model pre-trained without dropout fine-tunes with the preset's, as the others do
    dropout = {"dropout": preset_config("tiny").dropout} if "dropout" in (MODELS[model] or {}) else {}
    t = time.perf_counter()
    if (out / "config.json").is_file():   # an unfinished seed continues; a recorded cell may gain seeds
        first = json.loads((out / "config.json").read_text()).get("seed", 0)
        result = finetune(resume=out, progress=False, overrides={"seeds": seeds - first})
    else:
        # seeds recorded by a folder that is gone are kept; only the missing ones are trained
        first = len(recorded)
        result = finetune(run, task, SHARED / "glue", out=out, progress=False,
                          overrides={"seed": first, "seeds": seeds - first, **dropout, **({"lr": lr} if lr else {})})
    split = list(result["median"])[0]
    metric = result["main_metric"]
    per_seed = recorded[:first] + [s["scores"][split][metric] for s in result["seeds"]]
    record(name, {"task": task, "metric": metric, "median": statistics.median(per_seed), "per_seed": per_seed,
                  "seconds_this_call": round(time.perf_counter() - t)})


def cells(budgets, models) -> list[tuple[str, float]]:
    """(model, minutes) in the order they run: the untrained model once (as 0 minutes), then each budget."""
    return ([("random", 0.0)] if "random" in models else []) + [
        (m, b) for b in budgets for m in models if m != "random"]


def table(budgets, models, lr: float | None = None) -> None:
    say(f"\n{'model':10s} {'min':>4s} {'tokens':>7s} {'PFLOP':>6s} {'MLM gut':>8s} {'MLM wiki':>8s} "
        f"{'AUC gut':>7s} {'AUC wiki':>8s} {'BLiMP G':>7s} {'G l2r':>6s} {'BLiMP D':>7s} {'SST-2':>6s} {'CoLA':>6s}")
    for model, minutes in cells(budgets, models):
        name = f"{model}-{minutes:g}min"
        pre, held, blimp = done(f"{name}-pretrain") or {}, done(f"{name}-heldout") or {}, done(f"{name}-blimp") or {}
        l2r = (done(f"{name}-blimp-l2r") or {}).get("generator", {}).get("overall", float("nan"))
        sst, cola = (done(finetune_name(model, minutes, task, lr)) or {} for task in ("sst-2", "cola"))
        fig = lambda corpus, key: held.get(corpus, {}).get(key, float("nan"))  # noqa: E731
        say(f"{model:10s} {minutes:4g} {pre.get('tokens_seen', 0) / 1e6:6.1f}M {pre.get('pflop', 0):6.2f} "
            f"{fig('gutenberg', 'mlm_loss'):8.3f} {fig('wiki', 'mlm_loss'):8.3f} {fig('gutenberg', 'disc_auc'):7.3f} "
            f"{fig('wiki', 'disc_auc'):8.3f} {100 * blimp.get('generator', {}).get('overall', float('nan')):7.1f} "
            f"{100 * l2r:6.1f} "
            f"{100 * blimp.get('discriminator', {}).get('overall', float('nan')):7.1f} "
            f"{100 * sst.get('median', float('nan')):6.1f} {100 * cola.get('median', float('nan')):6.1f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budgets", nargs="+", type=float, default=[15, 60])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--work", default=str(HERE / "work" / "text_quality"))
    parser.add_argument("--blimp-per-phenomenon", type=int, default=100)
    parser.add_argument("--sst2-seeds", type=int, default=3,
                        help="seeds per SST-2 cell; a cell recorded with fewer gains seeds when run with more")
    parser.add_argument("--cola-seeds", type=int, default=5)
    parser.add_argument("--only", choices=["pretrain", "zero-shot", "finetune"], default=None)
    parser.add_argument("--tasks", nargs="+", default=["sst-2", "cola"], choices=["sst-2", "cola"],
                        help="the fine-tuning cells to run (CoLA's are the quick ones)")
    parser.add_argument("--finetune-lr", type=float, default=None,
                        help="fine-tune at this peak lr in place of the recipe's (3e-4 at tiny); its own cells")
    parser.add_argument("--table", action="store_true", help="print the table of the cells done, run nothing")
    args = parser.parse_args()
    if not args.table:
        work = Path(args.work)
        work.mkdir(parents=True, exist_ok=True)
        shards = corpus_shards(work)
        loading_cell(shards)
        for model, minutes in cells(args.budgets, args.models):
            run = pretrain_cell(model, minutes, shards, work)
            if args.only in (None, "zero-shot"):
                zero_shot_cell(model, minutes, run, args.blimp_per_phenomenon)
            if args.only in (None, "finetune"):
                for task in args.tasks:
                    finetune_cell(model, minutes, run, task, {"sst-2": args.sst2_seeds, "cola": args.cola_seeds}[task],
                                  work, args.finetune_lr)
    table(args.budgets, args.models, args.finetune_lr)


if __name__ == "__main__":
    main()
