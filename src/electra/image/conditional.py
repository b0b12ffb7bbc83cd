"""Class-conditional generation (objective ``cgan``): choose the digit.

The generator is the DCGAN-28 generator whose input is the noise with a one-hot class appended (Mirza & Osindero
2014): every place that draws generator inputs — training, the EMA's standing statistics, progress grids,
``sample``, ``eval`` — draws them through ``generator_inputs``, and the class of a generated image is read back
from its input.  The discriminator is a projection discriminator (Miyato & Koyama 2018): the usual logit plus the
inner product of its features with a learned embedding of the class, so it judges "a real image of *this* class".
"""

from __future__ import annotations

import torch
from torch import nn

from electra.image.models import DCGANDiscriminator
from electra.image.objectives import GANObjective, Noise


def with_classes(z: torch.Tensor, labels: torch.Tensor, classes: int) -> torch.Tensor:
    """Noise with the one-hot class appended: the conditional generator's input."""
    return torch.cat([z, nn.functional.one_hot(labels.to(z.device), classes).to(z.dtype)], dim=1)


def classes_of(inputs: torch.Tensor, classes: int) -> torch.Tensor:
    """The class a conditional generator input asks for."""
    return inputs[:, -classes:].argmax(1)


def generator_inputs(n: int, noise_dim: int, classes: int, rng: torch.Generator,
                     labels: torch.Tensor | None = None) -> torch.Tensor:
    """``n`` generator inputs on the CPU: Gaussian noise, plus (``classes`` > 0) a one-hot class — ``labels``, or
    drawn uniformly."""
    z = torch.randn(n, noise_dim, generator=rng, device="cpu")
    if not classes:
        return z
    if labels is None:
        labels = torch.randint(0, classes, (n,), generator=rng, device="cpu")
    return with_classes(z, labels, classes)


def grid_labels(n: int, classes: int) -> torch.Tensor:
    """Labels for a progress grid of ``n`` images: one row per class (``n // classes`` images each), in order."""
    per_row = max(1, n // classes)
    return torch.arange(classes, device="cpu").repeat_interleave(per_row)[:n]


class ClassNoise(Noise):
    """Training noise with a uniformly drawn class appended (per example of the global batch, like ``Noise``)."""

    def __init__(self, dim: int, classes: int, seed: int, device: torch.device | str = "cpu") -> None:
        super().__init__(dim, seed, device)
        self.classes = classes

    def __call__(self, n: int, stream: str = "z") -> torch.Tensor:
        labels = self.random.randint(f"{stream}:class", 0, self.classes, n)
        return with_classes(super().__call__(n, stream), labels, self.classes)


class ProjectionDiscriminator(DCGANDiscriminator):
    """DCGAN-28 discriminator with a projection head: logit(x, y) = ψ(φ(x)) + ⟨embed(y), φ(x)⟩."""

    def __init__(self, classes: int, width: int = 64, spectral_norm: bool = False, minibatch_std: bool = False,
                 minibatch_group: int = 0, extra_convs: int = 0) -> None:
        super().__init__(width, spectral_norm, minibatch_std, minibatch_group, extra_convs)
        self.embed = nn.Embedding(classes, self.head.in_features)
        nn.init.normal_(self.embed.weight, 0.0, 0.02)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.spread(self.body(x)).flatten(1)
        return self.head(h).squeeze(1) + (self.embed(labels) * h).sum(1)


class CGANObjective(GANObjective):
    """The founding losses with both networks told the class: batches are (images, labels), fakes carry the class
    their input asked for, D judges each image against its class."""

    def __init__(self, generator: nn.Module, discriminator: nn.Module, noise: ClassNoise, reduction: str = "mean",
                 real_label: float = 1.0, augment: tuple[str, ...] = ()) -> None:
        super().__init__(generator, discriminator, noise, reduction, real_label, augment)
        self.classes = noise.classes

    def split(self, batch):
        return batch

    def fake_labels(self, inputs: torch.Tensor) -> torch.Tensor:
        return classes_of(inputs, self.classes)
