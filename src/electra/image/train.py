"""``train_image``: build models, objective, schedule and data from an ImageConfig and run the core loop."""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from electra.config import apply_overrides, fresh_output_dir, save_config
from electra.core import checkpoint as ckpt
from electra.core import distributed
from electra.core.metrics import plot_curves, read_metrics
from electra.core.schedules import Alternating, EveryStep, Phased, lr_decay
from electra.core.trainer import Hooks, Trainer
from electra.errors import UserError
from electra.image.config import ImageConfig, config_from_dict
from electra.image.data import EpochBatches, ImageSet, load_dataset, to_uint8
from electra.image.ema import ema_decay, refresh_batch_norm, update_average
from electra.image.models import build_models
from electra.image.objectives import GANObjective, Noise, VAEGANObjective, VAEObjective
from electra.image.pictures import save_grid

# Keys a resumed run may change: how long it runs and how often it reports, nothing that changes the maths.
RESUMABLE_KEYS = {"epochs", "steps", "minutes", "log_every", "checkpoint_every"}
CURVE_KEYS = ["L_G", "L_D", "L_ELECTRA", "reconstruction", "KL"]


@dataclass
class ImageSystem:
    """Everything a run needs besides the data: modules (with an EMA generator when enabled) and the objective."""

    config: ImageConfig
    modules: dict[str, torch.nn.Module]
    objective: object
    noise: Noise

    @property
    def sampler(self) -> torch.nn.Module:
        return self.modules.get("generator_ema", self.modules["generator"])


def build_system(cfg: ImageConfig, device: torch.device | str = "cpu") -> ImageSystem:
    torch.manual_seed(cfg.seed)
    modules = build_models(cfg.model, cfg.objective, cfg.width, cfg.spectral_norm, cfg.noise_dim,
                           cfg.minibatch_std, cfg.minibatch_group, cfg.d_width, cfg.d_extra_convs)
    for module in modules.values():
        module.to(device)
    noise = Noise(cfg.noise_dim, cfg.seed + 1, device)
    if cfg.objective == "gan":
        objective = GANObjective(modules["generator"], modules["discriminator"], noise, cfg.loss_reduction,
                                 cfg.real_label)
    elif cfg.objective == "vae":
        objective = VAEObjective(modules["encoder"], modules["generator"], noise, cfg.vae_beta)
    else:
        objective = VAEGANObjective(modules["encoder"], modules["generator"], modules["discriminator"], noise,
                                    cfg.vaegan_gamma, cfg.vae_beta, cfg.recon_space, cfg.loss_reduction,
                                    cfg.real_label)
    if cfg.channels_last:
        for module in modules.values():
            module.to(memory_format=torch.channels_last)
    if cfg.ema > 0:
        ema = copy.deepcopy(modules["generator"])
        ema.requires_grad_(False)
        modules["generator_ema"] = ema
    if cfg.compile:
        for name in ("generator", "discriminator", "encoder"):
            if name in modules:
                modules[name].compile()  # in place: state-dict keys, and so checkpoints, stay the same
    return ImageSystem(cfg, modules, objective, noise)


def build_optimizers(cfg: ImageConfig, system: ImageSystem) -> dict[str, torch.optim.Optimizer]:
    opts = {}
    for group, module_names in system.objective.groups.items():
        lr = cfg.lr_d if group == "discriminator" and cfg.lr_d else cfg.lr_g if group != "discriminator" and cfg.lr_g else cfg.lr
        params = [p for m in module_names for p in system.modules[m].parameters()]
        # fused: one pass over all parameters per step (4x faster than the default per-tensor loop on CPU).
        opts[group] = torch.optim.Adam(params, lr=lr, betas=(cfg.beta1, cfg.beta2), fused=True)
    return opts


def build_schedule(cfg: ImageConfig, system: ImageSystem):
    if cfg.schedule == "phased":
        return Phased(cfg.phase_both, cfg.phase_generator)
    if cfg.schedule == "alternating" and cfg.objective == "gan":
        return Alternating(cfg.d_steps)
    return EveryStep(tuple(system.objective.updates))


class ImageHooks(Hooks):
    """EMA of generator weights (with its own batch-norm statistics), the fixed-noise grid every epoch, the final
    grid and loss curve."""

    # The refresh noise has its own seed, apart from the training stream and the grids' fixed noise.
    STANDING_SEED_OFFSET = 104729

    def __init__(self, system: ImageSystem, run_dir: Path, fixed_noise: torch.Tensor) -> None:
        self.system, self.run_dir, self.fixed_noise = system, run_dir, fixed_noise
        self._standing_at: int | None = None

    def after_step(self, trainer, step: int) -> None:
        average = self.system.modules.get("generator_ema")
        if average is not None:
            update_average(average, self.system.modules["generator"], ema_decay(self.system.config.ema, step))

    def _ready_sampler(self, trainer) -> None:
        """Give the weight average batch-norm statistics of its own before anyone samples or saves it."""
        average = self.system.modules.get("generator_ema")
        if average is None or self._standing_at == trainer.step:
            return
        cfg = self.system.config
        refresh_batch_norm(average, cfg.noise_dim, cfg.batch_size, cfg.seed + self.STANDING_SEED_OFFSET)
        self._standing_at = trainer.step

    def grid(self, trainer, name: str) -> Path:
        self._ready_sampler(trainer)
        return save_grid(sample_images(self.system.sampler, self.fixed_noise), self.run_dir / "samples" / name)

    def before_checkpoint(self, trainer) -> None:
        self._ready_sampler(trainer)

    def on_epoch_end(self, trainer, epoch: int) -> None:
        self.grid(trainer, f"epoch-{epoch:03d}.png")

    def on_finish(self, trainer) -> None:
        self.grid(trainer, "final.png")
        plot_curves(read_metrics(self.run_dir / "metrics.jsonl"), CURVE_KEYS, self.run_dir / "loss_curve.png",
                    f"{self.system.config.preset}: {self.system.config.objective} losses")


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
    # Its own seed: the progress grids show the same z every epoch and do not disturb the training noise stream.
    return torch.randn(cfg.grid_size, cfg.noise_dim, generator=torch.Generator().manual_seed(cfg.seed + 7919))


def total_steps(cfg: ImageConfig, steps_per_epoch: int) -> int:
    if cfg.steps is not None:
        return cfg.steps
    if cfg.epochs is not None:
        return cfg.epochs * steps_per_epoch
    return 10**9  # only a time budget was given


def _new_run_dir(out: str | None, cfg: ImageConfig) -> Path:
    return fresh_output_dir(out or Path("runs") / f"image-{cfg.preset}-{time.strftime('%Y%m%d-%H%M%S')}")


def read_run_config(run_dir: Path) -> ImageConfig:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run folder {run_dir} does not exist")
    path = run_dir / "config.json"
    if not path.is_file():
        raise UserError(f"{run_dir} is not a run folder (no config.json)")
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise UserError(f"{path} is not valid JSON ({exc})") from None
    if values.get("track") not in (None, "image"):
        raise UserError(f"{run_dir} is a {values.get('track')} run, not an image run")
    values.pop("track", None)
    return config_from_dict(values)


def load_run(run_dir: Path) -> ImageSystem:
    """Rebuild a run's models from its config and load its last checkpoint's weights (for sampling, eval)."""
    cfg = dataclasses.replace(read_run_config(run_dir), compile=False)
    system = build_system(cfg)
    ckpt.load_weights(ckpt.find_checkpoint(Path(run_dir)), system.modules)
    return system


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def train_image(cfg: ImageConfig | None = None, out: str | None = None, resume: str | None = None,
                overrides: dict | None = None, data: ImageSet | None = None, progress: bool = True) -> Path:
    """Train an image model; return the run folder.

    ``cfg``: a config (default: the dcgan preset); ``overrides``: keys applied on top (on resume, only
    epochs/steps/minutes/log_every/checkpoint_every); ``data``: an ImageSet to use instead of ``cfg.dataset``.
    """
    overrides = dict(overrides or {})
    start_step, state = 0, None
    if resume:
        run_dir = Path(resume)
        cfg = read_run_config(run_dir)
        frozen = sorted(set(overrides) - RESUMABLE_KEYS)
        if frozen:
            raise UserError(f"cannot change {', '.join(frozen)} when resuming; only {', '.join(sorted(RESUMABLE_KEYS))}")
        cfg = apply_overrides(cfg, overrides)
        checkpoint_dir = ckpt.find_checkpoint(run_dir)
    else:
        cfg = apply_overrides(cfg or ImageConfig(), overrides)
        run_dir = Path(distributed.broadcast_object(str(_new_run_dir(out, cfg))))
    rank = distributed.current()
    if cfg.precision == "fp16" and rank.device.type != "cuda":
        raise UserError("precision fp16 needs a GPU (its GradScaler); use bf16 or fp32 on the CPU")
    data = data or load_dataset(cfg.dataset, "train", cfg.data_dir, cfg.download)
    if rank.is_main:
        log(f"data: {data.description}")
    batches = EpochBatches(data.images, cfg.batch_size, cfg.seed, cfg.channels_last, cfg.grad_accum, rank.rank,
                           rank.world, rank.device)
    system = build_system(cfg, rank.device)
    optimizers = build_optimizers(cfg, system)
    generators: dict[str, torch.Generator] = {}
    if resume:
        state = ckpt.load_checkpoint(checkpoint_dir, system.modules, optimizers, generators)
        start_step = int(state["step"])
        if state.get("data_size") not in (None, len(data)):
            raise UserError(f"{run_dir} was trained on {state['data_size']} images but this data has {len(data)}; "
                            f"resume with the same --dataset/--data-dir")
    steps = total_steps(cfg, batches.steps_per_epoch)
    if resume and start_step >= steps:
        raise UserError(f"{run_dir} already reached step {start_step} of {steps}; raise --steps/--epochs to go on")
    # Everything that could fail on bad input has been checked: only now is the run folder written (by rank 0).
    created = not run_dir.exists()
    if rank.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.json", track="image")
        (run_dir / "data.txt").write_text(data.description + "\n", encoding="utf-8")
        log(f"run folder: {run_dir}  ({'resuming at step ' + str(start_step) if resume else 'new run'}, "
            f"{steps if steps < 10**9 else '∞'} steps, {batches.steps_per_epoch} per epoch; global batch "
            f"{batches.global_batch} = {cfg.batch_size} × {cfg.grad_accum} accumulation × {rank.world} ranks, "
            f"lr {cfg.lr:g}{'' if cfg.lr_decay == 'none' else f' → {cfg.lr * cfg.lr_final:g} ({cfg.lr_decay})'})")
    hooks = ImageHooks(system, run_dir, fixed_noise(cfg).to(rank.device))
    trainer = Trainer(
        modules=system.modules, optimizers=optimizers, objective=system.objective,
        schedule=build_schedule(cfg, system), batches=batches, run_dir=run_dir, total_steps=steps,
        steps_per_epoch=batches.steps_per_epoch, items_per_step=batches.global_batch, item_name="images",
        log_every=cfg.log_every, checkpoint_every=cfg.checkpoint_every,
        max_seconds=cfg.minutes * 60 if cfg.minutes else None, generators=generators, hooks=hooks,
        extra_state=lambda: {"data_size": len(data), "track": "image"}, progress=progress,
        grad_accum=cfg.grad_accum, micro_batch=cfg.batch_size, precision=cfg.precision,
        lr_by_fraction=None if cfg.lr_decay == "none" else lambda f: lr_decay(f, cfg.lr_decay, cfg.lr_final),
    )
    try:
        trainer.run(start_step)
    except BaseException:
        if rank.is_main and created and not (run_dir / "checkpoints").exists():
            shutil.rmtree(run_dir, ignore_errors=True)   # nothing worth keeping: don't leave a half-written run
        raise
    if rank.is_main:
        log(f"done at step {trainer.step}{' (time budget reached)' if trainer.stopped_early else ''}: "
            f"samples in {run_dir / 'samples'}, curves in {run_dir / 'loss_curve.png'}")
    return run_dir

