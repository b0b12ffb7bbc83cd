"""Image objectives, separate from the models: each returns {optimizer: loss} and named metrics per update.

``gan`` is the founding description's loss, written from logits ℓ = logit D(·) so it stays finite:
    −log D(x)        = softplus(−ℓ_real)
    −log(1 − D(x̂))   = softplus(ℓ_fake)
    L_G = Σ −log D(G(z))                     = Σ softplus(−ℓ_fake)
    L_D = Σ −log D(x) − Σ log(1 − D(G(z)))   = Σ softplus(−ℓ_real) + Σ softplus(ℓ_fake)
    L_ELECTRA = L_G + L_D (logged; each network minimises its own part).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from electra.core.randomness import StepRandom
from electra.image.augment import augment

REDUCTIONS = ("mean", "sum")


class Noise:
    """N(0, 1) noise per example of the global batch (see core.randomness): the same z for the same example
    however the batch is split across ranks and accumulation steps."""

    def __init__(self, dim: int, seed: int, device: torch.device | str = "cpu") -> None:
        self.dim, self.device = dim, torch.device(device)
        self.random = StepRandom(seed)

    def __call__(self, n: int, stream: str = "z") -> torch.Tensor:
        return self.random.randn(stream, n, self.dim).to(self.device, non_blocking=True)


def _reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    return values.sum() if reduction == "sum" else values.mean()


def generator_loss(fake_logits: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """L_G = Σ −log D(G(z))."""
    return _reduce(F.softplus(-fake_logits), reduction)


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, reduction: str = "mean",
                       real_label: float = 1.0) -> torch.Tensor:
    """L_D = Σ −log D(x) − Σ log(1 − D(G(z))); ``real_label`` < 1 is one-sided label smoothing (1 = as written)."""
    real_term = real_label * F.softplus(-real_logits) + (1.0 - real_label) * F.softplus(real_logits)
    return _reduce(real_term, reduction) + _reduce(F.softplus(fake_logits), reduction)


def _with_total(means: dict[str, float]) -> dict[str, float]:
    if "L_G" in means and "L_D" in means:
        means["L_ELECTRA"] = means["L_G"] + means["L_D"]
    return means


class ImageObjective:
    noise: Noise
    policy: tuple[str, ...] = ()   # DiffAugment policy of the objectives that judge images (image/augment.py)

    @property
    def random(self) -> StepRandom:
        """The trainer points this at each micro-batch's rows of the global batch."""
        return self.noise.random

    def summarize(self, means: dict[str, float]) -> dict[str, float]:
        return _with_total(means)

    def augmented(self, images: torch.Tensor, stream: str) -> torch.Tensor:
        """``images`` DiffAugment-ed when the run asks for it (each call site its own random stream; see
        image/augment.py)."""
        if not self.policy:
            return images
        return augment(images, self.policy, lambda *tail: self.random.rand(stream, images.shape[0], *tail))


class GANObjective(ImageObjective):
    """The founding description's generator/discriminator game, as in pytorch/examples' dcgan: update D on a real
    and a fake batch, then update G through D on the same fake batch."""

    updates = {"discriminator": ("discriminator",), "generator": ("generator",)}   # update → optimizers stepped
    groups = {"generator": ("generator",), "discriminator": ("discriminator",)}    # optimizer → modules

    def __init__(self, generator: nn.Module, discriminator: nn.Module, noise: Noise, reduction: str = "mean",
                 real_label: float = 1.0, augment: tuple[str, ...] = ()) -> None:
        self.G, self.D, self.noise = generator, discriminator, noise
        self.reduction, self.real_label, self.policy = reduction, real_label, augment

    def judge(self, images: torch.Tensor, stream: str, labels: torch.Tensor | None = None) -> torch.Tensor:
        """D's logits for ``images`` (of ``labels``, for a conditional D), augmented first."""
        images = self.augmented(images, stream)
        return self.D(images) if labels is None else self.D(images, labels)

    def split(self, batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(images, their labels or None): unconditional batches are images alone."""
        return batch, None

    def fake_labels(self, inputs: torch.Tensor) -> torch.Tensor | None:
        return None

    def _fake(self, images: torch.Tensor, cache: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        # One G(z) per step, shared by both updates (as the textbook DCGAN loop does).
        if "fake" not in cache:
            inputs = self.noise(images.shape[0])
            cache["fake"], cache["fake_labels"] = self.G(inputs), self.fake_labels(inputs)
        return cache["fake"], cache["fake_labels"]

    def losses(self, update: str, batch, cache: dict):
        images, labels = self.split(batch)
        fake, fake_labels = self._fake(images, cache)
        if update == "discriminator":   # L_D = Σ −log D(x) − Σ log(1 − D(G(z))), G(z) held fixed
            real_logits = self.judge(images, "augment_real", labels)
            fake_logits = self.judge(fake.detach(), "augment_fake_d", fake_labels)
            loss = discriminator_loss(real_logits, fake_logits, self.reduction, self.real_label)
            return {"discriminator": loss}, {
                "L_D": loss.detach(),
                "D(x)": torch.sigmoid(real_logits.detach()).mean(),
                "D(G(z))": torch.sigmoid(fake_logits.detach()).mean(),
            }
        if update == "generator":       # L_G = Σ −log D(G(z)), through the just-updated D
            loss = generator_loss(self.judge(fake, "augment_fake_g", fake_labels), self.reduction)
            return {"generator": loss}, {"L_G": loss.detach()}
        raise KeyError(f"GANObjective has no update '{update}'")


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, 1)) summed over latent dimensions, one value per example."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)


def reparameterise(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    return mu + eps.to(mu.dtype) * (0.5 * logvar).exp()


def pixel_reconstruction(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Bernoulli negative log-likelihood of the target pixels, summed over pixels, one value per example.

    Images live in [-1, 1]; they are mapped to [0, 1] intensities for the Bernoulli likelihood."""
    p = ((recon + 1.0) * 0.5).clamp(1e-6, 1 - 1e-6)
    t = (target + 1.0) * 0.5
    return F.binary_cross_entropy(p, t, reduction="none").flatten(1).sum(dim=1)


def binarized(images: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] → each pixel −1 or 1, 1 with the probability of its intensity ((x + 1) / 2)."""
    return torch.where(uniform < (images + 1.0) * 0.5, 1.0, -1.0).to(images.dtype)


class VAEObjective(ImageObjective):
    """Encoder + generator (decoder) trained to reconstruct: ELBO = reconstruction + β·KL, one 'autoencoder' update."""

    updates = {"autoencoder": ("autoencoder",)}
    groups = {"autoencoder": ("encoder", "generator")}

    def __init__(self, encoder: nn.Module, generator: nn.Module, noise: Noise, beta: float = 1.0,
                 binarize: bool = False) -> None:
        self.E, self.G, self.noise, self.beta, self.binarize = encoder, generator, noise, beta, binarize

    def losses(self, update: str, batch: torch.Tensor, cache: dict):
        if self.binarize:   # a fresh 0/1 draw of every digit at every step (dynamic binarisation)
            uniform = self.noise.random.rand("binarize", batch.shape[0], *batch.shape[1:])
            batch = binarized(batch, uniform.to(batch.device, non_blocking=True))
        mu, logvar = self.E(batch)
        recon = self.G(reparameterise(mu, logvar, self.noise(batch.shape[0], "eps")))
        rec = pixel_reconstruction(recon, batch).mean()
        kl = kl_to_standard_normal(mu, logvar).mean()
        loss = rec + self.beta * kl
        return {"autoencoder": loss}, {"reconstruction": rec.detach(), "KL": kl.detach(), "ELBO_loss": (rec + kl).detach()}


class VAEGANObjective(ImageObjective):
    """VAE-GAN (Larsen et al. 2016): encoder, generator (decoder) and discriminator, one joint update per step.

    encoder:       L_prior + L_rec
    generator:     γ·L_rec + L_G on reconstructions and on prior samples
    discriminator: L_D with x as real, and both reconstructions and prior samples as fakes
    L_rec is measured in the discriminator's penultimate feature space (``recon_space='features'``, the paper's
    learned similarity) or on pixels (``'pixels'``).  Each loss reaches only its own network's parameters.
    """

    updates = {"joint": ("encoder", "generator", "discriminator")}
    groups = {"encoder": ("encoder",), "generator": ("generator",), "discriminator": ("discriminator",)}

    def __init__(self, encoder: nn.Module, generator: nn.Module, discriminator: nn.Module, noise: Noise,
                 gamma: float = 1.0, beta: float = 1.0, recon_space: str = "features", reduction: str = "mean",
                 real_label: float = 1.0) -> None:
        self.E, self.G, self.D, self.noise = encoder, generator, discriminator, noise
        self.gamma, self.beta, self.recon_space = gamma, beta, recon_space
        self.reduction, self.real_label = reduction, real_label

    def _reconstruction(self, x: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
        if self.recon_space == "pixels":
            return pixel_reconstruction(recon, x).mean()
        f_real = self.D.features(x).detach()
        f_fake = self.D.features(recon)
        return 0.5 * (f_fake - f_real).pow(2).sum(dim=1).mean()

    def losses(self, update: str, batch: torch.Tensor, cache: dict):
        n = batch.shape[0]
        mu, logvar = self.E(batch)
        recon = self.G(reparameterise(mu, logvar, self.noise(n, "eps")))
        prior = self.G(self.noise(n))
        kl = kl_to_standard_normal(mu, logvar).mean()
        rec = self._reconstruction(batch, recon)
        real_logits = self.D(batch)
        fakes = torch.cat([recon, prior])
        d_fake_logits = self.D(fakes.detach())
        d_loss = discriminator_loss(real_logits, d_fake_logits, self.reduction, self.real_label)
        g_fake_logits = self.D(fakes)
        g_adv = generator_loss(g_fake_logits, self.reduction)
        losses = {
            "encoder": self.beta * kl + rec,
            "generator": self.gamma * rec + g_adv,
            "discriminator": d_loss,
        }
        metrics = {
            "L_G": g_adv.detach(), "L_D": d_loss.detach(), "KL": kl.detach(), "reconstruction": rec.detach(),
            "D(x)": torch.sigmoid(real_logits.detach()).mean(),
            "D(G(z))": torch.sigmoid(d_fake_logits[n:].detach()).mean(),
        }
        return losses, metrics


OBJECTIVES = ("gan", "cgan", "ssgan", "vae", "vaegan")   # cgan: conditional.py; ssgan: semi_supervised.py
