"""The image recipe: models, objective, schedule, batches and hooks from an ImageConfig, and ``train_image``,
which runs it through the core lifecycle.  The GAN step itself is ``GANObjective`` in ``objectives.py``."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from electra.core import checkpoint as ckpt
from electra.core import distributed
from electra.core.memory import require_fits
from electra.core.log import log
from electra.core.metrics import plot_curves, read_metrics
from electra.core.recipe import global_batch_text, run_recipe
from electra.core.run import RunFolder
from electra.core.schedules import Alternating, EveryStep, Phased, lr_decay
from electra.core.trainer import CheckpointPolicy, Hooks, Plan
from electra.errors import UserError
from electra.image.augment import parse_policy
from electra.image.conditional import ACGANObjective, CGANObjective, ClassNoise, generator_inputs, grid_labels
from electra.image.config import DEFAULT_PRESET, ImageConfig, config_from_dict, preset_config
from electra.image.data import ImageSet, image_batches, load_dataset, to_uint8
from electra.image.ema import ema_decay, refresh_batch_norm, update_average
from electra.image.models import build_models
from electra.image.objectives import GANObjective, Noise, VAEGANObjective, VAEObjective
from electra.image.pictures import make_grid, save_png
from electra.image.semi_supervised import (SSGANObjective, SemiSupervisedBatches, classify, initialise_discriminator,
                                           labelled_indices)

# Keys a resumed run may change: how long it runs and how often it reports, nothing that changes the maths.
RESUMABLE_KEYS = {"epochs", "steps", "minutes", "log_every", "checkpoint_every", "on_nonfinite", "threads",
                  "log_to"}
CURVE_KEYS = ["L_G", "L_D", "L_ELECTRA", "reconstruction", "KL"]


FUSED_ADAM_DEVICES = ("cpu", "cuda")


@dataclass
class ImageSystem:
    """Everything a run needs besides the data: modules (with an EMA generator when enabled) and the objective."""

    config: ImageConfig
    modules: dict[str, torch.nn.Module]
    objective: object
    noise: Noise
    requested: torch.Tensor | None = None   # the classes a conditional run's evaluation samples were drawn for

    @property
    def sampler(self) -> torch.nn.Module:
        return self.modules.get("generator_ema", self.modules["generator"])

    @property
    def recogniser(self) -> torch.nn.Module:
        """The discriminator that classifies digits (ssgan): its weight average when the run keeps one."""
        return self.modules.get("discriminator_ema", self.modules["discriminator"])


def classes(cfg: ImageConfig) -> int:
    """How many classes the generator is told about: 0 unless the run is conditional."""
    return cfg.num_classes if cfg.objective == "cgan" else 0


def input_sampler(cfg: ImageConfig):
    """``(n, rng, labels=None) -> generator inputs``: noise, with a one-hot class for a conditional run."""
    return lambda n, rng, labels=None: generator_inputs(n, cfg.noise_dim, classes(cfg), rng, labels)


def _models(cfg: ImageConfig) -> dict[str, torch.nn.Module]:
    labelled = cfg.objective in ("cgan", "ssgan")
    return build_models(cfg.model, cfg.objective, cfg.width, cfg.spectral_norm, cfg.noise_dim, cfg.minibatch_std,
                        cfg.minibatch_group, cfg.d_width, cfg.d_extra_convs, cfg.num_classes if labelled else 0,
                        cfg.conditioning, cfg.g_noise, cfg.g_bn_scale, cfg.g_init)


def _one_batch(models: dict[str, torch.nn.Module], cfg: ImageConfig) -> None:
    """One training batch through every model (for the memory check, on meta tensors)."""
    images = torch.zeros(cfg.batch_size, 1, 28, 28, device="meta")
    labels = (torch.zeros(cfg.batch_size, dtype=torch.long, device="meta"),) if classes(cfg) else ()
    for name, model in models.items():
        if name == "generator":
            model(torch.zeros(cfg.batch_size, cfg.noise_dim + classes(cfg), device="meta"))
        elif name == "discriminator":
            model(images, *labels)
        else:
            model(images)


def averaged(cfg: ImageConfig) -> tuple[tuple[str, float], ...]:
    """(module, decay) of the weight averages a run may keep: G's for sampling, D's for recognising (ssgan)."""
    return ("generator", cfg.ema), ("discriminator", cfg.d_ema)


def build_system(cfg: ImageConfig, device: torch.device | str = "cpu") -> ImageSystem:
    require_fits(lambda: _models(cfg), torch.device(device), f"the {cfg.model} model (width {cfg.width})",
                 forward=lambda models: _one_batch(models, cfg))
    torch.manual_seed(cfg.seed)
    modules = _models(cfg)
    for module in modules.values():
        module.to(device)
    noise = ClassNoise(cfg.noise_dim, cfg.num_classes, cfg.seed + 1, device) if classes(cfg) else \
        Noise(cfg.noise_dim, cfg.seed + 1, device)
    if cfg.objective == "cgan" and cfg.conditioning == "acgan":
        objective = ACGANObjective(modules["generator"], modules["discriminator"], noise, cfg.loss_reduction,
                                   cfg.real_label, parse_policy(cfg.augment), cfg.class_weight,
                                   cfg.class_fakes)
    elif cfg.objective in ("gan", "cgan"):
        game = CGANObjective if cfg.objective == "cgan" else GANObjective
        objective = game(modules["generator"], modules["discriminator"], noise, cfg.loss_reduction, cfg.real_label,
                         parse_policy(cfg.augment))
    elif cfg.objective == "ssgan":
        objective = SSGANObjective(modules["generator"], modules["discriminator"], noise, cfg.unlabelled_weight,
                                   cfg.g_fresh_batch, cfg.class_balance, parse_policy(cfg.augment))
    elif cfg.objective == "vae":
        objective = VAEObjective(modules["encoder"], modules["generator"], noise, cfg.vae_beta, cfg.binarize)
    else:
        objective = VAEGANObjective(modules["encoder"], modules["generator"], modules["discriminator"], noise,
                                    cfg.vaegan_gamma, cfg.vae_beta, cfg.recon_space, cfg.loss_reduction,
                                    cfg.real_label)
    if cfg.channels_last:
        for module in modules.values():
            module.to(memory_format=torch.channels_last)
    for live, decay in averaged(cfg):
        if decay > 0:
            modules[f"{live}_ema"] = copy.deepcopy(modules[live]).requires_grad_(False)
    if cfg.compile:
        for name in ("generator", "discriminator", "encoder"):
            if name in modules:
                modules[name].compile()  # in place: state-dict keys, and so checkpoints, stay the same
    return ImageSystem(cfg, modules, objective, noise)


def build_optimizers(cfg: ImageConfig, system: ImageSystem) -> dict[str, torch.optim.Optimizer]:
    opts = {}
    for group, module_names in system.objective.groups.items():
        lr = cfg.group_lr(group)
        params = [p for m in module_names for p in system.modules[m].parameters()]
        # fused: one pass over all parameters per step (4x faster than the default per-tensor loop on CPU);
        # devices without the fused kernel take the multi-tensor one.
        fused = params[0].device.type in FUSED_ADAM_DEVICES
        opts[group] = torch.optim.Adam(params, lr=lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.adam_eps,
                                       fused=fused, foreach=not fused)
    return opts


def build_schedule(cfg: ImageConfig, system: ImageSystem):
    if cfg.schedule == "phased":
        return Phased(cfg.phase_both, cfg.phase_generator)
    if cfg.schedule == "alternating" and cfg.objective in ("gan", "cgan", "ssgan"):
        return Alternating(cfg.d_steps)
    return EveryStep(tuple(system.objective.updates))


class ImageHooks(Hooks):
    """EMA of generator weights (with its own batch-norm statistics), the fixed-noise grid every epoch, the final
    grid and loss curve."""

    # The refresh noise has its own seed, apart from the training stream and the grids' fixed noise.
    STANDING_SEED_OFFSET = 104729

    def __init__(self, system: ImageSystem, fixed_noise: torch.Tensor, test: ImageSet | None = None) -> None:
        self.system, self.fixed_noise, self.test = system, fixed_noise, test
        self._standing_at: int | None = None

    def after_step(self, trainer, step: int) -> None:
        for live, target in averaged(self.system.config):
            average = self.system.modules.get(f"{live}_ema")
            if average is not None:
                update_average(average, self.system.modules[live], ema_decay(target, step))

    def _ready_sampler(self, trainer) -> None:
        """Give the weight average batch-norm statistics of its own before anyone samples or saves it."""
        average = self.system.modules.get("generator_ema")
        if average is None or self._standing_at == trainer.step:
            return
        cfg = self.system.config
        refresh_batch_norm(average, input_sampler(cfg), cfg.batch_size, cfg.seed + self.STANDING_SEED_OFFSET)
        self._standing_at = trainer.step

    def grid(self, trainer, name: str) -> Path:
        self._ready_sampler(trainer)
        cfg = self.system.config
        ncol = max(1, cfg.grid_size // cfg.num_classes) if classes(cfg) else None   # one row per class
        picture = make_grid(sample_images(self.system.sampler, self.fixed_noise).numpy(), ncol=ncol, scale=2)
        if trainer.tensorboard is not None:
            trainer.tensorboard.image("samples", picture, trainer.step)
        return save_png(picture, trainer.run_dir / "samples" / name)

    def before_checkpoint(self, trainer) -> None:
        self._ready_sampler(trainer)

    def on_epoch_end(self, trainer, epoch: int) -> None:
        self.grid(trainer, f"epoch-{epoch:03d}.png")
        if self.test is not None:   # ssgan: the discriminator as a classifier, on the test split
            row = {"step": trainer.step, "test_error": test_error(self.system.recogniser, self.test)}
            if "discriminator_ema" in self.system.modules:   # the live weights' error too, to see what averaging buys
                row["test_error_live"] = test_error(self.system.modules["discriminator"], self.test)
            trainer.write_metrics(row)
            log(f"epoch {epoch}: test error {100 * row['test_error']:.2f}% ({len(self.test)} test images)"
                + (f"; live weights {100 * row['test_error_live']:.2f}%" if "test_error_live" in row else ""))

    def on_finish(self, trainer) -> None:
        self.grid(trainer, "final.png")
        rows = read_metrics(trainer.run_dir / "metrics.jsonl")
        plot_curves(rows, CURVE_KEYS, trainer.run_dir / "loss_curve.png",
                    f"{self.system.config.preset}: {self.system.config.objective} losses")
        # D's mean output on real and generated images: a discriminator taking over shows (D(x) → 1, D(G(z)) → 0)
        plot_curves(rows, ["D(x)", "D(G(z))"], trainer.run_dir / "discriminator_curve.png",
                    f"{self.system.config.preset}: discriminator outputs")


@torch.no_grad()
def sample_images(generator: torch.nn.Module, z: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """uint8 N×28×28 images for noise ``z``, generated in eval mode (batch-norm running statistics)."""
    was_training = generator.training
    generator.eval()
    device = next(generator.parameters()).device
    try:
        return torch.cat([to_uint8(generator(chunk.to(device))).cpu() for chunk in z.split(batch)])
    finally:
        generator.train(was_training)


def fixed_noise(cfg: ImageConfig) -> torch.Tensor:
    """The progress grids' inputs (a conditional run: one row per class).  Its own seed: the grids show the same z
    every epoch and do not disturb the training noise stream."""
    rng = torch.Generator().manual_seed(cfg.seed + 7919)
    labels = grid_labels(cfg.grid_size, cfg.num_classes) if classes(cfg) else None
    return input_sampler(cfg)(cfg.grid_size if labels is None else len(labels), rng, labels)


def total_steps(cfg: ImageConfig, steps_per_epoch: int) -> int:
    if cfg.steps is not None:
        return cfg.steps
    if cfg.epochs is not None:
        return cfg.epochs * steps_per_epoch
    return 10**9  # only a time budget was given


def test_error(discriminator: torch.nn.Module, test: ImageSet) -> float:
    return 1.0 - float((classify(discriminator, test.images).argmax(1) == test.labels).float().mean())


class ImageRecipe:
    """One image run's plan from its config, its data (and, for ssgan, a test split to report) and a device."""

    def __init__(self, data: ImageSet, test: ImageSet | None = None) -> None:
        self.data, self.test = data, test
        self.facts: dict = {}
        self.notes = {"data.txt": data.description}
        if data.classes:
            self.notes[CLASSES_NOTE] = "\n".join(data.classes)
        self.system: ImageSystem | None = None

    def build(self, cfg: ImageConfig, device: torch.device) -> Plan:
        rank = distributed.current()
        labels = check_labels(self.data, cfg.num_classes) if classes(cfg) else None
        batches = image_batches(self.data.images, cfg.batch_size, cfg.seed, cfg.channels_last, cfg.grad_accum,
                                rank.rank, rank.world, device, labels)
        if cfg.objective == "ssgan":
            batches = self._semi_supervised(cfg, batches, rank, device)
        self.system = system = build_system(cfg, device)
        if cfg.objective == "ssgan":   # a resumed run then loads its trained weights over this
            initialise_discriminator(system.modules["discriminator"], self.data.images, cfg.seed)
            if "discriminator_ema" in system.modules:   # the average starts from the initialised weights and scales
                system.modules["discriminator_ema"].load_state_dict(system.modules["discriminator"].state_dict())
        decay = None if cfg.lr_decay == "none" else \
            (lambda step, fraction: lr_decay(fraction, cfg.lr_decay, cfg.lr_final, cfg.lr_decay_start))
        return Plan(
            modules=system.modules, optimizers=build_optimizers(cfg, system), objective=system.objective,
            schedule=build_schedule(cfg, system), batches=batches, steps_per_epoch=batches.steps_per_epoch,
            total_steps=total_steps(cfg, batches.steps_per_epoch), items_per_step=batches.global_batch,
            item_name="images", lr_schedule=decay, hooks=ImageHooks(system, fixed_noise(cfg).to(device), self.test),
            log_every=cfg.log_every, checkpoints=CheckpointPolicy(every=cfg.checkpoint_every, each_epoch=True),
            max_seconds=cfg.minutes * 60 if cfg.minutes else None, grad_accum=cfg.grad_accum,
            micro_batch=cfg.batch_size, precision=cfg.precision, on_nonfinite=cfg.on_nonfinite,
            extra_state=lambda: {"data_size": len(self.data), "track": "image"},
        )

    def _semi_supervised(self, cfg: ImageConfig, everything, rank, device) -> SemiSupervisedBatches:
        """All images (labels unused) and the ``cfg.labels`` labelled ones, drawn class-balanced with the run's
        seed and recorded in ``labelled.json``."""
        import json

        labels = check_labels(self.data, cfg.num_classes)
        chosen = labelled_indices(labels, cfg.labels, cfg.seed)
        self.notes["labelled.json"] = json.dumps({"seed": cfg.seed, "count": len(chosen),
                                                  "indices": chosen.tolist(),
                                                  "labels": labels[chosen].tolist()})
        few = image_batches(self.data.images[chosen], min(cfg.batch_size, len(chosen)), cfg.seed + 1,
                            cfg.channels_last, 1, 0, 1, device)
        # the paper's G step compares its fakes with a second pass over the data in its own order
        second = image_batches(self.data.images, cfg.batch_size, cfg.seed + 2, cfg.channels_last, cfg.grad_accum,
                               rank.rank, rank.world, device) if cfg.g_fresh_batch else None
        return SemiSupervisedBatches(everything, few, labels[chosen], device, second)

    def describe(self, cfg: ImageConfig, plan: Plan) -> str:
        steps = plan.total_steps if plan.total_steps < 10**9 else "∞"
        held = f" from {cfg.lr_decay_start:.0%} of the run" if cfg.lr_decay_start else ""
        decay = "" if cfg.lr_decay == "none" else f" → {cfg.lr * cfg.lr_final:g} ({cfg.lr_decay}{held})"
        own = [f"{who} {cfg.group_lr(group):g}" for who, group in (("G", "generator"), ("D", "discriminator"))
               if cfg.group_lr(group) != cfg.lr]
        return (f"{steps} steps, {plan.steps_per_epoch} per epoch; {global_batch_text(plan, cfg.batch_size)}, "
                f"lr {cfg.lr:g}{' (' + ', '.join(own) + ')' if own else ''}{decay}")

    def check_restored(self, state: dict) -> None:
        if state.get("data_size") not in (None, len(self.data)):
            raise UserError(f"the run was trained on {state['data_size']} images but this data has "
                            f"{len(self.data)}; resume with the same --dataset/--data-dir")


def check_labels(data: ImageSet, num_classes: int) -> torch.Tensor:
    """The labels a conditional run trains with, or a clear error when the data has none that fit."""
    if data.labels is None:
        raise UserError(f"a conditional run needs labelled images, and {data.description} has none; for "
                        f"--dataset folder put each class's images in a sub-folder of its own")
    top = int(data.labels.max())
    if top >= num_classes or int(data.labels.min()) < 0:
        raise UserError(f"the data's labels run to {top}, beyond num_classes={num_classes}")
    return data.labels


CLASSES_NOTE = "classes.txt"   # a run's class names, one per line, in label order


def class_names(run_dir: str | Path, cfg: ImageConfig) -> list[str]:
    """The names ``--class`` accepts: a folder data set's sub-folder names, else the labels 0, 1, …"""
    path = Path(run_dir) / CLASSES_NOTE
    if path.is_file():
        return path.read_text(encoding="utf-8").splitlines()
    return [str(i) for i in range(cfg.num_classes)]


def read_run_config(run_dir: str | Path) -> ImageConfig:
    return RunFolder.open("image", run_dir).saved_config(config_from_dict)[0]


def load_run(run_dir: str | Path) -> ImageSystem:
    """Rebuild a run's models from its config and load its last checkpoint's weights (for sampling, eval)."""
    cfg = dataclasses.replace(read_run_config(run_dir), compile=False)
    system = build_system(cfg)
    ckpt.load_weights(ckpt.find_checkpoint(Path(run_dir)), system.modules)
    return system


def train_image(cfg: ImageConfig | None = None, out: str | None = None, resume: str | None = None,
                overrides: dict | None = None, data: ImageSet | None = None, progress: bool = True,
                stop_at: int | None = None, device: torch.device | str | None = None) -> Path:
    """Train an image model; return the run folder.

    ``cfg``: a config (default: the dcgan preset); ``overrides``: keys applied on top (on resume, only
    epochs/steps/minutes/log_every/checkpoint_every); ``data``: an ImageSet to use instead of ``cfg.dataset``;
    ``stop_at``: end at that step with a checkpoint (continue with ``resume``); ``device``: default the process's.
    """
    cfg = cfg or preset_config(DEFAULT_PRESET)
    run = RunFolder.start("image", out=out, resume=resume, name=f"image-{cfg.preset}")
    cfg, _ = run.resolve(cfg, overrides, RESUMABLE_KEYS, config_from_dict)
    data = data or load_dataset(cfg.dataset, "train", cfg.data_dir, cfg.download)
    if classes(cfg) and data.classes and not run.resuming:   # a folder data set: one class per sub-folder
        cfg = dataclasses.replace(cfg, num_classes=len(data.classes))
    run.log(f"data: {data.description}")
    test = None
    if cfg.objective == "ssgan" and cfg.dataset in ("mnist", "fashion-mnist"):
        try:   # its error rate is shown as training goes; without a test split the run trains all the same
            test = load_dataset(cfg.dataset, "test", cfg.data_dir, cfg.download)
        except UserError as exc:
            run.log(f"no test error during training: {exc}")
    finished = run_recipe(ImageRecipe(data, test), run, cfg, progress=progress, stop_at=stop_at, device=device)
    trainer = finished.trainer
    run.log(f"done at step {trainer.step}{' (stopped early)' if trainer.stopped_early else ''}: "
            f"samples in {run.path / 'samples'}, curves in {run.path / 'loss_curve.png'}")
    return run.path
