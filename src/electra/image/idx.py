"""Reading the IDX format MNIST and Fashion-MNIST ship in (optionally gzip-compressed), with strict checks."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from electra.errors import UserError

IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise UserError(f"{path} is a corrupt or truncated gzip file ({exc}); delete it and fetch it again") from None
    return raw


def read_idx(path: Path, expect_magic: int) -> np.ndarray:
    """Return the array stored in an IDX file, checking magic number, dimensions and length."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise UserError(f"{path} is too short to be an IDX file ({len(data)} bytes)")
    (magic,) = struct.unpack(">I", data[:4])
    if magic != expect_magic:
        kind = "images (0x00000803)" if expect_magic == IMAGES_MAGIC else "labels (0x00000801)"
        raise UserError(f"{path} has magic number 0x{magic:08x}, not IDX {kind}; is it the right file?")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise UserError(f"{path} is truncated inside its IDX header")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(dims)) if dims else 0
    body = len(data) - header
    if body != expected:
        raise UserError(f"{path} holds {body} bytes of data but its header promises {expected} "
                        f"({' x '.join(map(str, dims))}); the file is truncated or corrupt")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def read_idx_images(path: Path, size: int = 28) -> np.ndarray:
    images = read_idx(path, IMAGES_MAGIC)
    if images.shape[1:] != (size, size):
        raise UserError(f"{path} holds {images.shape[1]}x{images.shape[2]} images; this model needs {size}x{size}")
    return images


def read_idx_labels(path: Path) -> np.ndarray:
    return read_idx(path, LABELS_MAGIC)


def write_idx(path: Path, array: np.ndarray, compress: bool | None = None) -> None:
    """Write a uint8 array as IDX (gzip when the name ends in .gz); used by tests and data tools."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    magic = 0x00000800 | array.ndim
    payload = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    path = Path(path)
    if compress if compress is not None else path.suffix == ".gz":
        payload = gzip.compress(payload, mtime=0)
    path.write_bytes(payload)
