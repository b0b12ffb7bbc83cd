"""Fetching data files over HTTP with checksum verification (used only when a user asks with --download)."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from electra.errors import UserError


def file_digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(urls: list[str], dest: Path, algorithm: str, digest: str, timeout: float = 30.0) -> Path:
    """Fetch the first URL that answers into ``dest``, verifying its checksum; nothing is left behind on failure."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part-{os.getpid()}")
    errors = []
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    out.write(chunk)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            errors.append(f"{url}: {getattr(exc, 'reason', exc)}")
            tmp.unlink(missing_ok=True)
            continue
        got = file_digest(tmp, algorithm)
        if got != digest:
            tmp.unlink(missing_ok=True)
            errors.append(f"{url}: {algorithm} {got} does not match the published {digest}")
            continue
        tmp.replace(dest)
        return dest
    raise UserError(f"could not download {dest.name} ({'; '.join(errors)}); "
                    f"copy the file into {dest.parent} by hand or check the network")
