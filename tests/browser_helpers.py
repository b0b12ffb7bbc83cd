"""Serving ``electra demo`` in its own process and driving Debian's Chromium: for the browser tests and
``benchmarks/demo_latency.py``."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# flags for a closed network: without the background-networking ones Chromium keeps dialling out
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def snapshot(folder: Path) -> dict:
    """Every file under ``folder`` with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}


@contextmanager
def serving(run: Path, timeout: float = 90):
    """``electra demo RUN`` in its own process until the block ends; yields (url, seconds until it answered).
    Raises AssertionError if the demo wrote into the run folder."""
    before = snapshot(run)
    port = free_port()
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "electra", "demo", str(run), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            # one thread, as the test's own reference computation (the one_thread fixture of test_demo_browser): a CPU
                            # convolution's sums, and so a grey level here and there, depend on the thread count
                            env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})
    url = f"http://127.0.0.1:{port}/"
    try:
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"electra demo ended with {proc.returncode}: {proc.stdout.read()}")
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                if time.monotonic() - started > timeout:
                    raise AssertionError(f"electra demo did not answer within {timeout:g} s") from None
                time.sleep(0.2)
        yield url, time.monotonic() - started
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert snapshot(run) == before, "the demo wrote into the run folder"


def launch_chromium(playwright):
    if not Path(CHROMIUM).is_file():
        raise AssertionError(f"no Chromium at {CHROMIUM}: install Debian's chromium (.ci/run does)")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
