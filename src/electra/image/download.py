"""Fetching data files over HTTP with checksum verification (used only when a user asks with --download)."""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from pathlib import Path

from electra.core.files import atomic_file
from electra.errors import UserError


def file_digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class _ChecksumMismatch(Exception):
    pass


def download(urls: list[str], dest: Path, algorithm: str, digest: str, timeout: float = 30.0) -> Path:
    """Fetch the first URL that answers into ``dest``, verifying its checksum; nothing is left behind on failure."""
    dest = Path(dest)
    errors = []
    for url in urls:
        try:
            with atomic_file(dest) as tmp:   # replaces dest only once the checksum matched
                with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
                    for chunk in iter(lambda: response.read(1 << 20), b""):
                        out.write(chunk)
                got = file_digest(tmp, algorithm)
                if got != digest:
                    raise _ChecksumMismatch(f"{algorithm} {got} does not match the published {digest}")
            return dest
        except _ChecksumMismatch as exc:
            errors.append(f"{url}: {exc}")
        except (urllib.error.URLError, OSError, ValueError) as exc:
            errors.append(f"{url}: {getattr(exc, 'reason', exc)}")
    raise UserError(f"could not download {dest.name} ({'; '.join(errors)}); "
                    f"copy the file into {dest.parent} by hand or check the network")
