"""Class-conditional generation (objective ``cgan``): choose the digit.

The generator is the DCGAN-28 generator whose input is the noise with a one-hot class appended (Mirza & Osindero
2014): every place that draws generator inputs — training, the EMA's standing statistics, progress grids,
``sample``, ``eval`` — draws them through ``generator_inputs``, and the class of a generated image is read back
from its input.  Two discriminators (``conditioning=``):
- ``projection`` (Miyato & Koyama 2018, the ``cdcgan`` preset): the usual logit plus the inner product of its
  features with a learned embedding of the class, so it judges "a real image of *this* class";
- ``acgan`` (Odena et al. 2017, AC-GAN): an unconditional real/fake logit and a second head that classifies the
  image into the K classes; D adds the classification cross-entropy on real images (their labels) to the founding
  L_D, and G adds it on its fakes (the class asked for) to L_G, so G draws what D recognises.  The paper's D also
  learns to classify the fakes (``class_fakes=true``); then D can learn whatever marks G leaves for each class
  and the two collude: on the synthetic test digits 30% of the samples show the asked class that way, 100%
  without it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from electra.image.models import DCGANDiscriminator
from electra.image.objectives import GANObjective, Noise, discriminator_loss, generator_loss

CONDITIONINGS = ("projection", "acgan")


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
        h = self.head_input(x)
        return self.head(h).squeeze(1) + (self.embed(labels) * h).sum(1)


class ACGANDiscriminator(DCGANDiscriminator):
    """DCGAN-28 discriminator with an auxiliary classifier: ``heads`` gives (real/fake logit, K class logits) from
    the same features; called as ``D(x, labels)`` it gives the real/fake logit alone (the label is not used)."""

    def __init__(self, classes: int, width: int = 64, spectral_norm: bool = False, minibatch_std: bool = False,
                 minibatch_group: int = 0, extra_convs: int = 0) -> None:
        super().__init__(width, spectral_norm, minibatch_std, minibatch_group, extra_convs)
        self.classify = nn.Linear(self.head.in_features, classes)

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.head_input(x)
        return self.head(h).squeeze(1), self.classify(h)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.heads(x)[0]


def conditional_discriminator(conditioning: str, classes: int, **options) -> nn.Module:
    return (ACGANDiscriminator if conditioning == "acgan" else ProjectionDiscriminator)(classes, **options)


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


class ACGANObjective(CGANObjective):
    """The founding losses plus AC-GAN's class term: L_D + w·CE(real, y) (+ w·CE(fake, y_asked) with
    ``class_fakes``) for D, L_G + w·CE(fake, y_asked) for G (w = ``class_weight``)."""

    def __init__(self, generator: nn.Module, discriminator: ACGANDiscriminator, noise: ClassNoise,
                 reduction: str = "mean", real_label: float = 1.0, augment: tuple[str, ...] = (),
                 class_weight: float = 1.0, class_fakes: bool = False) -> None:
        super().__init__(generator, discriminator, noise, reduction, real_label, augment)
        self.class_weight, self.class_fakes = class_weight, class_fakes

    def _heads(self, images: torch.Tensor, stream: str) -> tuple[torch.Tensor, torch.Tensor]:
        return self.D.heads(self.augmented(images, stream))

    def losses(self, update: str, batch, cache: dict):
        images, labels = self.split(batch)
        fake, fake_labels = self._fake(images, cache)
        if update == "discriminator":
            real_logits, real_classes = self._heads(images, "augment_real")
            fake_logits, fake_classes = self._heads(fake.detach(), "augment_fake_d")
            adversarial = discriminator_loss(real_logits, fake_logits, self.reduction, self.real_label)
            classification = F.cross_entropy(real_classes, labels)
            if self.class_fakes:
                classification = classification + F.cross_entropy(fake_classes, fake_labels)
            return {"discriminator": adversarial + self.class_weight * classification}, {
                "L_D": adversarial.detach(), "L_class_D": classification.detach(),
                "D(x)": torch.sigmoid(real_logits.detach()).mean(),
                "D(G(z))": torch.sigmoid(fake_logits.detach()).mean(),
                "class_acc_real": (real_classes.detach().argmax(1) == labels).float().mean(),
            }
        if update == "generator":
            fake_logits, fake_classes = self._heads(fake, "augment_fake_g")
            adversarial = generator_loss(fake_logits, self.reduction)
            classification = F.cross_entropy(fake_classes, fake_labels)
            return {"generator": adversarial + self.class_weight * classification}, {
                "L_G": adversarial.detach(), "L_class_G": classification.detach()}
        raise KeyError(f"ACGANObjective has no update '{update}'")
