"""Which updates run at a given step (update schedules) and how the learning rate moves (lr schedules).

An update is a named step of one or more optimizers (``"discriminator"``, ``"generator"``, ``"joint"``);
an objective's table says which updates it has, a schedule says which of them run on step ``t`` and, in ``names``,
every update it can ever ask for (the trainer checks those against the objective's table before the first step).

A learning-rate schedule is a function (step, fraction of the run done) → multiplier of each group's configured
lr: a pure function of where the run is, so a resumed run continues on the same curve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

LrSchedule = Callable[[int, float], float]


@dataclass(frozen=True)
class EveryStep:
    """Run all of the objective's updates, in order, on every step (VAE, VAE-GAN, RTD)."""

    updates: tuple[str, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return self.updates

    def __call__(self, step: int) -> tuple[str, ...]:
        return self.updates


@dataclass(frozen=True)
class Alternating:
    """k discriminator updates per generator update: the generator steps on every k-th batch (k=1: every batch)."""

    d_steps: int = 1
    names = ("discriminator", "generator")

    def __call__(self, step: int) -> tuple[str, ...]:
        if (step + 1) % self.d_steps == 0:
            return ("discriminator", "generator")
        return ("discriminator",)


@dataclass(frozen=True)
class Phased:
    """The founding description's schedule: ``both`` steps training D and G, then ``generator_only`` steps with the
    discriminator frozen (its learning rate set to 0 in the original code), repeated."""

    both: int = 50
    generator_only: int = 50
    names = ("discriminator", "generator")

    def __call__(self, step: int) -> tuple[str, ...]:
        if step % (self.both + self.generator_only) < self.both:
            return ("discriminator", "generator")
        return ("generator",)


def warmup_linear_decay(step: int, warmup: int, total: int) -> float:
    """Multiplier of the peak lr: linear warm-up over ``warmup`` steps, then linear decay to 0 at ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if total <= warmup:
        return 1.0
    return max(0.0, (total - step) / (total - warmup))


LR_DECAYS = ("none", "linear", "cosine")


def lr_decay(fraction: float, shape: str, final: float, start: float = 0.0) -> float:
    """Multiplier of the peak lr when ``fraction`` of the run is done: constant, or held until ``start`` of the run
    and then falling to ``final`` at the end.

    A fraction rather than a step, so a wall-clock budget (whose step count is unknown in advance) can decay too."""
    f = min(max((fraction - start) / (1.0 - start), 0.0), 1.0)
    if shape == "linear":
        return 1.0 - (1.0 - final) * f
    if shape == "cosine":
        return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * f))
    return 1.0
