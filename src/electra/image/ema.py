"""The moving average of the generator's weights, and batch-norm statistics that match those averaged weights.

A weight average cannot simply borrow the live generator's batch-norm running statistics: those describe the live
weights' activations (and only over the last few dozen batches), not the averaged weights'.  Sampling the average
with them shifts every feature map.  Like BigGAN's "standing statistics", the average's statistics are instead
measured afresh, from its own activations, whenever it is about to be used (a progress grid, a checkpoint).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

# 100 batches of training size (6,400 draws) pin the per-channel mean and variance to about 1% of a standard
# deviation; for the DCGAN generator that is about a second of CPU, against a minute per thousand training steps.
STANDING_BATCHES = 100


def ema_decay(target: float, step: int) -> float:
    """Warm-up: early on the average would be dominated by the random initial weights."""
    return min(target, (1.0 + step) / (10.0 + step))


@torch.no_grad()
def update_average(average: nn.Module, live: nn.Module, decay: float) -> None:
    torch._foreach_lerp_(list(average.parameters()), list(live.parameters()), 1.0 - decay)


@torch.no_grad()
def refresh_batch_norm(generator: nn.Module, inputs: Callable[[int, torch.Generator], torch.Tensor], batch_size: int,
                       seed: int, batches: int = STANDING_BATCHES) -> None:
    """Replace the running statistics of every batch-norm layer in ``generator`` by the exact average, over
    ``batches`` batches of fresh ``inputs(n, rng)`` (noise, with a class for a conditional generator), of the batch
    statistics its current weights produce.

    Batches of ``batch_size`` reproduce the regime the weights were trained in; the noise has its own seed so
    that the training noise stream is untouched and a refresh is repeatable."""
    norms = [m for m in generator.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    was_training = generator.training
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None        # cumulative average over all the batches, not an exponential one
    generator.train()
    device = next(generator.parameters()).device
    rng = torch.Generator().manual_seed(seed)
    try:
        for _ in range(batches):
            generator(inputs(batch_size, rng).to(device))
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        generator.train(was_training)
