"""Reading users' text files, plain or compressed (gzip, bzip2, xz), as streams.

The compression is recognised by the file's first bytes, not its name, so a ``.txt`` that is really gzip (or a
``.gz`` that is really plain) reads right.  Nothing is decompressed to disk or held whole in memory.  A corrupt or
truncated compressed file is one :class:`UserError` naming the file.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import io
import lzma
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

from electra.errors import UserError

MAGIC = ((b"\x1f\x8b", "gzip", lambda raw: gzip.GzipFile(fileobj=raw, mode="rb")),
         (b"BZh", "bzip2", lambda raw: bz2.BZ2File(raw, "rb")),
         (b"\xfd7zXZ\x00", "xz", lambda raw: lzma.LZMAFile(raw, "rb")))
DECOMPRESSION_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError)
CHUNK = 1 << 20


class TextFiles:
    """Text files read in order; ``raw_bytes_read`` is how far into the files on disk the reading is (for a
    progress bar over ``total_bytes``, compressed or not)."""

    def __init__(self, paths: list[Path], encoding: str = "utf-8", errors: str = "strict") -> None:
        self.paths, self.encoding, self.errors = [Path(p) for p in paths], encoding, errors
        self.total_bytes = sum(p.stat().st_size for p in self.paths)
        self._done_bytes, self._raw = 0, None

    @property
    def raw_bytes_read(self) -> int:
        return self._done_bytes + (self._raw.tell() if self._raw is not None and not self._raw.closed else 0)

    def _open(self, path: Path) -> tuple[BinaryIO, str | None]:
        self._raw = open(path, "rb")
        head = self._raw.read(6)
        self._raw.seek(0)
        for magic, name, opener in MAGIC:
            if head.startswith(magic):
                return opener(self._raw), name
        return self._raw, None

    @contextmanager
    def _reading(self, path: Path) -> Iterator[BinaryIO]:
        """The decompressed byte stream of one file; decompression errors become one line naming the file."""
        stream, kind = self._open(path)
        try:
            with stream:
                yield stream
        except DECOMPRESSION_ERRORS as exc:
            if kind is None:
                raise
            raise UserError(f"{path} is a damaged {kind} file ({str(exc)[:100] or type(exc).__name__}); "
                            f"compress it again") from None
        finally:
            self._done_bytes += path.stat().st_size
            self._raw.close()
            self._raw = None

    def chunks(self, path: Path) -> Iterator[bytes]:
        """The decompressed bytes of one file, in chunks."""
        with self._reading(path) as stream:
            yield from iter(lambda: stream.read(CHUNK), b"")

    def lines(self) -> Iterator[str | None]:
        """Stripped lines ("" for a blank one), and None at the end of each file; line ends as ``open`` reads
        them (\\n, \\r\\n, \\r)."""
        for path in self.paths:
            with self._reading(path) as stream:
                for line in io.TextIOWrapper(stream, encoding=self.encoding, errors=self.errors):
                    yield line.strip()
            yield None

    def check(self) -> list[Path]:
        """Every file exists, is not empty, is text (no NUL bytes) and decodes; errors name the file and the byte
        offset in its (decompressed) text."""
        has_text = False
        for path in self.paths:
            decoder = codecs.getincrementaldecoder(self.encoding)(self.errors)
            offset = 0
            for chunk in self.chunks(path):
                nul = chunk.find(b"\x00")
                if nul >= 0:
                    raise UserError(f"{path} looks binary (NUL byte at offset {offset + nul}); give plain text files")
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as exc:
                    raise UserError(f"{path} is not valid {self.encoding} at byte offset {offset + exc.start}; pass "
                                    f"--encoding ENC or --errors replace") from None
                offset += len(chunk)
                has_text = has_text or bool(chunk.strip())
            try:
                decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                raise UserError(f"{path} ends inside a {self.encoding} character (byte offset {offset}); pass "
                                f"--errors replace") from None
        self._done_bytes = 0
        if not has_text:
            raise UserError(f"the corpus ({', '.join(str(p) for p in self.paths)}) is empty")
        return self.paths


def existing_files(files) -> list[Path]:
    if not files:
        raise UserError("no input files given (--files F …)")
    paths = [Path(f) for f in files]
    for path in paths:
        if not path.is_file():
            raise UserError(f"text file {path} does not exist")
    return paths
