"""The discriminator as a recogniser: the semi-supervised GAN of Salimans et al. 2016 (objective ``ssgan``).

The discriminator has K outputs, one per class; "fake" is the implicit (K+1)-th class with logit 0, so
P(real | x) = Z/(Z+1) with Z = Σ_k exp ℓ_k.  It learns from three sources at once:
- the few labelled images: cross-entropy over the K classes;
- all the images, unlabelled: −log P(real | x), and the generator's fakes: −log P(fake | G(z)), i.e.
  L_unsup = ½·E[softplus(lse ℓ(x)) − lse ℓ(x)] + ½·E[softplus(lse ℓ(G(z)))]  (the paper's weighting);
the generator is trained by feature matching: ‖E f(x) − E f(G(z))‖² on D's last hidden layer, which makes its
fakes useful to D rather than merely convincing.  ``class_balance`` (not the paper's; CatGAN's marginal-entropy
term, Springenberg 2016) adds λ·KL(p̄ ‖ uniform) to D's loss, p̄ the mean of D's class probabilities over each
unlabelled batch: with few labels (2 per class), one class can otherwise take most unlabelled digits, since any
class's logit can carry "real".  ``augment`` (not the paper's) applies DiffAugment's transforms to the labelled
images, the few that D can memorise; the unlabelled images and the fakes stay as they are (augmenting them too lets
D outrun the generator: docs/results.md).

Architecture of the paper's MNIST run (openai/improved-gan ``train_mnist_feature_matching.py`` and its ``nn.py``):
D an MLP 784-1000-500-250-250-250 of ReLU layers with weight normalisation (W = g·V/‖V‖ per unit), Gaussian
noise on its input (σ 0.3, on pixels in [0, 1]) and after every hidden layer (σ 0.5); the hidden layers' scales g
are set once from data and then fixed, only the output layer's is trained; the data-dependent initialisation
(Salimans & Kingma 2016) runs on 500 training images before the first step, making every layer's pre-activation
zero-mean and unit-variance.  G 100-500-500-784 with batch norm and softplus, a weight-normalised output layer.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from electra.core.batches import StepBatches
from electra.errors import UserError
from electra.image.objectives import ImageObjective, Noise

HIDDEN = (1000, 500, 250, 250, 250)


def _wn(layer: nn.Module) -> nn.Module:
    return nn.utils.parametrizations.weight_norm(layer)


class GaussianNoise(nn.Module):
    def __init__(self, sigma: float) -> None:
        super().__init__()
        self.sigma = sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.sigma * torch.randn_like(x) if self.training else x


class NormalisedLinear(nn.Module):
    """y = x·(g·V/‖V‖)ᵀ + b, the norm per output unit (the paper's weight-normalised dense layer); ``train_scale``
    False keeps g a buffer: set from data once, never trained."""

    def __init__(self, n_in: int, n_out: int, train_scale: bool) -> None:
        super().__init__()
        # device=None: the default device, as nn.Linear's own tables (the memory check builds models on meta)
        self.direction = nn.Parameter(nn.init.normal_(torch.empty(n_out, n_in, device=None), std=0.1))
        self.bias = nn.Parameter(torch.zeros(n_out, device=None))
        scale = torch.ones(n_out, device=None)
        if train_scale:
            self.scale = nn.Parameter(scale)
        else:
            self.register_buffer("scale", scale)

    def weight(self) -> torch.Tensor:
        return self.direction * (self.scale / self.direction.norm(dim=1)).unsqueeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight(), self.bias)

    @torch.no_grad()
    def initialise_from(self, x: torch.Tensor) -> torch.Tensor:
        """Scale and bias that make this layer's outputs on ``x`` zero-mean, unit-variance per unit; those outputs."""
        a = F.linear(x, self.weight())
        mean, std = a.mean(0), a.var(0, unbiased=False).add(1e-8).sqrt()
        self.scale.div_(std)
        self.bias.copy_(-mean / std)
        return (a - mean) / std


class SSGANDiscriminator(nn.Module):
    """The paper's MLP discriminator: K class logits; ``features`` is the last 250-unit hidden layer (before its
    noise), which feature matching compares.  Images come in the track's [-1, 1] range and are mapped to the
    paper's [0, 1] before the input noise."""

    def __init__(self, classes: int = 10, hidden: tuple[int, ...] = HIDDEN) -> None:
        super().__init__()
        widths = (28 * 28,) + tuple(hidden)
        self.input_noise = GaussianNoise(0.3)
        self.hidden = nn.ModuleList(NormalisedLinear(a, b, train_scale=False) for a, b in zip(widths, widths[1:]))
        self.noise = GaussianNoise(0.5)
        self.head = NormalisedLinear(widths[-1], classes, train_scale=True)

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        return self.input_noise((x.flatten(1) + 1.0) * 0.5)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = self._input(x)
        for i, layer in enumerate(self.hidden):
            h = F.relu(layer(self.noise(h) if i else h))
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.noise(self.features(x)))

    @torch.no_grad()
    def initialise_from(self, x: torch.Tensor) -> None:
        """The data-dependent initialisation, layer by layer on ``x`` (noise on, as in training)."""
        h = self._input(x)
        for i, layer in enumerate(self.hidden):
            h = F.relu(layer.initialise_from(self.noise(h) if i else h))
        self.head.initialise_from(self.noise(h))


class ShiftOnlyBatchNorm(nn.BatchNorm1d):
    """Batch norm with a trained shift and no scale (the paper's generator: ``batch_norm(…, g=None)``)."""

    def __init__(self, width: int) -> None:
        super().__init__(width, affine=False)
        self.shift = nn.Parameter(torch.zeros(width, device=None))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + self.shift


class SSGANGenerator(nn.Module):
    """100 → 500 → 500 (batch norm, softplus) → 784 (weight norm, tanh: the [-1, 1] range of the image track).

    ``uniform_noise``: the network sees Φ(z), uniform on [0, 1] as the paper's noise, while the track's noise (grids,
    sampling, export) stays N(0, 1).  ``bn_scale`` False: batch norm with a shift only, as the paper's.
    ``init="paper"``: the paper's initial weights and output — Glorot-uniform dense layers, zero output bias, the
    output's weight-norm scale 1 and tanh(a/2) = 2·sigmoid(a) − 1, the paper's sigmoid output on [-1, 1] (the torch
    default, ``"torch"``, is tanh(a) with the scale ‖V‖ of torch's initial weights, about 0.58: the output layer's
    scale and bias then move twice as fast per Adam step, in sigmoid terms)."""

    def __init__(self, noise_dim: int = 100, uniform_noise: bool = False, bn_scale: bool = True,
                 init: str = "torch") -> None:
        super().__init__()
        self.uniform_noise = uniform_noise
        norm = nn.BatchNorm1d if bn_scale else ShiftOnlyBatchNorm
        layers = [nn.Linear(noise_dim, 500, bias=False), nn.Linear(500, 500, bias=False), nn.Linear(500, 28 * 28)]
        self.output_gain = 0.5 if init == "paper" else 1.0
        if init == "paper":
            for layer in layers:
                nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layers[2].bias)
        output = _wn(layers[2])
        if init == "paper":
            with torch.no_grad():
                output.parametrizations.weight.original0.fill_(1.0)
        # no trailing Tanh module: the output nonlinearity is applied in forward with its gain
        self.net = nn.Sequential(layers[0], norm(500), nn.Softplus(), layers[1], norm(500), nn.Softplus(), output)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.uniform_noise:
            z = 0.5 * (1.0 + torch.erf(z * 0.5 ** 0.5))   # Φ(z) with an op every ONNX exporter knows
        return torch.tanh(self.output_gain * self.net(z)).view(-1, 1, 28, 28)


def class_imbalance(logits: torch.Tensor) -> torch.Tensor:
    """KL(p̄ ‖ uniform) = log K − H(p̄), p̄ the batch's mean class distribution: 0 when the classes are used evenly."""
    mean = logits.softmax(1).mean(0)
    return math.log(logits.shape[1]) + (mean * mean.clamp_min(1e-12).log()).sum()


def unsupervised_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """½·E[−log P(real | x)] + ½·E[−log P(fake | G(z))] with P(real) = Z/(Z+1), written stably from lse ℓ."""
    real, fake = real_logits.logsumexp(1), fake_logits.logsumexp(1)
    return 0.5 * (F.softplus(real) - real).mean() + 0.5 * F.softplus(fake).mean()


class SSGANObjective(ImageObjective):
    updates = {"discriminator": ("discriminator",), "generator": ("generator",)}
    groups = {"generator": ("generator",), "discriminator": ("discriminator",)}

    def __init__(self, generator: nn.Module, discriminator: nn.Module, noise: Noise,
                 unlabelled_weight: float = 1.0, fresh_batch: bool = False, class_balance: float = 0.0,
                 augment: tuple[str, ...] = ()) -> None:
        self.G, self.D, self.noise, self.policy = generator, discriminator, noise, augment
        self.unlabelled_weight = unlabelled_weight   # 0: the supervised-only baseline (the fakes never reach D)
        self.class_balance = class_balance
        self.fresh_batch = fresh_batch   # the G step: new fakes, real features from the batch's "second" images

    def losses(self, update: str, batch: dict, cache: dict):
        images = batch["unlabelled"]
        if "fake" not in cache:
            cache["fake"] = self.G(self.noise(images.shape[0]))
        fake = cache["fake"]
        if update == "discriminator":
            x, y = batch["labelled"]
            labelled = self.D(self.augmented(x, "augment_labelled"))
            supervised = F.cross_entropy(labelled, y)
            loss = supervised
            stats = {"L_supervised": supervised.detach(),
                     "labelled_acc": (labelled.detach().argmax(1) == y).float().mean()}
            if self.unlabelled_weight:
                real = self.D(images)
                loss = loss + self.unlabelled_weight * unsupervised_loss(real, self.D(fake.detach()))
                if self.class_balance:
                    imbalance = class_imbalance(real)
                    loss = loss + self.class_balance * imbalance
                    stats["class_imbalance"] = imbalance.detach()
            return {"discriminator": loss}, {"L_D": loss.detach(), **stats}
        if update == "generator":   # feature matching on D's last hidden layer
            if self.fresh_batch:
                images = batch["second"]
                fake = self.G(self.noise(images.shape[0], stream="z_generator"))
            real_features = self.D.features(images).detach().mean(0)
            loss = (real_features - self.D.features(fake).mean(0)).square().mean()
            return {"generator": loss}, {"L_G": loss.detach()}
        raise KeyError(f"SSGANObjective has no update '{update}'")


INIT_IMAGES = 500   # the paper's data-dependent initialisation batch


def initialise_discriminator(discriminator: SSGANDiscriminator, images_uint8: torch.Tensor, seed: int) -> None:
    """Run the data-dependent initialisation on ``INIT_IMAGES`` training images drawn with ``seed``."""
    from electra.image.data import to_model_range

    chosen = torch.randperm(len(images_uint8), generator=torch.Generator().manual_seed(seed), device="cpu")
    device = next(discriminator.parameters()).device
    discriminator.initialise_from(to_model_range(images_uint8[chosen[:INIT_IMAGES]].to(device)))


def labelled_indices(labels: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """``count`` indices, the same number from every class, drawn with ``seed`` (sorted)."""
    classes = int(labels.max()) + 1
    if count < classes or count % classes:
        raise UserError(f"--labels {count}: give a multiple of the {classes} classes (the draw is class-balanced)")
    per_class = count // classes
    g = torch.Generator().manual_seed(seed)
    chosen = []
    for c in range(classes):
        members = (labels == c).nonzero().squeeze(1)
        if len(members) < per_class:
            raise UserError(f"--labels {count} needs {per_class} images of class {c}, but the data has "
                            f"{len(members)}")
        chosen.append(members[torch.randperm(len(members), generator=g, device="cpu")[:per_class]])
    return torch.cat(chosen).sort().values


class SemiSupervisedBatches:
    """Per step: a batch of all images (their labels unused) and a batch of the labelled few (cycled); with
    ``second``, also a batch of all images in a second order (the generator step's real images)."""

    def __init__(self, everything: StepBatches, labelled: StepBatches, labelled_labels: torch.Tensor,
                 device, second: StepBatches | None = None) -> None:
        self.everything, self.labelled, self.labels = everything, labelled, labelled_labels.to(device)
        self.second = second
        self.steps_per_epoch, self.global_batch = everything.steps_per_epoch, everything.global_batch

    def __call__(self, step: int, micro: int = 0) -> dict:
        index = self.labelled.indices(step, micro)
        batch = {"unlabelled": self.everything(step, micro),
                 "labelled": (self.labelled.fetch(index), self.labels[index.to(self.labels.device)])}
        if self.second is not None:
            batch["second"] = self.second(step, micro)
        return batch


@torch.no_grad()
def classify(discriminator: nn.Module, images_uint8: torch.Tensor, batch: int = 1000) -> torch.Tensor:
    """Class probabilities (N × K, on the CPU) of uint8 N×28×28 images, the discriminator in eval mode."""
    from electra.image.data import to_model_range

    was_training = discriminator.training
    discriminator.eval()
    device = next(discriminator.parameters()).device
    try:
        return torch.cat([discriminator(to_model_range(c.to(device))).softmax(1).cpu()
                          for c in images_uint8.split(batch)])
    finally:
        discriminator.train(was_training)


def classify_target(run_dir, target=None, dataset: str | None = None, data_dir: str | None = None,
                    out=None) -> dict:
    """``electra image classify``: the digit a semi-supervised run's discriminator sees in each image of
    ``target`` (an .npy or a folder of 28×28 PNGs) or of a data set's test split; accuracy when labels are known.
    Predictions go to a CSV (index, prediction, probability) beside the target, or ``out``."""
    from pathlib import Path

    from electra.core.files import write_text
    from electra.image.data import read_image_files
    from electra.image.evaluate import images_from_array, read_npy, split_for_eval
    from electra.image.train import load_run

    system = load_run(run_dir)
    if system.config.objective != "ssgan":
        raise UserError(f"{run_dir} is a {system.config.objective} run; classify needs a semi-supervised one "
                        f"(--preset ssgan)")
    labels = None
    if target is None:
        test = split_for_eval(dataset or system.config.dataset, data_dir or system.config.data_dir)[1]
        images, labels, source = test.images, test.labels, Path(run_dir) / "test-split"
    else:
        source = Path(target)
        if source.is_dir():
            images = read_image_files(source, fit=False)
        elif source.suffix.lower() == ".npy":
            images = images_from_array(read_npy(source), str(source))
        else:
            raise UserError(f"{source}: give an .npy file or a folder of 28x28 images")
    probs = classify(system.recogniser, images)
    best, predicted = probs.max(1)
    path = Path(out) if out else source.with_name(source.name + ".predictions.csv")
    write_text(path, "index,prediction,probability\n" + "".join(
        f"{i},{int(p)},{float(q):.4f}\n" for i, (p, q) in enumerate(zip(predicted, best))))
    report = {"n": len(images), "written_to": str(path),
              "counts": torch.bincount(predicted, minlength=probs.shape[1]).tolist()}
    if labels is not None:
        report["accuracy"] = float((predicted == labels).float().mean())
        report["error"] = 1.0 - report["accuracy"]
    return report
