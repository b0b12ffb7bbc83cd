"""Property-based fuzzing of every parser: --examples generated inputs each (default 1,000), a table of outcomes.

    python benchmarks/fuzz.py [--examples 1000] [--targets NAME ...]

Per parser: inputs, accepted, clean errors (the project's one-line UserError) and other exceptions (the goal: 0),
with the first few of those shown.  The inputs are tests/fuzz_targets.py's strategies; results go to
benchmarks/results/fuzz.json.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from hypothesis import HealthCheck, given, settings  # noqa: E402

from fuzz_targets import TARGETS, outcome  # noqa: E402


def run(name: str, examples: int) -> dict:
    strategy, feed = TARGETS[name]
    counts: collections.Counter = collections.Counter()
    others: list[str] = []

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(strategy)
    def check(item):
        result = outcome(feed, item)
        counts["inputs"] += 1
        if result.startswith("other"):
            counts["other"] += 1
            if len(others) < 5:
                others.append(f"{result} for {item!r:.200}")
        else:
            counts[result] += 1

    start = time.perf_counter()
    check()
    return {"parser": name, "inputs": counts["inputs"], "accepted": counts["accepted"],
            "clean_errors": counts["clean error"], "other_exceptions": counts["other"], "examples_of_other": others,
            "seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--targets", nargs="+", default=sorted(TARGETS), choices=sorted(TARGETS))
    args = parser.parse_args()
    rows = []
    for name in args.targets:
        rows.append(run(name, args.examples))
        r = rows[-1]
        print(f"{name:28s} {r['inputs']:6d} inputs {r['accepted']:6d} accepted {r['clean_errors']:6d} clean errors "
              f"{r['other_exceptions']:4d} other ({r['seconds']} s)", flush=True)
        for line in r["examples_of_other"]:
            print(f"    {line}")
    out = HERE / "results" / "fuzz.json"
    out.parent.mkdir(exist_ok=True)
    kept = json.loads(out.read_text())["rows"] if out.is_file() else []   # rows of parsers not run this time stay
    rows = [{**r, "examples_asked": args.examples} for r in rows]
    merged = [r for r in kept if r["parser"] not in {row["parser"] for row in rows} and r["parser"] in TARGETS] + rows
    out.write_text(json.dumps({"rows": merged}, indent=2) + "\n")
    print(f"SUMMARY fuzz: {sum(r['inputs'] for r in rows)} inputs over {len(rows)} parsers, "
          f"{sum(r['other_exceptions'] for r in rows)} other exceptions")


if __name__ == "__main__":
    main()
