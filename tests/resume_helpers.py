"""Resuming a run in a fresh process and comparing it with an uninterrupted one, for the resume tests."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

SRC = str(Path(__file__).resolve().parents[1] / "src")


def resume_in_new_process(track: str, command: str, run: Path, *extra: str) -> None:
    """``electra TRACK COMMAND --resume RUN`` in a new interpreter: nothing of this process's state carries over."""
    env = {**os.environ, "OMP_NUM_THREADS": "1",   # the suite's one reduction order (conftest)
           "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run([sys.executable, "-m", "electra", track, command, "--resume", str(run), "--quiet", *extra],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def assert_same_run(full: Path, resumed: Path) -> None:
    """Bit-identical final weights, and the same logged lr and losses at every step."""
    a = load_file(str(full / "checkpoints/last/model.safetensors"))
    b = load_file(str(resumed / "checkpoints/last/model.safetensors"))
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"
    skip = {"images_per_s", "tokens_per_s", "examples_per_s"}
    strip = lambda row: {k: v for k, v in row.items() if k not in skip}  # noqa: E731
    assert [strip(r) for r in rows(full)] == [strip(r) for r in rows(resumed)]
