"""Training speed when another process keeps one core busy: fixed thread counts against the automatic choice.

    python benchmarks/busy_core.py [--image-steps 300] [--text-steps 30] [--rounds 1]

Each cell is one `electra` subprocess (no OMP_NUM_THREADS in its environment); its speed is the median of its
metrics rows (images/s or tokens/s), so start-up does not count.  Scenarios, side by side in one run: the machine
alone with every core; a plain busy loop (one process, not pinned) beside the job with threads=every core,
threads=1 and threads=0 (the automatic choice).  Goal: under load, automatic ≥ one thread.  Writes
benchmarks/results/busy_core.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
sys.path.insert(0, str(HERE))

from common import SHARED  # noqa: E402


def env() -> dict:
    out = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    out["PYTHONPATH"] = str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", "")
    return out


def rate(run: Path, key: str) -> float:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return statistics.median(r[key] for r in rows[1:] or rows)   # the first interval holds warm-up


def threads_used(stderr: str) -> int:
    for line in stderr.splitlines():
        if line.startswith("run folder:") and " threads)" in line:
            return int(line.rsplit(";", 1)[1].split()[0])
    return -1


def cell(argv: list[str], out: Path, key: str, busy: bool) -> dict:
    loop = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        result = subprocess.run([sys.executable, "-m", "electra", *argv, "--out", str(out), "--quiet"],
                                capture_output=True, text=True, env=env(), timeout=1800)
    finally:
        if loop is not None:
            loop.kill()
            loop.wait()
    if result.returncode != 0:
        raise SystemExit(result.stderr[-2000:])
    return {"rate": rate(out, key), "threads": threads_used(result.stderr)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--image-steps", type=int, default=300)
    parser.add_argument("--text-steps", type=int, default=30)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    scenarios = [("alone", False, cores), ("busy core", True, cores), ("busy core", True, 1), ("busy core", True, 0)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        text = sorted((SHARED / "text" / "tinyshakespeare").glob("*.txt"))
        subprocess.run([sys.executable, "-m", "electra", "text", "tokenizer", "--files", *map(str, text),
                        "--vocab-size", "4096", "--out", str(root / "tok")], check=True, env=env(),
                       capture_output=True)
        subprocess.run([sys.executable, "-m", "electra", "text", "prepare", "--files", *map(str, text), "--tokenizer",
                        str(root / "tok"), "--out", str(root / "shards")], check=True, env=env(), capture_output=True)
        jobs = [("image dcgan", ["image", "train", "--steps", str(args.image_steps), "log_every=25"], "images_per_s"),
                ("text tiny", ["text", "pretrain", "--data", str(root / "shards"), "--steps", str(args.text_steps),
                               "log_every=5", "plateau_check_step=0"], "tokens_per_s")]
        for job, argv, key in jobs:
            for i, (scenario, busy, threads) in enumerate(scenarios):
                got = cell([*argv, f"threads={threads}"], root / f"{job.replace(' ', '-')}-{i}", key, busy)
                rows.append({"job": job, "scenario": scenario, "threads_asked": threads, **got})
                print(json.dumps(rows[-1]), flush=True)
    print(f"\n{'job':12s} {'scenario':10s} {'threads=':>8s} {'used':>5s} {'rate':>10s}")
    for r in rows:
        print(f"{r['job']:12s} {r['scenario']:10s} {r['threads_asked']:8d} {r['threads']:5d} {r['rate']:10.0f}")
    out = HERE / "results" / "busy_core.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(rows, indent=2) + "\n")
    for job in ("image dcgan", "text tiny"):
        by = {r["threads_asked"]: r["rate"] for r in rows if r["job"] == job and r["scenario"] == "busy core"}
        print(f"SUMMARY busy_core {job}: automatic {by[0] / by[1]:.2f}× one thread, {by[0] / by[cores]:.2f}× "
              f"{cores} threads, with one core busy")


if __name__ == "__main__":
    main()
