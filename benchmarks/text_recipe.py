"""What makes the ``tiny`` text models leave the unigram stage sooner?  Short pre-trainings of recipe variants on
``gutenberg-40m``, each scored on held-out books with no training.

    python benchmarks/text_recipe.py [--variants objective=mlm objective=mlm+dropout=0] [--steps 1500]
        [--seeds 0] [--heldout-examples 1000] [--table]

A variant is ``KEY=VALUE`` overrides of the ``tiny`` preset joined by ``+`` (``objective=mlm`` for the masked-LM
model; ``seq_len=32+batch_size=128`` trains on rows of 32 tokens, the same tokens per step, from shards of that
length made once beside ``text_quality.py``'s; ``A>B`` trains variant A, then B for as many steps again from A's
model, ``electra text pretrain --init-from``). Each cell (variant, steps, seed) pre-trains for a fixed number of steps on the
shards that ``text_quality.py`` prepares (one pass at most: no text repeats), with the lr decaying to 0 at the last
step, then runs ``electra text eval`` on gutenberg-40m's held-out books at 15% masking: masked-LM loss (of the
generator, or of the MLM model), its word-order gain (the loss with each row's context shuffled, minus it) and, for
RTD, the discriminator's AUC — on rows of 128 tokens and again on rows of 32 (a model trained on short rows has
untrained positions beyond them) — and BLiMP accuracy (``electra text blimp``, 100 pairs per phenomenon). It records
those, the wall time and tokens/s, and the training MLM loss every 250 steps (where the unigram plateau shows), as
JSON in ``benchmarks/results/text_recipe/``. The unigram cross-entropy of the held-out tokens (the loss of a model
that ignores context) is recorded once, as the ``unigram`` cell. Cells done are skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import SHARED, say, write_cell  # noqa: E402
from text_quality import HELDOUT, VOCAB, corpus_shards  # noqa: E402

RESULTS = HERE / "results" / "text_recipe"
CURVE_EVERY = 250
EVAL_MASK_PROB = 0.15   # every variant scored at one masking rate, whatever rate it trains at
BLIMP_PER_PHENOMENON = 100
SHORT_ROWS = 32         # … and also on rows of this many tokens, where variants trained on short rows compare


def cell_path(name: str) -> Path:
    return RESULTS / f"{name.replace('=', '-').replace('>', '_then_')}.json"


def run_folder(work: Path, variant: str, steps: int, seed: int) -> Path:
    return work / f"{variant}-{steps}steps-seed{seed}".replace(">", "_then_")


def record(name: str, values: dict) -> dict:
    return write_cell(cell_path(name), values)


def overrides(variant: str) -> dict[str, str]:
    return {} if variant == "none" else dict(item.split("=", 1) for item in variant.split("+"))


def unigram_cell(shards: Path, work: Path) -> dict:
    """Cross-entropy (nats) of gutenberg-40m's held-out tokens under the training shards' unigram distribution
    (add-one smoothed), over the same kind of tokens the MLM loss is taken on: every non-special token."""
    import numpy as np

    from electra.text.corpus import TokenShards, prepare_corpus
    from electra.text.tokenizer import load_tokenizer, special_ids

    if cell_path("unigram").is_file():
        return json.loads(cell_path("unigram").read_text())
    special = sorted(special_ids(load_tokenizer(shards / "tokenizer")).values())

    def counts(folder: Path) -> np.ndarray:
        data = TokenShards(folder)
        total = np.zeros(VOCAB, dtype=np.int64)
        for start in range(0, data.rows, 20_000):
            rows = data.rows_at(np.arange(start, min(start + 20_000, data.rows)))
            total += np.bincount(rows.ravel(), minlength=VOCAB)
        total[special] = 0
        return total

    heldout = work / "heldout-shards"
    if not (heldout / "manifest.json").is_file():
        prepare_corpus([str(HELDOUT["gutenberg"])], shards / "tokenizer", 128, heldout, documents="blank-line")
    train, test = counts(shards), counts(heldout)
    p = (train + 1) / (train + 1).sum()
    return record("unigram", {"heldout_tokens": int(test.sum()),
                              "cross_entropy": round(float(-(test * np.log(p)).sum() / test.sum()), 4)})


def run_cell(variant: str, steps: int, seed: int, shards: Path, work: Path, heldout_examples: int) -> dict:
    from electra.config import apply_overrides
    from electra.core.metrics import read_metrics
    from electra.text.config import preset_config
    from electra.text.pretrain import pretrain

    name = f"{variant}-{steps}steps-seed{seed}"
    run = run_folder(work, variant, steps, seed)
    first, _, last = variant.rpartition(">")   # "A>B": B continues from A's model (A trained first if needed)
    if cell_path(name).is_file():
        cell = json.loads(cell_path(name).read_text())
        if (run / "config.json").is_file() and not all(k in cell for k in ("heldout_short", "blimp")):
            cell["heldout"] = heldout_figures(run, heldout_examples, 128)   # a cell older than these figures
            cell["heldout_short"] = heldout_figures(run, heldout_examples, SHORT_ROWS)
            cell["blimp"] = blimp_figures(run)
            record(name, cell)
        return cell
    cfg = apply_overrides(preset_config("tiny"), {**overrides(last), "steps": str(steps), "seed": str(seed),
                                                  "log_every": "50", "checkpoint_every": "500",
                                                  "plateau_check_step": "0"})
    t = time.perf_counter()
    trained = (run / "metrics.jsonl").is_file() and any(r.get("step") == steps
                                                         for r in read_metrics(run / "metrics.jsonl"))
    if trained:
        say(f"{name}: trained to step {steps} by an earlier call; scoring it")
    elif (run / "config.json").is_file():
        pretrain(resume=str(run), progress=False)
    else:
        start = None
        if first:
            run_cell(first, steps, seed, shards, work, heldout_examples)
            start = str(run_folder(work, first, steps, seed))
        pretrain(cfg, data=str(corpus_shards(shards.parent, cfg.seq_len)), out=str(run), init_from=start,
                 progress=False)
    seconds = time.perf_counter() - t
    rows = [r for r in read_metrics(run / "metrics.jsonl") if "mlm_loss" in r]
    curve = {str(r["step"]): round(r["mlm_loss"], 3) for r in rows if r["step"] % CURVE_EVERY == 0}
    return record(name, {
        "variant": variant, "steps": steps, "seed": seed, "seconds_this_call": round(seconds),
        "tokens_per_s_last": round(rows[-1].get("tokens_per_s", 0)) if rows else None,
        "train_mlm_loss_curve": curve, "heldout": heldout_figures(run, heldout_examples, 128),
        "heldout_short": heldout_figures(run, heldout_examples, SHORT_ROWS), "blimp": blimp_figures(run)})


def blimp_figures(run: Path) -> dict:
    """BLiMP accuracy per scorer on a seeded subset of BLIMP_PER_PHENOMENON pairs of each phenomenon."""
    from electra.text.blimp import score_blimp

    report = score_blimp(run, SHARED / "blimp", BLIMP_PER_PHENOMENON, out=run / "blimp.json")
    return {"per_phenomenon": BLIMP_PER_PHENOMENON,
            **{scorer: round(figures["overall"], 4) for scorer, figures in report["scorers"].items()}}


def heldout_figures(run: Path, examples: int, seq_len: int) -> dict:
    from electra.text.heldout import evaluate_text

    report = evaluate_text(run, [HELDOUT["gutenberg"]], max_examples=examples, seq_len=seq_len,
                           mask_prob=EVAL_MASK_PROB, out=run / f"eval-valid-{seq_len}.json")
    return {k: round(report[k], 4) for k in ("mlm_loss", "order_gain", "disc_auc") if k in report}


def table(variants, steps, seeds) -> None:
    unigram = json.loads(cell_path("unigram").read_text()) if cell_path("unigram").is_file() else {}
    say(f"unigram cross-entropy of the held-out books: {unigram.get('cross_entropy', float('nan')):.3f} nats")
    say(f"{'variant':56s} {'seed':>4s} {'steps':>6s} {'s':>6s} {'MLM loss':>8s} {'order':>6s} {'AUC':>6s} "
        f"{'at ' + str(SHORT_ROWS):>8s} {'order':>6s} {'BLiMP':>6s}  train MLM loss by step")
    for variant in variants:
        for seed in seeds:
            path = cell_path(f"{variant}-{steps}steps-seed{seed}")
            if not path.is_file():
                continue
            c = json.loads(path.read_text())
            curve = " ".join(f"{v:.2f}" for v in c["train_mlm_loss_curve"].values())
            held, short, nan = c["heldout"], c.get("heldout_short", {}), float("nan")
            say(f"{variant:56s} {seed:4d} {steps:6d} {c['seconds_this_call']:6d} {held['mlm_loss']:8.3f} "
                f"{held.get('order_gain', nan):6.3f} {held.get('disc_auc', nan):6.3f} "
                f"{short.get('mlm_loss', nan):8.3f} {short.get('order_gain', nan):6.3f} "
                f"{100 * c.get('blimp', {}).get('generator', nan):6.1f}  {curve}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--variants", nargs="+", default=["objective=mlm", "objective=mlm+dropout=0"])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--heldout-examples", type=int, default=1000)
    parser.add_argument("--work", default=str(HERE / "work" / "text_recipe"))
    parser.add_argument("--table", action="store_true", help="print the cells done, run nothing")
    args = parser.parse_args()
    if not args.table:
        work = Path(args.work)
        work.mkdir(parents=True, exist_ok=True)
        shards = corpus_shards(HERE / "work" / "text_quality")
        unigram_cell(shards, work)
        for variant in args.variants:
            for seed in args.seeds:
                run_cell(variant, args.steps, seed, shards, work, args.heldout_examples)
    table(args.variants, args.steps, args.seeds)


if __name__ == "__main__":
    main()
