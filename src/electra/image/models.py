"""Generators (100-d noise → 1×28×28 in [-1, 1]), discriminators (image → logit) and the VAE encoder.

Discriminators return the *logit* of "real"; D(x) = sigmoid(logit).  The founding description puts the sigmoid
inside the model; keeping it in the objective computes the same probability and lets the losses be evaluated
stably (softplus of logits instead of log of probabilities).  ``features`` returns the penultimate activations,
used by the VAE-GAN's learned similarity and by probes.
"""

from __future__ import annotations

import torch
from torch import nn

NOISE_DIM = 100
PIXELS = 28 * 28


def dcgan_init(module: nn.Module) -> None:
    """DCGAN's N(0, 0.02) initialisation (batch-norm scales N(1, 0.02), shifts 0)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class SeedGenerator(nn.Module):
    """The founding description's generator: Dense 1024 → 512 → 256 → 128 (ReLU), plus the missing projection
    to 784 pixels (tanh) so that the reshape to 28×28 can run."""

    def __init__(self, noise_dim: int = NOISE_DIM) -> None:
        super().__init__()
        self.noise_dim = noise_dim
        self.net = nn.Sequential(
            nn.Linear(noise_dim, 1024), nn.ReLU(),
            nn.Linear(1024, 512), nn.ReLU(),
            nn.Linear(512, 256), nn.ReLU(),
            nn.Linear(256, 128), nn.ReLU(),
            nn.Linear(128, PIXELS), nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, 1, 28, 28)


class SeedDiscriminator(nn.Module):
    """The founding description's discriminator: Flatten → 128 → 128 (ReLU) → 1."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(PIXELS, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU())
        self.head = nn.Linear(128, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x)).squeeze(1)


class DCGANGenerator(nn.Module):
    """Noise → 4w×7×7 → 2w×14×14 → 1×28×28, batch-norm + ReLU between, tanh out."""

    def __init__(self, noise_dim: int = NOISE_DIM, width: int = 64) -> None:
        super().__init__()
        self.noise_dim = noise_dim
        c = 4 * width
        self.project = nn.Sequential(nn.Linear(noise_dim, c * 49, bias=False), nn.BatchNorm1d(c * 49), nn.ReLU())
        self.net = nn.Sequential(
            nn.ConvTranspose2d(c, 2 * width, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.ConvTranspose2d(2 * width, 1, 4, 2, 1), nn.Tanh(),
        )
        self._c = c
        dcgan_init(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.project(z).view(-1, self._c, 7, 7))


def _maybe_sn(layer: nn.Module, spectral: bool) -> nn.Module:
    return nn.utils.parametrizations.spectral_norm(layer) if spectral else layer


class MinibatchStd(nn.Module):
    """Appends one channel holding the batch's mean feature standard deviation (Karras et al. 2018, ProGAN).

    A discriminator that sees how varied a batch is can punish a generator that draws the same few digits, which a
    per-image discriminator cannot.  Real and generated batches go through D separately, so the statistic compares
    like with like.  ``group`` > 0 computes it over groups of that many images (ProGAN uses 4: each image's
    statistic then depends on few others, a sharper per-sample signal); 0 uses the whole batch.  A batch that the
    group size does not divide uses the largest group size that does."""

    def __init__(self, group: int = 0) -> None:
        super().__init__()
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        g = n if self.group <= 0 else max(d for d in range(1, min(self.group, n) + 1) if n % d == 0)
        # Image i sits in group i mod (n/g): groups of strided images, as ProGAN's reshape makes them.  Features are
        # read in memory order (channels-last makes the NHWC view free); their order is irrelevant to a mean.
        # The variance is written out: torch's var() kernel is ~2× slower here, forward plus backward.
        flat = x.permute(0, 2, 3, 1) if x.is_contiguous(memory_format=torch.channels_last) else x
        grouped = flat.float().reshape(g, n // g, -1)
        centred = grouped - grouped.mean(dim=0, keepdim=True)
        std = (centred.square().mean(dim=0) + 1e-8).sqrt().mean(dim=1).to(x.dtype)   # one value per group
        return torch.cat([x, std.repeat(g).view(n, 1, 1, 1).expand(n, 1, *x.shape[2:])], dim=1)


class DCGANDiscriminator(nn.Module):
    """1×28×28 → w×14×14 → 2w×7×7 (LeakyReLU 0.2; batch-norm on the second conv unless spectral norm) → logit;
    ``extra_convs`` adds that many 3×3 2w→2w layers at 7×7 (batch-norm, LeakyReLU); with ``minibatch_std`` the
    head also sees a (2w+1)-th 7×7 channel carrying the batch's feature spread.

    ``features`` are the per-image 2w×7×7 activations (flattened), without the batch statistic: probes and the
    VAE-GAN's feature-space reconstruction want a description of one image, not of the batch it came in."""

    def __init__(self, width: int = 64, spectral_norm: bool = False, minibatch_std: bool = False,
                 minibatch_group: int = 0, extra_convs: int = 0) -> None:
        super().__init__()

        def norm():
            return nn.Identity() if spectral_norm else nn.BatchNorm2d(2 * width)

        layers = [
            _maybe_sn(nn.Conv2d(1, width, 4, 2, 1), spectral_norm), nn.LeakyReLU(0.2),
            _maybe_sn(nn.Conv2d(width, 2 * width, 4, 2, 1, bias=spectral_norm), spectral_norm), norm(),
            nn.LeakyReLU(0.2),
        ]
        # Extra 3×3 layers at 7×7 widen each feature's view from 10×10 pixels to the whole digit before the linear
        # head, so D can judge a digit's overall shape and not only its strokes.
        for _ in range(extra_convs):
            layers += [_maybe_sn(nn.Conv2d(2 * width, 2 * width, 3, 1, 1, bias=spectral_norm), spectral_norm), norm(),
                       nn.LeakyReLU(0.2)]
        self.body = nn.Sequential(*layers)
        self.spread = MinibatchStd(minibatch_group) if minibatch_std else nn.Identity()
        self.head = _maybe_sn(nn.Linear((2 * width + minibatch_std) * 49, 1), spectral_norm)
        dcgan_init(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).flatten(1)

    def head_input(self, x: torch.Tensor) -> torch.Tensor:
        """What the heads see: ``features`` with the batch-spread channel when ``minibatch_std`` is on."""
        return self.spread(self.body(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.head_input(x)).squeeze(1)


class Encoder(nn.Module):
    """1×28×28 → (μ, log σ²) of a diagonal Gaussian over the generator's 100-d noise space."""

    def __init__(self, latent_dim: int = NOISE_DIM, width: int = 64) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * width), nn.LeakyReLU(0.2),
            nn.Flatten(),
        )
        self.head = nn.Linear(2 * width * 49, 2 * latent_dim)
        dcgan_init(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.head(self.body(x)).chunk(2, dim=1)
        return mu, logvar


ARCHITECTURES = ("seed-mlp", "dcgan", "ssgan-mlp")   # ssgan-mlp: image/semi_supervised.py


def build_models(architecture: str, objective: str, width: int = 64, spectral_norm: bool = False,
                 noise_dim: int = NOISE_DIM, minibatch_std: bool = False, minibatch_group: int = 0,
                 d_width: int | None = None, d_extra_convs: int = 0, classes: int = 0,
                 conditioning: str = "projection", g_noise: str = "gaussian",
                 g_bn_scale: bool = True, g_init: str = "torch") -> dict[str, nn.Module]:
    """The modules an objective needs, keyed by the names checkpoints and optimizers use; ``cgan`` conditions both
    on one of ``classes`` classes, D by ``conditioning`` (image/conditional.py)."""
    if objective == "cgan":
        from electra.image.conditional import conditional_discriminator

        return {"generator": DCGANGenerator(noise_dim + classes, width),
                "discriminator": conditional_discriminator(
                    conditioning, classes, width=d_width or width, spectral_norm=spectral_norm,
                    minibatch_std=minibatch_std, minibatch_group=minibatch_group, extra_convs=d_extra_convs)}
    if architecture == "ssgan-mlp":
        from electra.image.semi_supervised import SSGANDiscriminator, SSGANGenerator

        return {"generator": SSGANGenerator(noise_dim, uniform_noise=g_noise == "uniform", bn_scale=g_bn_scale,
                                            init=g_init),
                "discriminator": SSGANDiscriminator(classes)}
    if architecture == "seed-mlp":
        modules: dict[str, nn.Module] = {"generator": SeedGenerator(noise_dim), "discriminator": SeedDiscriminator()}
    elif architecture == "dcgan":
        modules = {"generator": DCGANGenerator(noise_dim, width),
                   "discriminator": DCGANDiscriminator(d_width or width, spectral_norm, minibatch_std, minibatch_group,
                                                     d_extra_convs)}
    else:
        from electra.errors import UserError

        raise UserError(f"unknown model '{architecture}'; choose one of {', '.join(ARCHITECTURES)}")
    if objective in ("vae", "vaegan"):
        modules["encoder"] = Encoder(noise_dim, width)
    if objective == "vae":
        del modules["discriminator"]
    return modules
