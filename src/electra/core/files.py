"""Writing files and folders so that a crash or a full disk never leaves a half-written one in place.

Everything is written beside its destination under a hidden temporary name and renamed into place, which POSIX
makes atomic within one file system; on failure the temporary is removed and whatever was there before is kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


def _temporary(path: Path, kind: str) -> Path:
    return path.with_name(f".{path.name}.{kind}-{os.getpid()}")


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on failure it is removed.

    The temporary keeps the destination's suffix, so writers that choose a format by extension still work."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path, "tmp").with_suffix(path.suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_text(path: str | Path, text: str) -> Path:
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | Path, value: Any, indent: int | None = 2) -> Path:
    return write_text(path, json.dumps(value, indent=indent) + "\n")


@contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder to fill; on success it takes the place of ``path`` (replacing a previous
    folder there), on failure it is removed and the previous folder stays.

    The previous folder is moved aside before the new one is renamed in, so a crash between the two renames leaves
    it as ``.NAME.old`` (``checkpoint.find_checkpoint`` looks there)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, old = path.with_name(f".{path.name}.tmp"), old_folder(path)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
            path.rename(old)
        tmp.rename(path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def fresh_folder(path: str | Path) -> Path:
    """An output folder that is absent or empty: nothing of the user's is ever overwritten."""
    from electra.errors import UserError

    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise UserError(f"output folder {path} is not empty; choose another --out")
    return path


def old_folder(path: Path) -> Path:
    """Where ``atomic_folder`` keeps the previous version of ``path`` during the swap."""
    return path.with_name(f".{path.name}.old")
