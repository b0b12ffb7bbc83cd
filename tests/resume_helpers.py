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


def electra_env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}


def run_electra(*argv: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "electra", *argv], capture_output=True, text=True,
                          env={**electra_env(), **(env or {})}, timeout=timeout)


def killed_after(seconds: float, *argv: str, env: dict | None = None) -> bool:
    """Start ``electra ARGV`` and SIGKILL it after ``seconds`` (a pre-empted machine, the OOM killer); True if it
    was still running then, False if it had already finished (with exit code 0, or the assertion fails)."""
    import signal
    import time

    proc = subprocess.Popen([sys.executable, "-m", "electra", *argv], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env={**electra_env(), **(env or {})}, start_new_session=True)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        return True
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    assert proc.returncode == 0, err[-2000:]
    return False


def unreadable_files(folder: Path) -> list[str]:
    """Every visible file in a run folder that does not parse as what its name says it is."""
    from PIL import Image

    bad = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue
        try:
            if path.suffix == ".json":
                json.loads(path.read_text(encoding="utf-8"))
            elif path.suffix == ".jsonl":
                for line in path.read_text(encoding="utf-8").splitlines():
                    json.loads(line)
            elif path.suffix == ".safetensors":
                load_file(str(path))
            elif path.suffix == ".png":
                with Image.open(path) as img:
                    img.verify()
        except Exception as exc:  # noqa: BLE001 — any failure to read is what this looks for
            bad.append(f"{path.relative_to(folder)}: {type(exc).__name__}")
    return bad


def same_weights(a: Path, b: Path) -> bool:
    x = load_file(str(a / "checkpoints/last/model.safetensors"))
    y = load_file(str(b / "checkpoints/last/model.safetensors"))
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def next_command(run: Path, new_run: list[str], resume: list[str]) -> list[str]:
    """What a user re-runs after a kill: ``--resume`` once the run folder has its config, else the first command."""
    return resume if (run / "config.json").is_file() else new_run


def finished(run: Path, total: int) -> bool:
    state = run / "checkpoints" / "last" / "state.json"
    return state.is_file() and json.loads(state.read_text())["step"] >= total
