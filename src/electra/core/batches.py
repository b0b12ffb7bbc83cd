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


def length_grouped(lengths: torch.Tensor, global_batch: int, seed: int, chunk_batches: int = 50):
    """An epoch order (for ``StepBatches(order=…)``) whose global batches hold examples of similar length, so
    batches padded to their longest row waste little: the epoch's permutation is cut into chunks of
    ``chunk_batches`` global batches, each chunk sorted by length and cut into batches, and the batches of the
    epoch shuffled (seeded by seed and epoch), so neither the order of lengths nor of examples is fixed."""
    lengths = lengths.to("cpu")

    def order(perm: torch.Tensor, epoch: int) -> torch.Tensor:
        usable = len(perm) // global_batch * global_batch
        chunk = chunk_batches * global_batch
        batches = []
        for start in range(0, usable, chunk):
            part = perm[start:min(start + chunk, usable)]
            part = part[torch.sort(lengths[part], descending=True, stable=True).indices]
            batches += list(part.split(global_batch))
        g = torch.Generator().manual_seed(seed * PERMUTATION_STRIDE + epoch + 1)
        shuffled = [batches[i] for i in torch.randperm(len(batches), generator=g, device="cpu")]
        return torch.cat(shuffled + [perm[usable:]])
    return order


class StepBatches:
    def __init__(self, n: int, fetch: Callable[[torch.Tensor], Any], batch_size: int, seed: int, grad_accum: int = 1,
                 rank: int = 0, world: int = 1, what: str = "examples",
                 order: Callable[[torch.Tensor, int], torch.Tensor] | None = None) -> None:
        self.global_batch = batch_size * grad_accum * world
        if n < self.global_batch:
            raise UserError(f"the data has {n} {what}, fewer than one global batch of {self.global_batch}; "
                            f"lower --batch-size")
        self.n, self.fetch, self.batch_size, self.seed = n, fetch, batch_size, seed
        self.grad_accum, self.rank, self.order = grad_accum, rank, order
        self.steps_per_epoch = n // self.global_batch
        self._epoch, self._perm = -1, torch.empty(0, dtype=torch.long, device="cpu")

    def indices(self, step: int, micro: int = 0) -> torch.Tensor:
        epoch, i = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            perm = epoch_permutation(self.n, self.seed, epoch)
            self._perm, self._epoch = (self.order(perm, epoch) if self.order else perm), epoch
        start = i * self.global_batch + (self.rank * self.grad_accum + micro) * self.batch_size
        return self._perm[start:start + self.batch_size]

    def __call__(self, step: int, micro: int = 0) -> Any:
        return self.fetch(self.indices(step, micro))
