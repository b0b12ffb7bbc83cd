"""Random numbers drawn for the *global* batch and sliced, so the same example gets the same noise whether the
step runs as one process with batch 2B, two ranks with batch B, or one process with B and --grad-accum 2.

Each draw is seeded by (run seed, step, stream name) and shaped like the whole global batch; a micro-batch takes its
rows.  Being a pure function of the step, it needs no state in checkpoints either.
"""

from __future__ import annotations

import zlib

import torch


class StepRandom:
    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.step = 0
        self.offset = 0          # first global row of the current micro-batch
        self.global_rows = 0     # rows in the global batch (per-process batch × accumulation × ranks)

    def begin(self, step: int, offset: int, global_rows: int) -> None:
        self.step, self.offset, self.global_rows = step, offset, global_rows

    def _generator(self, stream: str) -> torch.Generator:
        key = zlib.crc32(f"{self.seed}:{self.step}:{stream}".encode())
        return torch.Generator().manual_seed(key)

    def _rows(self, full: torch.Tensor, n: int) -> torch.Tensor:
        if self.global_rows == 0:   # outside the trainer (tests, tools): the draw is the batch itself
            return full
        return full[self.offset:self.offset + n]

    def rand(self, stream: str, n: int, *tail: int) -> torch.Tensor:
        total = max(self.global_rows, n)
        return self._rows(torch.rand((total, *tail), generator=self._generator(stream), device="cpu"), n)

    def randn(self, stream: str, n: int, *tail: int) -> torch.Tensor:
        total = max(self.global_rows, n)
        return self._rows(torch.randn((total, *tail), generator=self._generator(stream), device="cpu"), n)

    def randint(self, stream: str, low: int, high: int, n: int, *tail: int) -> torch.Tensor:
        total = max(self.global_rows, n)
        return self._rows(torch.randint(low, high, (total, *tail), generator=self._generator(stream), device="cpu"), n)
