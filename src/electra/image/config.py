"""The image track's one configuration object and its named presets."""

from __future__ import annotations

from dataclasses import dataclass

from electra.config import check, from_preset, from_saved
from electra.core.schedules import LR_DECAYS
from electra.image.data import DATASETS
from electra.image.models import ARCHITECTURES
from electra.image.objectives import OBJECTIVES, REDUCTIONS

SCHEDULES = ("alternating", "phased", "every-step")


@dataclass(frozen=True)
class ImageConfig:
    preset: str = "dcgan"
    # model
    model: str = "dcgan"                 # seed-mlp | dcgan
    width: int = 64                      # dcgan channel width w (G: 4w→2w→1, D: w→2w)
    spectral_norm: bool = False          # spectral norm in D (replaces its batch-norm)
    minibatch_std: bool = False          # dcgan D sees each batch's feature spread (ProGAN): fights mode collapse
    minibatch_group: int = 0             # … computed over groups of this many images (0: the whole batch)
    d_width: int | None = None           # the discriminator's width when it differs from the generator's
    d_extra_convs: int = 0               # dcgan D: extra 3×3 layers at 7×7 (a view of the whole digit per feature)
    noise_dim: int = 100
    # objective
    objective: str = "gan"               # gan | vae | vaegan
    loss_reduction: str = "mean"         # mean: losses comparable across batch sizes; sum: Σ exactly as written
    real_label: float = 1.0              # < 1: one-sided label smoothing of D's real target
    vae_beta: float = 1.0                # weight of the KL (prior) term
    vaegan_gamma: float = 1.0            # weight of the reconstruction term in the generator's loss
    recon_space: str = "features"        # vaegan reconstruction: features (Larsen et al.) | pixels
    # schedule
    schedule: str = "alternating"        # alternating | phased (gan only)
    d_steps: int = 1                     # alternating: discriminator updates per generator update
    phase_both: int = 50                 # phased: steps training both networks …
    phase_generator: int = 50            # … then steps training only the generator
    # optimisation
    lr: float = 2e-4
    lr_g: float | None = None            # overrides lr for the generator (and encoder)
    lr_d: float | None = None            # overrides lr for the discriminator
    lr_decay: str = "none"               # none | linear | cosine: anneal over the run (steps or --minutes budget)
    lr_final: float = 0.0                # the decayed lr at the end, as a fraction of the peak
    beta1: float = 0.5
    beta2: float = 0.999
    batch_size: int = 64
    ema: float = 0.0                     # decay of an exponential moving average of G's weights used for sampling
    channels_last: bool = True           # NHWC activations: ~10% faster oneDNN convolutions on CPU, same maths
    grad_accum: int = 1                  # micro-batches per step: global batch = batch_size × grad_accum × ranks
    precision: str = "fp32"              # fp32 | bf16 | fp16 (autocast; fp16 with a GradScaler, GPU only)
    compile: bool = False                # torch.compile the networks (measured slower on this 2-core CPU)
    # length
    epochs: int | None = 20
    steps: int | None = None             # overrides epochs
    minutes: float | None = None         # wall-clock budget; stops early and checkpoints
    # data
    dataset: str = "embedded"            # embedded | mnist | fashion-mnist | folder
    data_dir: str | None = None
    download: bool = False
    # bookkeeping
    seed: int = 0
    log_every: int = 25
    checkpoint_every: int = 1000
    grid_size: int = 64                  # fixed-noise samples drawn into each epoch's grid

    def validate(self) -> None:
        checks = [
            (self.model in ARCHITECTURES, f"model must be one of {', '.join(ARCHITECTURES)}"),
            (self.objective in OBJECTIVES, f"objective must be one of {', '.join(OBJECTIVES)}"),
            (self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}"),
            (self.loss_reduction in REDUCTIONS, f"loss_reduction must be one of {', '.join(REDUCTIONS)}"),
            (self.recon_space in ("features", "pixels"), "recon_space must be features or pixels"),
            (self.dataset in DATASETS, f"dataset must be one of {', '.join(DATASETS)}"),
            (self.batch_size >= 2, "batch_size must be at least 2 (batch-norm needs a batch)"),
            (self.width >= 1 and self.noise_dim >= 1 and (self.d_width is None or self.d_width >= 1),
             "width, d_width and noise_dim must be positive"),
            (self.minibatch_group >= 0, "minibatch_group must be 0 (whole batch) or a group size"),
            (self.lr > 0 and all(x is None or x > 0 for x in (self.lr_g, self.lr_d)), "learning rates must be positive"),
            (self.lr_decay in LR_DECAYS, f"lr_decay must be one of {', '.join(LR_DECAYS)}"),
            (0 <= self.lr_final <= 1, "lr_final must lie in [0, 1]"),
            (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "beta1 and beta2 must lie in [0, 1)"),
            (0 <= self.ema < 1, "ema must lie in [0, 1)"),
            (0 < self.real_label <= 1, "real_label must lie in (0, 1]"),
            (not self.minibatch_std or self.model == "dcgan", "minibatch_std is a dcgan discriminator option"),
            (self.d_extra_convs >= 0, "d_extra_convs must be 0 or more"),
            (self.d_extra_convs == 0 or self.model == "dcgan", "d_extra_convs is a dcgan discriminator option"),
            (self.d_steps >= 1 and self.phase_both >= 0 and self.phase_generator >= 0
             and self.phase_both + self.phase_generator > 0, "schedule step counts must be positive"),
            (self.epochs is None or self.epochs >= 1, "epochs must be at least 1"),
            (self.steps is None or self.steps >= 1, "steps must be at least 1"),
            (self.minutes is None or self.minutes > 0, "minutes must be positive"),
            (self.epochs is not None or self.steps is not None or self.minutes is not None,
             "give epochs, steps or minutes"),
            (self.log_every >= 1 and self.checkpoint_every >= 1 and self.grid_size >= 1,
             "log_every, checkpoint_every and grid_size must be positive"),
            (not (self.schedule == "phased" and self.objective != "gan"), "the phased schedule is for objective gan"),
            (self.grad_accum >= 1, "grad_accum must be at least 1"),
            (self.precision in ("fp32", "bf16", "fp16"), "precision must be fp32, bf16 or fp16"),
        ]
        check(checks)


PRESETS: dict[str, dict] = {
    # The founding description as written: MLP generator/discriminator, the Σ −log D losses, Adam 1e-4
    # (Keras defaults β = 0.9/0.999), 50 steps training both then 50 steps with D frozen.
    "seed": dict(model="seed-mlp", objective="gan", schedule="phased", lr=1e-4, beta1=0.9, batch_size=128,
                 epochs=30),
    # The best-quality GAN default: DCGAN-28 with Radford et al.'s Adam β1 = 0.5 but lr 2e-3, not 2e-4.
    # Width 32 (not 64): 2.2× the images/s on a 2-core CPU for digits of the same legibility in a fixed budget.
    # lr, measured (3 CPU-minutes on full MNIST, LeNet-FID, benchmarks/image_quality.py): 2e-4 118.5,
    # 5e-4 100.3 / 102.0 (two seeds), 1e-3 93.1 / 76.0, 2e-3 72.3; batch 128, width 16, EMA 0.99, spectral norm,
    # or a faster D (lr_d 2e-3 with lr 1e-3) were no better.  A cosine lr decay was worse at 3 and 10 minutes
    # (118.5 / 81.6: as the lr falls D wins).  The minibatch-std channel in D was the next lever: 10 minutes,
    # FID 67.3 → 50.7 and class KL 0.039 → 0.022 for seed 0 (seed 1: 65.8, KL 0.048 — GAN seeds spread widely;
    # EMA 0.999 on top: FID 47.9 but KL 0.032).  Seed 2: 53.0, KL 0.020.  Not better (10 min, seed 1): EMA 0.999
    # 71.3, minibatch-std over groups of 4 72.1 (vs 65.8); at 3 min a 64-wide D lost a third of the steps, no gain.
    # EMA 0.999 of G, once its batch-norm statistics were its own (image/ema.py), helped every seed at 10 min:
    # FID 51.9 / 71.1 / 53.0 → 50.1 / 67.9 / 49.9 (seeds 0 / 1 / 2), class KL median 0.028 → 0.027.
    # The big lever was D's view: its features saw 10×10 patches and only a linear head combined them.  3×3 layers
    # at 7×7 (d_extra_convs) cost a quarter / a third of the steps but, at 10 min over seeds 0 / 1 / 2: one layer
    # 26.0 / 26.4 / 23.1 (KL 0.018 / 0.013 / 0.010), two layers 20.4 / 18.9 / 17.5 (KL 0.006 / 0.006 / 0.008).
    "dcgan": dict(model="dcgan", width=32, minibatch_std=True, d_extra_convs=2, ema=0.999, objective="gan",
                  schedule="alternating", lr=2e-3, beta1=0.5, batch_size=64, epochs=25),
    # Generator trained "like an autoencoder": encoder + generator, ELBO.
    "vae": dict(model="dcgan", objective="vae", schedule="every-step", lr=1e-3, beta1=0.9, batch_size=64,
                epochs=20),
    # Larsen et al. 2016: VAE whose reconstruction is judged in the discriminator's feature space, plus the GAN.
    "vaegan": dict(model="dcgan", objective="vaegan", schedule="every-step", lr=2e-4, beta1=0.5, batch_size=64,
                   epochs=20),
}

PRESET_HELP = {
    "seed": "the founding description: MLP G/D, Σ −log D losses, phased 50/50 schedule, Adam 1e-4",
    "dcgan": "convolutional G/D for 28×28, D with 3×3 layers at 7×7 and a minibatch-std channel, EMA of G "
             "(default; best GAN quality)",
    "vae": "variational autoencoder: encoder + generator, reconstruction + KL",
    "vaegan": "VAE-GAN (Larsen et al. 2016): VAE + discriminator, feature-space reconstruction",
}


def preset_config(name: str) -> ImageConfig:
    return from_preset(ImageConfig, PRESETS, name, "image")


def config_from_dict(values: dict) -> ImageConfig:
    return from_saved(ImageConfig, values, "image")
