"""Corpus → memory-mapped token shards, packed the way the official ELECTRA data builder packs them.

Text is streamed line by line (a blank line ends a document, as in the official builder's input format; with
``documents="file"`` only the end of a file does, for corpora whose blank lines separate paragraphs, where short
"documents" would leave most of each row as padding) and tokenised in batches by the Rust tokenizer
(which uses every core); examples ``[CLS] A [SEP] B [SEP]`` are written to fixed-length uint16 rows in shard files
of ``shard_rows`` rows, then a small JSON manifest.  Nothing holds the whole corpus in memory, and the output folder
appears only when complete.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from electra.core.batches import StepBatches
from electra.core.files import atomic_folder, fresh_folder
from electra.errors import UserError
from electra.text.text_files import TextFiles, existing_files
from electra.text.tokenizer import load_tokenizer, save_tokenizer, special_ids, tokenizer_hash

MANIFEST = "manifest.json"
FORMAT = "electra-shards-1"


def check_text_files(files, encoding: str = "utf-8", errors: str = "strict") -> list[Path]:
    """Every file exists, is not empty, is text (no NUL bytes) and decodes (after decompression, for gzip, bzip2 and
    xz files); errors name the file and byte offset."""
    return TextFiles(existing_files(files), encoding, errors).check()


DOCUMENT_BOUNDARIES = ("blank-line", "file")


class ExampleBuilder:
    """Packs sentences into pre-training examples as the official ``build_pretraining_dataset.py`` does.

    Sentences of a document accumulate until they reach the target length; then the first segment takes
    sentences up to half the target (10% of the time: everything, a single-segment example), the second the rest;
    both are trimmed to fit.  5% of the time the next target length is random in [5, max_length] instead of
    max_length, so the model also sees short inputs."""

    def __init__(self, max_length: int, rng: random.Random) -> None:
        self.max_length, self.rng = max_length, rng
        self.sentences: list[list[int]] = []
        self.length = 0
        self.target = max_length

    def add(self, ids: list[int] | None) -> tuple[list[int], list[int]] | None:
        """Add one line's token ids (None or [] at a document boundary); return a finished (A, B) or None."""
        if not ids:
            return self._finish() if self.length else None
        self.sentences.append(ids)
        self.length += len(ids)
        return self._finish() if self.length >= self.target else None

    def add_line(self, ids: list[int] | None) -> list[tuple[list[int], list[int]]]:
        """Like ``add`` for a line of up to half a segment (a sentence, the official input).  A longer line (a
        paragraph, as books come) enters in pieces of at most half a segment, each cut to fill the current row
        exactly, so packing splits it between rows instead of dropping everything past a row's end."""
        piece = max(1, (self.max_length - 3) // 2)
        if not ids or len(ids) <= piece:
            finished = self.add(ids or None)
            return [finished] if finished else []
        out = []
        while ids:
            room = max(1, self.target - 3 - self.length)   # [CLS] A [SEP] B [SEP]
            take = min(len(ids), piece, room)
            self.sentences.append(ids[:take])
            self.length += take
            ids = ids[take:]
            if self.length >= self.target - 3:
                out.append(self._finish())
        return out

    def _finish(self) -> tuple[list[int], list[int]]:
        first_target = 100_000 if self.rng.random() < 0.1 else (self.target - 3) // 2
        first: list[int] = []
        second: list[int] = []
        for sentence in self.sentences:
            if (not first or len(first) + len(sentence) < first_target
                    or (not second and len(first) < first_target and self.rng.random() < 0.5)):
                first += sentence
            else:
                second += sentence
        first = first[: self.max_length - 2]
        second = second[: max(0, self.max_length - len(first) - 3)]
        self.sentences, self.length = [], 0
        self.target = self.rng.randint(5, self.max_length) if self.rng.random() < 0.05 else self.max_length
        return first, second


class ShardWriter:
    def __init__(self, folder: Path, seq_len: int, dtype, pad_id: int, shard_rows: int) -> None:
        self.folder, self.seq_len, self.dtype, self.pad_id, self.shard_rows = folder, seq_len, dtype, pad_id, shard_rows
        self.buffer = np.full((shard_rows, seq_len), pad_id, dtype=dtype)
        self.fill = 0
        self.shards: list[dict] = []
        self.tokens = 0

    def add(self, row: list[int]) -> None:
        self.buffer[self.fill, : len(row)] = row
        self.fill += 1
        self.tokens += len(row)
        if self.fill == self.shard_rows:
            self.flush()

    def flush(self) -> None:
        if not self.fill:
            return
        name = f"shard-{len(self.shards):05d}.bin"
        self.buffer[: self.fill].tofile(self.folder / name)
        self.shards.append({"file": name, "rows": self.fill})
        self.buffer[:] = self.pad_id
        self.fill = 0


def prepare_corpus(files, tokenizer_path, seq_len: int, out, encoding: str = "utf-8", errors: str = "strict",
                   seed: int = 0, shard_rows: int = 65_536, batch_lines: int = 4096, progress: bool = True,
                   documents: str = "blank-line") -> Path:
    """Tokenise and pack ``files`` into shards under ``out``; return ``out``.  ``documents``: what ends a document,
    "blank-line" (the official convention) or "file"."""
    if documents not in DOCUMENT_BOUNDARIES:
        raise UserError(f"--documents must be one of {', '.join(DOCUMENT_BOUNDARIES)}, not '{documents}'")
    paths = check_text_files(files, encoding, errors)
    if seq_len < 8:
        raise UserError(f"--seq-len {seq_len} is too short; use at least 8")
    tokenizer = load_tokenizer(tokenizer_path)
    ids = special_ids(tokenizer)
    vocab_size = tokenizer.get_vocab_size()
    dtype = np.uint16 if vocab_size <= 65_535 else np.int32
    out = fresh_folder(out)
    with atomic_folder(out) as tmp:   # the folder appears only when complete
        writer = ShardWriter(tmp, seq_len, dtype, ids["pad"], shard_rows)
        builder = ExampleBuilder(seq_len, random.Random(seed))
        n_documents, in_document, corpus_tokens = 0, False, 0
        source = TextFiles(paths, encoding, errors)
        bar = tqdm(total=source.total_bytes, unit="B", unit_scale=True, desc="preparing", disable=not progress)

        def emit(example):
            if example is not None:
                a, b = example
                writer.add([ids["cls"], *a, ids["sep"], *([*b, ids["sep"]] if b else [])])

        batch: list[str | None] = []

        def drain():
            nonlocal n_documents, in_document, corpus_tokens
            texts = [line for line in batch if line]
            encoded = iter(tokenizer.encode_batch(texts, add_special_tokens=False)) if texts else iter(())
            for line in batch:
                if line:
                    in_document = True
                    ids = next(encoded).ids
                    corpus_tokens += len(ids)
                    for example in builder.add_line(ids or None):
                        emit(example)
                elif line is None or documents == "blank-line":
                    n_documents += in_document
                    in_document = False
                    emit(builder.add(None))
            batch.clear()
            bar.update(source.raw_bytes_read - bar.n)

        for line in source.lines():
            batch.append(line)
            if len(batch) >= batch_lines:
                drain()
        drain()
        emit(builder.add(None))
        writer.flush()
        bar.close()
        rows = sum(s["rows"] for s in writer.shards)
        if rows == 0:
            raise UserError(f"the corpus produced no examples (no text after tokenising {', '.join(map(str, paths))})")
        save_tokenizer(tokenizer, tmp / "tokenizer")
        manifest = {"format": FORMAT, "seq_len": seq_len, "dtype": np.dtype(dtype).name, "vocab_size": vocab_size,
                    "tokenizer_hash": tokenizer_hash(tokenizer), "special_ids": ids, "rows": rows,
                    "tokens": writer.tokens, "corpus_tokens": corpus_tokens, "documents": n_documents, "document_boundary": documents, "shards": writer.shards,
                    "sources": [str(p) for p in paths]}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return out


def _checked_manifest(m) -> dict:
    """The manifest if every field the reader uses has the type and range it needs (ValueError names the first
    that does not)."""
    def need(ok: bool, what: str) -> None:
        if not ok:
            raise ValueError(what)

    need(isinstance(m, dict), "not a JSON object")
    need(m.get("format") == FORMAT, f"format {m.get('format')!r}, expected {FORMAT!r}")
    integer = lambda v: isinstance(v, int) and not isinstance(v, bool)  # noqa: E731
    need(integer(m.get("seq_len")) and m["seq_len"] >= 1, "seq_len must be a positive integer")
    need(m.get("dtype") in ("uint16", "int32"), "dtype must be uint16 or int32")
    need(integer(m.get("vocab_size")) and m["vocab_size"] >= 1, "vocab_size must be a positive integer")
    special = m.get("special_ids")
    need(isinstance(special, dict) and all(integer(special.get(k)) for k in ("pad", "unk", "cls", "sep", "mask")),
         "special_ids must give integer ids for pad, unk, cls, sep and mask")
    shards = m.get("shards")
    need(isinstance(shards, list) and all(isinstance(s, dict) and isinstance(s.get("file"), str)
                                          and "/" not in s["file"] and integer(s.get("rows")) and s["rows"] >= 0
                                          for s in shards), "shards must list {file, rows} entries")
    return m


class TokenShards:
    """The memory-mapped rows of a prepared corpus, checked against its manifest."""

    def __init__(self, folder) -> None:
        folder = Path(folder)
        path = folder / MANIFEST
        if not path.is_file():
            raise UserError(f"{folder} is not a prepared corpus (no {MANIFEST}); run 'electra text prepare'")
        try:
            self.manifest = _checked_manifest(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, UnicodeDecodeError) as exc:
            raise UserError(f"{path} is not a valid corpus manifest ({exc}); prepare the corpus again") from None
        m = self.manifest
        self.folder, self.seq_len, self.special = folder, m["seq_len"], m["special_ids"]
        dtype = np.dtype(m["dtype"])
        self.arrays = []
        for shard in m["shards"]:
            f = folder / shard["file"]
            expected = shard["rows"] * self.seq_len * dtype.itemsize
            if not f.is_file() or f.stat().st_size != expected:
                size = f.stat().st_size if f.is_file() else 0
                raise UserError(f"shard {f} is truncated or missing ({size} of {expected} bytes); prepare the corpus "
                                f"again")
            self.arrays.append(np.memmap(f, dtype=dtype, mode="r", shape=(shard["rows"], self.seq_len)))
        self.offsets = np.cumsum([0] + [a.shape[0] for a in self.arrays])
        self.rows = int(self.offsets[-1])

    def rows_at(self, index: np.ndarray) -> np.ndarray:
        shard = np.searchsorted(self.offsets, index, side="right") - 1
        out = np.empty((len(index), self.seq_len), dtype=np.int64)
        for s in np.unique(shard):
            sel = shard == s
            out[sel] = self.arrays[s][index[sel] - self.offsets[s]]
        return out

    def batches(self, batch_size: int, seed: int, grad_accum: int = 1, rank: int = 0, world: int = 1,
                device: torch.device | str = "cpu") -> StepBatches:
        """Model inputs (ids, attention mask, segment ids) for (step, micro), on ``device``."""
        pad, sep = self.special["pad"], self.special["sep"]

        def fetch(indices: torch.Tensor) -> dict:
            ids = torch.from_numpy(self.rows_at(indices.numpy()))
            return {k: v.to(device) for k, v in make_batch(ids, pad, sep).items()}

        return StepBatches(self.rows, fetch, batch_size, seed, grad_accum, rank, world, what="examples")


class ShortRowsFirst:
    """A step's batches with, for steps before ``steps``, the text of every row re-packed as rows of ``length``
    tokens in the layout of the shards' own rows, ``[CLS] A [SEP] B [SEP]`` (A the first half of the text, B the
    rest), so that the first phase sees what shards prepared at that length hold; a row's text that does not fill
    a last piece is left out.  Measured: pieces cut from the rows as they are (a window of 32 tokens of a
    ``[CLS] A [SEP] B [SEP]`` row of 128, a [SEP] anywhere or nowhere) leave the `tiny` model reading a bag of
    words where these do not.  A pure function of the step, like the batches it wraps, so resumed runs see the
    same rows."""

    def __init__(self, batches: StepBatches, length: int, steps: int, pad_id: int, sep_id: int,
                 cls_id: int) -> None:
        self.inner, self.length, self.steps = batches, length, steps
        self.pad_id, self.sep_id, self.cls_id = pad_id, sep_id, cls_id
        self.global_batch, self.steps_per_epoch = batches.global_batch, batches.steps_per_epoch

    def __call__(self, step: int, micro: int = 0) -> dict:
        batch = self.inner(step, micro)
        if step >= self.steps:
            return batch
        pieces = repack(batch["input_ids"], self.length, self.pad_id, self.sep_id, self.cls_id)
        return batch if pieces is None else make_batch(pieces, self.pad_id, self.sep_id)


def repack(input_ids: torch.Tensor, length: int, pad_id: int, sep_id: int, cls_id: int) -> torch.Tensor | None:
    """Each row's text tokens (specials and padding dropped, order kept) in consecutive pieces of ``length`` − 3,
    each laid out ``[CLS] A [SEP] B [SEP]``; rows of the batch one after the other.  None when no row has text
    enough for one piece."""
    text = (input_ids != pad_id) & (input_ids != sep_id) & (input_ids != cls_id)
    order = torch.sort((~text).to(torch.int8), dim=1, stable=True).indices   # text first, in order
    ids = input_ids.gather(1, order)
    per_piece = length - 3
    counts = text.sum(1) // per_piece
    most = int(counts.max())
    if most == 0:
        return None
    chunks = ids[:, : most * per_piece].reshape(len(ids), most, per_piece)
    keep = torch.arange(most, device=ids.device).unsqueeze(0) < counts.unsqueeze(1)
    chunks = chunks[keep]
    half = per_piece // 2
    column = lambda token: torch.full((len(chunks), 1), token, dtype=ids.dtype, device=ids.device)  # noqa: E731
    return torch.cat([column(cls_id), chunks[:, :half], column(sep_id), chunks[:, half:], column(sep_id)], 1)


def make_batch(input_ids, pad_id: int, sep_id: int) -> dict:
    """input_ids → the dict a model takes; segment B is everything after the first [SEP]."""
    is_sep = (input_ids == sep_id).long()
    attention_mask = (input_ids != pad_id).long()
    token_type_ids = ((is_sep.cumsum(1) - is_sep) >= 1).long() * attention_mask
    return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
