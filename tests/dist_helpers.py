"""Launching ``torchrun`` from tests: 2 CPU processes on gloo, bounded by a timeout so a hang fails the test."""

import os
import subprocess
import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")


def torchrun(args: list[str], nproc: int = 2, timeout: float = 240, module: str = "electra") -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    target = ["-m", module] if module else []
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *target, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
