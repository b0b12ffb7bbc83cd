"""The image track's one configuration object and its named presets."""

from __future__ import annotations

from dataclasses import dataclass

from electra.config import check, from_preset, from_saved
from electra.core.schedules import LR_DECAYS
from electra.core.tensorboard import LOG_TO
from electra.core.trainer import NONFINITE_POLICIES, PRECISIONS
from electra.image.augment import POLICIES, parse_policy
from electra.image.conditional import CONDITIONINGS
from electra.image.data import DATASETS
from electra.image.models import ARCHITECTURES
from electra.image.objectives import OBJECTIVES, REDUCTIONS

SCHEDULES = ("alternating", "phased", "every-step")
DEFAULT_PRESET = "dcgan"


@dataclass(frozen=True)
class ImageConfig:
    """Every key of an image run.  The bare defaults are the textbook DCGAN (pytorch/examples); the named presets
    below start from them, and ``DEFAULT_PRESET`` is what ``electra image train`` trains."""

    preset: str = "custom"
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
    objective: str = "gan"               # gan | cgan (class-conditional) | vae | vaegan
    conditioning: str = "projection"     # cgan's discriminator: projection (Miyato & Koyama) | acgan (a classifier head)
    class_weight: float = 1.0            # acgan: weight of the classification cross-entropy in L_D and L_G
    class_fakes: bool = False            # acgan: D also classifies fakes (the paper's L_C; lets G and D collude)
    num_classes: int = 10                # cgan, ssgan: classes of the data (set from a folder data set's sub-folders)
    labels: int = 100                    # ssgan: labelled images (a seeded class-balanced draw), the rest unlabelled
    unlabelled_weight: float = 1.0       # ssgan: weight of the real/fake term; 0: D learns from the labelled alone
    class_balance: float = 0.0           # ssgan: weight of KL(mean class probabilities of an unlabelled batch ‖
                                         # uniform) in L_D (CatGAN's marginal entropy; 0: the paper's loss)
    g_noise: str = "gaussian"            # ssgan: gaussian | uniform (G sees Φ(z), uniform on [0, 1], as the paper's)
    g_bn_scale: bool = True              # ssgan: G's batch norm has a trained scale (False: a shift only, the paper's)
    g_init: str = "torch"                # ssgan: torch | paper (Glorot-uniform layers, a sigmoid output whose
                                         # weight-norm scale starts at 1: the paper's generator at step 0)
    g_fresh_batch: bool = False          # ssgan: the G step draws new fakes and matches the features of a second
                                         # unlabelled batch (the paper's); False reuses the D step's fakes and batch
    loss_reduction: str = "mean"         # mean: losses comparable across batch sizes; sum: Σ exactly as written
    real_label: float = 1.0              # < 1: one-sided label smoothing of D's real target
    augment: str = "none"                # gan, cgan: DiffAugment of all D judges (ssgan: of the labelled images)
    vae_beta: float = 1.0                # weight of the KL (prior) term
    binarize: bool = False               # vae: train on 0/1 pixels drawn afresh each step (grey level = P(1)); eval
                                         # then reports the importance-sampled test NLL comparable with the literature
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
    lr_g_scale: float = 1.0              # without lr_g: the generator's lr as a multiple of lr (so --lr moves both)
    lr_d: float | None = None            # overrides lr for the discriminator
    lr_decay: str = "none"               # none | linear | cosine: anneal over the run (steps or --minutes budget)
    lr_final: float = 0.0                # the decayed lr at the end, as a fraction of the peak
    lr_decay_start: float = 0.0          # the share of the run at the peak lr before the decay begins
    beta1: float = 0.5
    beta2: float = 0.999
    adam_eps: float = 1e-8               # Adam's ε, added to √v: larger damps the steps of parameters whose gradients
                                         # are tiny (ssgan: the paper's Adam, ε 1e-8 inside the root ≈ 1e-4 outside)
    batch_size: int = 64
    ema: float = 0.0                     # decay of an exponential moving average of G's weights used for sampling
    d_ema: float = 0.0                   # ssgan: decay of a moving average of D's weights: the recogniser that test
                                         # error, classify and the demo use (the paper's Polyak average: 0.9999)
    channels_last: bool = True           # NHWC activations: ~10% faster oneDNN convolutions on CPU, same maths
    grad_accum: int = 1                  # micro-batches per step: global batch = batch_size × grad_accum × ranks
    precision: str = "fp32"              # fp32 | bf16 | fp16 (autocast; fp16 with a GradScaler, GPU only)
    compile: bool = False                # torch.compile the networks (measured slower on this 2-core CPU)
    on_nonfinite: str = "stop"           # a NaN/inf loss or gradient: stop (naming the step) | skip that update
    threads: int = 0                     # compute threads; 0: the cores free to this process (OMP_NUM_THREADS wins)
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
    log_to: str = "jsonl"                # jsonl | tensorboard (metrics.jsonl always; tensorboard adds event files)
    grid_size: int = 64                  # fixed-noise samples drawn into each epoch's grid

    def group_lr(self, group: str) -> float:
        """The peak lr of an optimizer group: the discriminator's ``lr_d`` or ``lr``; the generator's (and encoder's)
        ``lr_g`` or ``lr × lr_g_scale``."""
        if group == "discriminator":
            return self.lr_d or self.lr
        return self.lr_g or self.lr * self.lr_g_scale

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
            (self.lr > 0 and self.lr_g_scale > 0 and all(x is None or x > 0 for x in (self.lr_g, self.lr_d)),
             "learning rates (and lr_g_scale) must be positive"),
            (self.lr_decay in LR_DECAYS, f"lr_decay must be one of {', '.join(LR_DECAYS)}"),
            (0 <= self.lr_final <= 1, "lr_final must lie in [0, 1]"),
            (0 <= self.lr_decay_start < 1, "lr_decay_start must lie in [0, 1)"),
            (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "beta1 and beta2 must lie in [0, 1)"),
            (self.adam_eps > 0, "adam_eps must be positive"),
            (0 <= self.ema < 1 and 0 <= self.d_ema < 1, "ema and d_ema must lie in [0, 1)"),
            (self.d_ema == 0 or self.objective == "ssgan", "d_ema is an option of objective ssgan"),
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
            (not (self.schedule == "phased" and self.objective not in ("gan", "cgan")),
             "the phased schedule is for objectives gan and cgan"),
            (self.grad_accum >= 1, "grad_accum must be at least 1"),
            (self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}"),
            (self.on_nonfinite in NONFINITE_POLICIES, f"on_nonfinite must be one of {', '.join(NONFINITE_POLICIES)}"),
            (self.threads >= 0, "threads must be 0 (the free cores) or more"),
            (self.log_to in LOG_TO, f"log_to must be one of {', '.join(LOG_TO)}"),
            (all(p in POLICIES for p in parse_policy(self.augment)),
             f"augment must be none or a comma-separated list of {', '.join(POLICIES)}"),
            (not parse_policy(self.augment) or self.objective in ("gan", "cgan", "ssgan"),
             "augment is an option of objectives gan, cgan and ssgan"),
            (self.objective != "cgan" or self.model == "dcgan", "objective cgan needs model dcgan"),
            ((self.objective == "ssgan") == (self.model == "ssgan-mlp"), "objective ssgan goes with model ssgan-mlp"),
            (self.conditioning in CONDITIONINGS, f"conditioning must be one of {', '.join(CONDITIONINGS)}"),
            (self.class_weight >= 0, "class_weight must be 0 or more"),
            (not self.class_fakes or self.conditioning == "acgan", "class_fakes is an option of conditioning acgan"),
            (self.unlabelled_weight >= 0, "unlabelled_weight must be 0 or more"),
            (self.class_balance >= 0, "class_balance must be 0 or more"),
            (self.class_balance == 0 or self.objective == "ssgan", "class_balance is an option of objective ssgan"),
            (self.g_noise in ("gaussian", "uniform"), "g_noise must be gaussian or uniform"),
            (self.g_init in ("torch", "paper"), "g_init must be torch or paper"),
            (self.objective == "ssgan" or (self.g_noise == "gaussian" and self.g_bn_scale and not self.g_fresh_batch
                                           and self.g_init == "torch"),
             "g_noise, g_bn_scale, g_init and g_fresh_batch are options of objective ssgan"),
            (not self.binarize or self.objective == "vae", "binarize is an option of objective vae"),
            (self.labels >= 1, "labels must be at least 1"),
            (self.num_classes >= 2, "num_classes must be at least 2"),
        ]
        check(checks)


PRESETS: dict[str, dict] = {
    # The founding description as written: MLP generator/discriminator, the Σ −log D losses, Adam 1e-4
    # (Keras defaults β = 0.9/0.999), 50 steps training both then 50 steps with D frozen.
    "seed": dict(model="seed-mlp", objective="gan", schedule="phased", lr=1e-4, beta1=0.9, batch_size=128,
                 epochs=30),
    # The best-quality GAN per CPU-minute (docs/results.md measures it): DCGAN-28 at width 32 with Adam β1 0.5 at
    # lr 2e-3 (10× Radford et al.'s), a minibatch-std channel and two 3×3 layers at 7×7 in D (each feature then sees
    # the whole digit), samples from an EMA of G with batch-norm statistics of its own, D's real target 0.9
    # (one-sided label smoothing: lower FID on every seed, on the embedded digits and at 10 minutes on MNIST), and
    # G's lr 3× D's (the short default run is limited by how far G gets; the EMA smooths its larger steps).
    "dcgan": dict(model="dcgan", width=32, minibatch_std=True, d_extra_convs=2, ema=0.999, objective="gan",
                  schedule="alternating", lr=2e-3, lr_g_scale=3.0, beta1=0.5, batch_size=64, epochs=25,
                  real_label=0.9),
    # The dcgan preset told the class (choose the digit): one-hot class in G's input, a projection discriminator;
    # D's real target stays 1, as its measurements were made.
    "cdcgan": dict(model="dcgan", width=32, minibatch_std=True, d_extra_convs=2, ema=0.999, objective="cgan",
                   schedule="alternating", lr=2e-3, beta1=0.5, batch_size=64, epochs=25),
    # Salimans et al. 2016's semi-supervised GAN as in openai/improved-gan's MNIST run: K-class ReLU MLP
    # discriminator with weight norm (initialised from data) and Gaussian noise, feature-matching generator,
    # Adam 3e-3 β1 0.5 with ε 1e-4 (the paper's 1e-8 sits under the square root, ≈ 1e-4 outside it; at 30 epochs
    # the test error is the same with torch's 1e-8, see docs/results.md), the lr at its peak for two thirds of the
    # run, then linear to 0 (the paper's schedule: 300 epochs, the decay over the last 100; with the shifts below,
    # decayed over epochs 150-225 each of three label draws ends level with or under its constant-lr error at 150),
    # batch 100, 100 labels; digits recognised by a moving average of D's weights (rate 1e-4); G's initial weights
    # and sigmoid output as the paper's (g_init=paper: a lower test error at 30 epochs on each of three label draws
    # than torch's initial weights and tanh; docs/results.md).  Not the paper's: the labelled digits shifted by up
    # to ±3 pixels at every step (augment=translation: with 100 labels a lower three-draw mean test error at every
    # length compared, 10 to 90 epochs, and lower with 20 and 1,000 labels at 30; docs/results.md "Shifted labelled
    # digits"; augment=none is the paper's recipe).
    "ssgan": dict(model="ssgan-mlp", objective="ssgan", schedule="alternating", lr=3e-3, beta1=0.5,
                  adam_eps=1e-4, batch_size=100, labels=100, epochs=300, log_every=50, d_ema=0.9999,
                  g_init="paper", augment="translation", lr_decay="linear", lr_decay_start=2 / 3),
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
    "cdcgan": "the dcgan preset conditioned on the class: sample a chosen digit (--digit), projection D",
    "ssgan": "semi-supervised GAN (Salimans et al. 2016): a digit classifier from --labels N labelled images",
    "vae": "variational autoencoder: encoder + generator, reconstruction + KL",
    "vaegan": "VAE-GAN (Larsen et al. 2016): VAE + discriminator, feature-space reconstruction",
}


def preset_config(name: str) -> ImageConfig:
    return from_preset(ImageConfig, PRESETS, name, "image")


def config_from_dict(values: dict) -> ImageConfig:
    return from_saved(ImageConfig, values, "image")
