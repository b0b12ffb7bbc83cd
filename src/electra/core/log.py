"""The one way the package talks to the terminal while it works: lines on stderr that never break a progress bar."""

from __future__ import annotations

import sys

from tqdm import tqdm


def log(message: str) -> None:
    tqdm.write(message, file=sys.stderr)


def warn(message: str) -> None:
    log(f"electra: warning: {message}")
