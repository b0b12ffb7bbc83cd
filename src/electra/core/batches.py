"""The one batch source: (step, micro) → this rank's micro-batch, drawn from a fresh seeded permutation each epoch.

A step's global batch is ``batch_size × grad_accum × world`` examples; rank r's micro-batch k is its slice number
r·grad_accum + k.  Being a pure function of the step, a resumed run sees exactly the batches an uninterrupted run
would have, with no state in checkpoints.  A track supplies only ``fetch``: indices → a batch on the device.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from electra.errors import UserError

# epoch e of seed s shuffles with seed s·PERMUTATION_STRIDE + e: distinct for every (seed, epoch) pair in practice
PERMUTATION_STRIDE = 1_000_003


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * PERMUTATION_STRIDE + epoch), device="cpu")


class StepBatches:
    def __init__(self, n: int, fetch: Callable[[torch.Tensor], Any], batch_size: int, seed: int, grad_accum: int = 1,
                 rank: int = 0, world: int = 1, what: str = "examples") -> None:
        self.global_batch = batch_size * grad_accum * world
        if n < self.global_batch:
            raise UserError(f"the data has {n} {what}, fewer than one global batch of {self.global_batch}; "
                            f"lower --batch-size")
        self.n, self.fetch, self.batch_size, self.seed = n, fetch, batch_size, seed
        self.grad_accum, self.rank = grad_accum, rank
        self.steps_per_epoch = n // self.global_batch
        self._epoch, self._perm = -1, torch.empty(0, dtype=torch.long, device="cpu")

    def indices(self, step: int, micro: int = 0) -> torch.Tensor:
        epoch, i = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            self._perm, self._epoch = epoch_permutation(self.n, self.seed, epoch), epoch
        start = i * self.global_batch + (self.rank * self.grad_accum + micro) * self.batch_size
        return self._perm[start:start + self.batch_size]

    def __call__(self, step: int, micro: int = 0) -> Any:
        return self.fetch(self.indices(step, micro))
