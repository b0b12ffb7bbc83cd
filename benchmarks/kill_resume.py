"""SIGKILL every long job at many random moments, resume it each time, and compare with an uninterrupted run.

    python benchmarks/kill_resume.py [--kills 20] [--seed 0] [--jobs image pretrain prepare finetune classifier]

For each job: one uninterrupted reference run, then one run that is killed at ``--kills`` random moments (uniform
over the reference's wall-clock, start-up included), each time continued the way a user would (``--resume`` once the
run folder has its config, else the first command again; for ``prepare`` and the evaluation classifier the same
command), and finally run to its end.  It prints, per job, the kills that landed, the resumes, weight mismatches against the reference and files
left unreadable after any kill (goal: 0 and 0), and writes the table to benchmarks/results/kill_resume.json.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from common import SHARED  # noqa: E402
from resume_helpers import finished, killed_after, next_command, run_electra, same_weights, unreadable_files  # noqa: E402


def _timed(*argv: str, env: dict | None = None) -> float:
    t = time.perf_counter()
    result = run_electra(*argv, env=env)
    if result.returncode != 0:
        raise SystemExit(f"reference run failed: {result.stderr[-1000:]}")
    return time.perf_counter() - t


def _kill_loop(name: str, seconds: float, command: Callable[[], list[str]], done: Callable[[], bool],
               watched: Path, kills: int, rng: random.Random, span: float, env: dict | None = None) -> dict:
    """Kill ``command()`` at random moments in [0.5 s, span × the reference's seconds] until ``kills`` landed or
    the job finished, checking ``watched`` for unreadable files after each; then run it to its end."""
    landed = resumes = unreadable = attempts = 0
    while landed < kills and attempts < 3 * kills and not done():
        argv = command()
        resumes += "--resume" in argv or attempts > 0
        landed += killed_after(rng.uniform(0.5, max(1.0, span * seconds)), *argv, env=env)
        attempts += 1
        unreadable += len(unreadable_files(watched)) if watched.exists() else 0
    if not done():
        result = run_electra(*command(), env=env)
        if result.returncode != 0:
            raise SystemExit(f"{name}: the final run failed: {result.stderr[-1000:]}")
    return {"job": name, "kills": landed, "resumes": resumes,
            "unreadable": unreadable + (len(unreadable_files(watched)) if watched.exists() else 0),
            "reference_seconds": round(seconds, 1)}


def _training_job(first: list[str], total: int, root: Path, name: str, kills: int, rng: random.Random) -> dict:
    reference = root / f"{name}-reference"
    seconds = _timed(*first, "--out", str(reference))
    run = root / f"{name}-killed"
    new_run, resume = [*first, "--out", str(run)], [first[0], first[1], "--resume", str(run), "--quiet"]
    # kill moments within the first fifth of a run's length: each resumed attempt then keeps only a little progress,
    # so the job sees many kills (in start-up, mid-step, mid-checkpoint) before it can finish
    row = _kill_loop(name, seconds, lambda: next_command(run, new_run, resume), lambda: finished(run, total), run,
                     kills, rng, span=0.2)
    return {**row, "mismatches": int(not same_weights(reference, run))}


def _finetune_job(first: list[str], root: Path, kills: int, rng: random.Random) -> dict:
    """Fine-tuning: several seeds, checkpoints within each; the results and every seed's model must match."""
    reference = root / "finetune-reference"
    seconds = _timed(*first, "--out", str(reference))
    run = root / "finetune-killed"
    new_run, resume = [*first, "--out", str(run)], ["text", "finetune", "--resume", str(run), "--quiet"]
    row = _kill_loop("finetune", seconds, lambda: next_command(run, new_run, resume),
                     lambda: (run / "results.json").is_file(), run, kills, rng, span=0.25)
    seeds = lambda r: json.loads((r / "results.json").read_text())["seeds"]  # noqa: E731
    same = seeds(reference) == seeds(run) and all(
        _same_tree(reference / s.name / "model", s / "model") for s in sorted(run.glob("seed-*")))
    return {**row, "mismatches": int(not same)}


def _same_tree(a: Path, b: Path) -> bool:
    files = lambda root: {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}  # noqa: E731
    return files(a) == files(b)


def _prepare_job(texts: list[Path], tokenizer: Path, root: Path, kills: int, rng: random.Random) -> dict:
    argv = ["text", "prepare", "--files", *map(str, texts), "--tokenizer", str(tokenizer), "--seq-len", "64"]
    reference = root / "prepare-reference"
    seconds = _timed(*argv, "--out", str(reference))
    out = root / "prepare-killed"   # each attempt starts again from zero
    row = _kill_loop("prepare", seconds, lambda: [*argv, "--out", str(out)], out.exists, out, kills, rng, span=0.6)
    return {**row, "mismatches": int(not _same_tree(reference, out))}


def _classifier_job(argv: list[str], root: Path, kills: int, rng: random.Random) -> dict:
    """The evaluation classifier, trained once by ``image eval`` and cached: a killed training leaves no cache
    file, and the next eval trains it again; the cached file must equal an uninterrupted one byte for byte."""
    caches = {k: root / f"cache-{k}" for k in ("reference", "killed")}
    seconds = _timed(*argv, env={"XDG_CACHE_HOME": str(caches["reference"])})
    cached = lambda k: sorted((caches[k] / "electra" / "classifiers").glob("*.safetensors"))  # noqa: E731
    row = _kill_loop("classifier", seconds, lambda: argv, lambda: bool(cached("killed")), caches["killed"], kills,
                     rng, span=0.9, env={"XDG_CACHE_HOME": str(caches["killed"])})
    same = len(cached("killed")) == 1 and cached("reference")[0].read_bytes() == cached("killed")[0].read_bytes()
    return {**row, "mismatches": int(not same)}


JOBS = ["image", "pretrain", "prepare", "finetune", "classifier"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", nargs="+", default=JOBS, choices=JOBS)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        from conftest import make_digits
        from electra.image.idx import write_idx
        from electra.text.tokenizer import train_tokenizer
        from text_fixtures import write_corpus

        mnist = root / "mnist"
        mnist.mkdir()
        images, labels = make_digits(320, seed=1)
        write_idx(mnist / "train-images-idx3-ubyte.gz", images)
        write_idx(mnist / "train-labels-idx1-ubyte.gz", labels)
        write_idx(mnist / "t10k-images-idx3-ubyte.gz", images[:100])   # the evaluation classifier's test split
        write_idx(mnist / "t10k-labels-idx1-ubyte.gz", labels[:100])
        text = write_corpus(root / "corpus.txt", documents=3000)
        tokenizer = train_tokenizer([str(text)], 200, root / "tokenizer", min_frequency=1)
        if "image" in args.jobs:
            image = ["image", "train", "--dataset", "mnist", "--data-dir", str(mnist), "width=8", "--batch-size", "16",
                     "grid_size=4", "--steps", "400", "checkpoint_every=9", "lr_decay=linear", "--quiet"]
            rows.append(_training_job(image, 400, root, "image", args.kills, rng))
        if {"pretrain", "prepare", "finetune"} & set(args.jobs):
            shards = root / "shards"
            _timed("text", "prepare", "--files", str(text), "--tokenizer", str(tokenizer), "--seq-len", "64",
                   "--out", str(shards))
        if {"pretrain", "finetune"} & set(args.jobs):
            pretrain = ["text", "pretrain", "--data", str(shards), "embedding_size=32", "hidden_size=32",
                        "num_layers=2", "num_heads=2", "intermediate_size=64", "--batch-size", "8", "--steps", "600",
                        "warmup_steps=30", "checkpoint_every=11", "log_every=10", "plateau_check_step=0", "--quiet"]
            if "pretrain" in args.jobs:
                rows.append(_training_job(pretrain, 600, root, "pretrain", args.kills, rng))
            else:
                _timed(*pretrain, "--steps", "50", "--out", str(root / "pretrain-reference"))
        if "prepare" in args.jobs:   # real books, so that preparing takes long enough to be killed mid-way
            books = [p for p in sorted((SHARED / "text" / "gutenberg").glob("*.txt")) if p.name != "LICENSE.txt"] or [text]
            rows.append(_prepare_job(books, tokenizer, root, args.kills, rng))
        if "finetune" in args.jobs:   # on SST-2's first 1,500 sentences (the vocabulary is the synthetic corpus')
            finetune = ["text", "finetune", str(root / "pretrain-reference"), "--task", "sst-2", "--data-dir",
                        str(SHARED / "glue"), "--seeds", "3", "--epochs", "2", "max_train_examples=1500",
                        "checkpoint_every=15", "log_every=10", "--quiet"]
            rows.append(_finetune_job(finetune, root, args.kills, rng))
        if "classifier" in args.jobs:
            np.save(root / "samples.npy", images[:200])
            classifier = ["image", "eval", str(root / "samples.npy"), "--dataset", "mnist", "--data-dir", str(mnist),
                          "--no-floor"]
            rows.append(_classifier_job(classifier, root, args.kills, rng))
    print(f"\n{'job':10s} {'kills':>6s} {'resumes':>8s} {'mismatches':>11s} {'unreadable':>11s} {'ref. s':>7s}")
    for r in rows:
        print(f"{r['job']:10s} {r['kills']:6d} {r['resumes']:8d} {r['mismatches']:11d} {r['unreadable']:11d} "
              f"{r['reference_seconds']:7.1f}")
    out = HERE / "results" / "kill_resume.json"
    out.parent.mkdir(exist_ok=True)
    kept = json.loads(out.read_text())["rows"] if out.is_file() else []   # rows of jobs not run this time stay
    rows = [{**r, "seed": args.seed} for r in rows]
    merged = [r for r in kept if r["job"] not in {row["job"] for row in rows}] + rows
    out.write_text(json.dumps({"kills_per_job": args.kills, "rows": merged}, indent=2) + "\n")
    print(f"SUMMARY kill_resume: {sum(r['mismatches'] for r in rows)} mismatches, "
          f"{sum(r['unreadable'] for r in rows)} unreadable files over {sum(r['kills'] for r in rows)} kills")


if __name__ == "__main__":
    main()
