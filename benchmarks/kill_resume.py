"""SIGKILL every long job at many random moments, resume it each time, and compare with an uninterrupted run.

    python benchmarks/kill_resume.py [--kills 20] [--seed 0] [--jobs image pretrain prepare]

For each job: one uninterrupted reference run, then one run that is killed at ``--kills`` random moments (uniform
over the reference's wall-clock, start-up included), each time continued the way a user would (``--resume`` once the
run folder has its config, else the first command again; for ``prepare`` the same command), and finally run to its
end.  It prints, per job, the kills that landed, the resumes, weight mismatches against the reference and files
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from common import SHARED  # noqa: E402
from resume_helpers import finished, killed_after, next_command, run_electra, same_weights, unreadable_files  # noqa: E402


def _timed(*argv: str) -> float:
    t = time.perf_counter()
    result = run_electra(*argv)
    if result.returncode != 0:
        raise SystemExit(f"reference run failed: {result.stderr[-1000:]}")
    return time.perf_counter() - t


def _training_job(first: list[str], total: int, root: Path, name: str, kills: int, rng: random.Random) -> dict:
    reference = root / f"{name}-reference"
    seconds = _timed(*first, "--out", str(reference))
    run = root / f"{name}-killed"
    new_run, resume = [*first, "--out", str(run)], [first[0], first[1], "--resume", str(run), "--quiet"]
    landed = resumes = unreadable = attempts = 0
    # kill moments within the first fifth of a run's length: each resumed attempt then keeps only a little progress,
    # so the job sees many kills (in start-up, mid-step, mid-checkpoint) before it can finish
    while landed < kills and attempts < 3 * kills and not finished(run, total):
        command = next_command(run, new_run, resume)
        resumes += command is resume
        landed += killed_after(rng.uniform(0.5, max(1.0, seconds / 5)), *command)
        attempts += 1
        unreadable += len(unreadable_files(run)) if run.exists() else 0
    if not finished(run, total):
        result = run_electra(*next_command(run, new_run, resume))
        if result.returncode != 0:
            raise SystemExit(f"{name}: the final resume failed: {result.stderr[-1000:]}")
    return {"job": name, "kills": landed, "resumes": resumes, "mismatches": int(not same_weights(reference, run)),
            "unreadable": unreadable + len(unreadable_files(run)), "reference_seconds": round(seconds, 1)}


def _same_tree(a: Path, b: Path) -> bool:
    files = lambda root: {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}  # noqa: E731
    return files(a) == files(b)


def _prepare_job(texts: list[Path], tokenizer: Path, root: Path, kills: int, rng: random.Random) -> dict:
    argv = ["text", "prepare", "--files", *map(str, texts), "--tokenizer", str(tokenizer), "--seq-len", "64"]
    reference = root / "prepare-reference"
    seconds = _timed(*argv, "--out", str(reference))
    out = root / "prepare-killed"
    landed = unreadable = attempts = 0
    while landed < kills and attempts < 3 * kills and not out.exists():   # each attempt starts again from zero
        landed += killed_after(rng.uniform(0.5, 0.6 * seconds), *argv, "--out", str(out))
        attempts += 1
        unreadable += len(unreadable_files(out)) if out.exists() else 0
    if not out.exists():
        _timed(*argv, "--out", str(out))
    return {"job": "prepare", "kills": landed, "resumes": landed, "mismatches": int(not _same_tree(reference, out)),
            "unreadable": unreadable, "reference_seconds": round(seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", nargs="+", default=["image", "pretrain", "prepare"],
                        choices=["image", "pretrain", "prepare"])
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
        text = write_corpus(root / "corpus.txt", documents=3000)
        tokenizer = train_tokenizer([str(text)], 200, root / "tokenizer", min_frequency=1)
        if "image" in args.jobs:
            image = ["image", "train", "--dataset", "mnist", "--data-dir", str(mnist), "width=8", "--batch-size", "16",
                     "grid_size=4", "--steps", "400", "checkpoint_every=9", "lr_decay=linear", "--quiet"]
            rows.append(_training_job(image, 400, root, "image", args.kills, rng))
        if "pretrain" in args.jobs or "prepare" in args.jobs:
            shards = root / "shards"
            _timed("text", "prepare", "--files", str(text), "--tokenizer", str(tokenizer), "--seq-len", "64",
                   "--out", str(shards))
        if "pretrain" in args.jobs:
            pretrain = ["text", "pretrain", "--data", str(shards), "embedding_size=32", "hidden_size=32",
                        "num_layers=2", "num_heads=2", "intermediate_size=64", "--batch-size", "8", "--steps", "600",
                        "warmup_steps=30", "checkpoint_every=11", "log_every=10", "plateau_check_step=0", "--quiet"]
            rows.append(_training_job(pretrain, 600, root, "pretrain", args.kills, rng))
        if "prepare" in args.jobs:   # real books, so that preparing takes long enough to be killed mid-way
            books = [p for p in sorted((SHARED / "text" / "gutenberg").glob("*.txt")) if p.name != "LICENSE.txt"] or [text]
            rows.append(_prepare_job(books, tokenizer, root, args.kills, rng))
    print(f"\n{'job':10s} {'kills':>6s} {'resumes':>8s} {'mismatches':>11s} {'unreadable':>11s} {'ref. s':>7s}")
    for r in rows:
        print(f"{r['job']:10s} {r['kills']:6d} {r['resumes']:8d} {r['mismatches']:11d} {r['unreadable']:11d} "
              f"{r['reference_seconds']:7.1f}")
    out = HERE / "results" / "kill_resume.json"
    out.parent.mkdir(exist_ok=True)
    kept = json.loads(out.read_text())["rows"] if out.is_file() else []   # rows of jobs not run this time stay
    merged = [r for r in kept if r["job"] not in {row["job"] for row in rows}] + rows
    out.write_text(json.dumps({"seed": args.seed, "kills_per_job": args.kills, "rows": merged}, indent=2) + "\n")
    print(f"SUMMARY kill_resume: {sum(r['mismatches'] for r in rows)} mismatches, "
          f"{sum(r['unreadable'] for r in rows)} unreadable files over {sum(r['kills'] for r in rows)} kills")


if __name__ == "__main__":
    main()
