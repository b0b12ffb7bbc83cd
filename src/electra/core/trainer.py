"""The one training loop every job runs, and the ``Plan`` a recipe builds for it.

It knows nothing of images or text.  Each step it asks the schedule which updates run; for each update it asks the
objective for the losses (one loss per optimizer the update steps, as the objective's update table declares) on
each of this process's micro-batches, back-propagates each loss into its own optimizer's parameters only, averages
the gradients across ranks, clips, steps, and accumulates metrics on the device.  Logging, checkpoints and pictures
happen at intervals through hooks, on rank 0 only, so the hot loop has no host syncs.

Batches come from ``batches(step, micro)``: this rank's ``micro``-th slice of the step's global batch
(per-process batch × grad_accum × world size rows).  Objectives draw their noise through a ``StepRandom`` that the
loop points at the slice, so one process × 2B, two ranks × B and B × grad_accum 2 train identically.

The learning rate is a function of the step (and of the share of a wall-clock budget used, which checkpoints
record) times each group's lr as the optimizer was built: a resumed run continues on exactly the same curve.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

import torch
from tqdm import tqdm

from electra.core import distributed
from electra.core.checkpoint import NonFiniteError, load_checkpoint, save_checkpoint
from electra.core.metrics import MetricsLog, RunningMeans
from electra.core.randomness import StepRandom
from electra.core.schedules import LrSchedule
from electra.errors import UserError

PRECISIONS = ("fp32", "bf16", "fp16")
NONFINITE_POLICIES = ("stop", "skip")


class Objective(Protocol):
    # update name → the optimizers it steps, which are exactly the keys of the losses it returns
    updates: Mapping[str, tuple[str, ...]]
    # per-example noise the loop points at each micro-batch's rows of the global batch (None: draws nothing)
    random: StepRandom | None

    def losses(self, update: str, batch: Any, cache: dict) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Return ({optimizer name: loss}, {metric name: scalar tensor}) for one update on ``batch``.

        ``cache`` lives for one micro-batch of one step, so updates on the same batch can share work (e.g. one G(z)
        for the discriminator and the generator update)."""

    def summarize(self, means: dict[str, float]) -> dict[str, float]:
        """Add derived metrics (e.g. L_ELECTRA = L_G + L_D) to the interval means."""


class Schedule(Protocol):
    names: tuple[str, ...]   # every update the schedule can ask for

    def __call__(self, step: int) -> tuple[str, ...]: ...


class Hooks:
    """Track-specific callbacks; every method is optional.  ``after_step`` runs on every rank, the rest on rank 0."""

    def after_step(self, trainer: "Trainer", step: int) -> None: ...
    def on_epoch_end(self, trainer: "Trainer", epoch: int) -> None: ...
    def on_log(self, trainer: "Trainer", row: dict) -> None: ...
    def before_checkpoint(self, trainer: "Trainer") -> None: ...
    def on_checkpoint(self, trainer: "Trainer") -> None: ...
    def on_finish(self, trainer: "Trainer") -> None: ...


@dataclass(frozen=True)
class CheckpointPolicy:
    """When checkpoints are written: every ``every`` steps, at each epoch's end, and (``final``) when the run ends
    — at its last step, its time budget, its ``stop_at`` step or on Ctrl-C."""

    every: int | None = None
    each_epoch: bool = False
    final: bool = True

    def due(self, step: int, epoch_done: bool) -> bool:
        return bool(self.every and step % self.every == 0) or (self.each_epoch and epoch_done)


NO_CHECKPOINTS = CheckpointPolicy(final=False)


@dataclass
class Plan:
    """Everything one training run needs, built by a track's recipe from a config and a device."""

    modules: dict[str, torch.nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    objective: Objective
    schedule: Schedule
    batches: Callable[[int, int], Any]       # (step, micro) -> this rank's micro-batch; deterministic
    steps_per_epoch: int
    total_steps: int
    items_per_step: int                      # examples/tokens in one step's global batch
    item_name: str = "examples"
    lr_schedule: LrSchedule | None = None    # (step, fraction done) -> multiplier of each group's built lr
    hooks: Hooks = field(default_factory=Hooks)
    log_every: int = 50
    checkpoints: CheckpointPolicy = CheckpointPolicy(every=1000)
    max_seconds: float | None = None         # wall-clock budget of the whole run, resumes included
    grad_clip: float | None = None
    grad_accum: int = 1
    micro_batch: int = 0                     # rows per micro-batch (for the StepRandom slice); 0: unknown
    precision: str = "fp32"
    on_nonfinite: str = "stop"               # a NaN/inf loss or gradient: stop the run, or skip that update
    extra_state: Callable[[], dict] = dict   # track facts stored in checkpoints

    def check(self) -> None:
        """The string contract schedule → objective updates → optimizers, checked once, before any step."""
        table = self.objective.updates
        stepped = {name for names in table.values() for name in names}
        problems = []
        if set(self.schedule.names) - set(table):
            problems.append(f"the schedule asks for updates {sorted(set(self.schedule.names) - set(table))} that "
                            f"the objective does not have ({sorted(table)})")
        if stepped - set(self.optimizers):
            problems.append(f"the objective steps optimizers {sorted(stepped - set(self.optimizers))} that were "
                            f"not built ({sorted(self.optimizers)})")
        if set(self.optimizers) - stepped:
            problems.append(f"optimizers {sorted(set(self.optimizers) - stepped)} are never stepped")
        if self.precision not in PRECISIONS:
            problems.append(f"precision {self.precision!r} is not one of {PRECISIONS}")
        if self.on_nonfinite not in NONFINITE_POLICIES:
            problems.append(f"on_nonfinite {self.on_nonfinite!r} is not one of {NONFINITE_POLICIES}")
        if problems:
            raise ValueError("inconsistent training plan: " + "; ".join(problems))


def autocast(precision: str, device: torch.device):
    """bf16/fp16 autocast around the forward passes; fp32 runs as written."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


class Trainer:
    def __init__(self, plan: Plan, run_dir: Path, device: torch.device | None = None, progress: bool = True,
                 stop_at: int | None = None) -> None:
        plan.check()
        self.plan, self.run_dir, self.progress, self.stop_at = plan, Path(run_dir), progress, stop_at
        self.modules, self.optimizers, self.objective = plan.modules, plan.optimizers, plan.objective
        self.dist = distributed.current()
        self.device = torch.device(device) if device is not None else self.dist.device
        self.step = 0
        self.elapsed = 0.0            # training seconds of the whole run so far, resumes included
        self.stopped_early = False    # ended at the time budget or stop_at, before total_steps
        self.tensorboard = None       # a TensorBoardLog (log_to=tensorboard; the main rank only)
        self._metrics: MetricsLog | None = None
        self._params = {n: [p for g in o.param_groups for p in g["params"]] for n, o in self.optimizers.items()}
        # taken before any checkpoint is loaded: a checkpoint holds the lr scheduled at its step, not the base
        self._base_lrs = {n: [g["lr"] for g in o.param_groups] for n, o in self.optimizers.items()}
        self.scaler = torch.amp.GradScaler(self.device.type) if plan.precision == "fp16" else None
        # the first step whose losses or gradients were not finite, kept on the device (-1: none) and read at the
        # next log row or checkpoint, so the hot loop stays free of host syncs
        self._first_bad = torch.full((), -1, dtype=torch.long, device=self.device)
        self.checkpointed_step: int | None = None

    def restore(self, checkpoint: Path) -> dict:
        """Load a checkpoint into the modules and optimizers; the run continues from its step."""
        state = load_checkpoint(checkpoint, self.modules, self.optimizers)
        self.step, self.elapsed = int(state["step"]), float(state.get("elapsed", 0.0))
        self.checkpointed_step = self.step
        return state

    def fraction_done(self, step: int) -> float:
        """Steps done over total_steps, or the share of the time budget used, whichever is further."""
        by_steps = step / self.plan.total_steps
        by_time = self.elapsed / self.plan.max_seconds if self.plan.max_seconds else 0.0
        return min(1.0, max(by_steps, by_time))

    def _set_lr(self, step: int) -> None:
        if self.plan.lr_schedule is None:
            return
        scale = self.plan.lr_schedule(step, self.fraction_done(step))
        for name, opt in self.optimizers.items():
            for group, base in zip(opt.param_groups, self._base_lrs[name]):
                group["lr"] = base * scale

    def _point_random(self, step: int, micro: int) -> None:
        random = self.objective.random
        if random is not None:  # without micro_batch the draws still change every step, but are not sliced
            plan = self.plan
            slot = self.dist.rank * plan.grad_accum + micro
            random.begin(step, slot * plan.micro_batch, plan.micro_batch * plan.grad_accum * self.dist.world)

    def _update(self, update: str, step: int, batches: list, caches: list[dict], running: RunningMeans) -> None:
        names: list[str] = []
        health: list[torch.Tensor] = []   # every loss of every micro-batch, then the gradient norms
        declared = set(self.objective.updates[update])
        for micro, (batch, cache) in enumerate(zip(batches, caches)):
            self._point_random(step, micro)
            with autocast(self.plan.precision, self.device):
                losses, metrics = self.objective.losses(update, batch, cache)
            if micro == 0:
                names = list(losses)
                if set(names) != declared:
                    raise ValueError(f"update '{update}' returned losses {sorted(names)}, its table declares "
                                     f"{sorted(declared)}")
                for n in names:
                    self.optimizers[n].zero_grad(set_to_none=True)
            health += [losses[n].detach().float() for n in names]
            for i, n in enumerate(names):
                loss = losses[n] / self.plan.grad_accum
                if self.scaler is not None:
                    loss = self.scaler.scale(loss)
                # inputs= keeps each loss's gradient inside its own optimizer's parameters: the generator loss
                # computes no discriminator weight gradients, a discriminator loss never reaches the generator.
                loss.backward(inputs=self._params[n], retain_graph=i < len(names) - 1)
            running.add(metrics)
        grad_metrics = {}
        for n in names:
            distributed.average_gradients(self._params[n])
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizers[n])
            if self.plan.grad_clip:
                norm = torch.nn.utils.clip_grad_norm_(self._params[n], self.plan.grad_clip)
                grad_metrics[f"grad_norm_{n}"] = norm
                health.append(norm.detach().float())
        finite = torch.stack(health).isfinite().all()
        if self.scaler is None and not self._finite_or_skip(finite, step, names, running):
            return
        for n in names:
            if self.scaler is not None:
                self.scaler.step(self.optimizers[n])
            else:
                self.optimizers[n].step()
        if self.scaler is not None:
            self.scaler.update()
        running.add(grad_metrics)

    def _finite_or_skip(self, finite: torch.Tensor, step: int, names: list[str], running: RunningMeans) -> bool:
        """Record a non-finite update (stop policy), or drop it before it reaches the weights (skip policy, which
        pays one host sync per update)."""
        if self.plan.on_nonfinite == "skip":
            ok = bool(finite)
            running.add({"skipped_updates": torch.tensor(0.0 if ok else 1.0, device=self.device)})
            if not ok:
                for n in names:
                    self.optimizers[n].zero_grad(set_to_none=True)
            return ok
        first_bad = torch.full((), step, dtype=torch.long, device=self.device)
        self._first_bad = torch.where((self._first_bad < 0) & torch.logical_not(finite), first_bad, self._first_bad)
        return True

    def _require_finite(self) -> None:
        bad = int(self._first_bad.item())
        if bad >= 0:
            last = (f"the last good checkpoint is step {self.checkpointed_step}"
                    if self.checkpointed_step is not None else "no checkpoint was written")
            raise NonFiniteError(f"at step {bad} a loss or gradient turned NaN or inf; stopped without saving "
                                 f"these weights; {last}; resume with on_nonfinite=skip to skip such updates, or "
                                 f"start again with a lower lr")

    def checkpoint(self) -> Path | None:
        self._require_finite()
        if not self.dist.is_main:
            return None
        self.plan.hooks.before_checkpoint(self)
        state = {"step": self.step, "elapsed": self.elapsed, **self.plan.extra_state()}
        try:
            path = save_checkpoint(self.run_dir, self.modules, self.optimizers, state)
        except OSError as exc:
            kept = f"step {self.checkpointed_step} stays in place" if self.checkpointed_step is not None else \
                "no earlier checkpoint exists"
            raise UserError(f"could not write the step-{self.step} checkpoint in {self.run_dir} "
                            f"({exc.strerror or exc}); the checkpoint of {kept}") from None
        self.checkpointed_step = self.step
        self.plan.hooks.on_checkpoint(self)
        return path

    def _log_row(self, running: RunningMeans, steps_since_log: int, seconds: float) -> dict:
        means = running.pop()
        if self.dist.enabled and means:  # every rank's metrics, averaged
            keys = sorted(means)
            values = distributed.average_scalars(torch.tensor([means[k] for k in keys], dtype=torch.float64,
                                                              device=self.device))
            means = dict(zip(keys, values.cpu().tolist()))
        row = {"step": self.step, "epoch": self.step / self.plan.steps_per_epoch}
        row.update(self.objective.summarize(means))
        row[f"{self.plan.item_name}_per_s"] = steps_since_log * self.plan.items_per_step / max(seconds, 1e-9)
        if self.optimizers:
            lrs = {name: o.param_groups[-1]["lr"] for name, o in self.optimizers.items()}
            row["lr"] = next(iter(lrs.values()))
            if len(set(lrs.values())) > 1:   # networks learning at different rates (a GAN's G and D): each one's
                row.update({f"lr_{name}": lr for name, lr in lrs.items()})
        return row

    def _agreed_elapsed(self, elapsed: float) -> float:
        if self.dist.enabled and self.plan.max_seconds is not None:
            # every rank stops at the same step and anneals its lr by the same clock
            clock = torch.tensor([elapsed], dtype=torch.float64, device=self.device)   # NCCL reduces device tensors
            return float(distributed.average_scalars(clock).item())
        return elapsed

    def write_metrics(self, row: dict) -> None:
        """One row into metrics.jsonl (and TensorBoard): the training loop's rows and the hooks' own (eval_*)."""
        if self._metrics is None:
            self._metrics = MetricsLog(self.run_dir / "metrics.jsonl")
        self._metrics.write(row)
        if self.tensorboard is not None:
            self.tensorboard.scalars(row)

    def run(self) -> dict[str, float]:
        """Train from the current step to total_steps (or the time budget, or stop_at); return the last logged row."""
        plan, main = self.plan, self.dist.is_main
        start_step, elapsed_before = self.step, self.elapsed
        # rows past the step this run starts from were written by a run that was stopped after them: drop them
        self._metrics = MetricsLog(self.run_dir / "metrics.jsonl", resume_step=start_step) if main else None
        for m in self.modules.values():
            m.train()
        running = RunningMeans()
        last_row: dict[str, float] = {}
        t_start = t_log = time.perf_counter()
        steps_since_log = 0
        bar = tqdm(total=plan.total_steps, initial=start_step, unit="step", dynamic_ncols=True,
                   disable=not (self.progress and main), mininterval=0.5)
        try:
            while self.step < plan.total_steps:
                step = self.step
                self._set_lr(step)
                micro_batches = [plan.batches(step, k) for k in range(plan.grad_accum)]
                caches: list[dict] = [{} for _ in micro_batches]
                for update in plan.schedule(step):
                    self._update(update, step, micro_batches, caches, running)
                self.step = step + 1
                steps_since_log += 1
                plan.hooks.after_step(self, step)
                bar.update(1)
                epoch_done = self.step % plan.steps_per_epoch == 0
                self.elapsed = self._agreed_elapsed(elapsed_before + time.perf_counter() - t_start)
                ends = (self.step == plan.total_steps
                        or (plan.max_seconds is not None and self.elapsed >= plan.max_seconds)
                        or (self.stop_at is not None and self.step >= self.stop_at))
                if self.step % plan.log_every == 0 or ends:
                    self._require_finite()
                    now = time.perf_counter()
                    row = self._log_row(running, steps_since_log, now - t_log)
                    t_log, steps_since_log = now, 0
                    if main:
                        self.write_metrics(row)
                        plan.hooks.on_log(self, row)
                        bar.set_postfix_str(_postfix(row, plan.item_name), refresh=False)
                    last_row = row
                if epoch_done and main:
                    plan.hooks.on_epoch_end(self, self.step // plan.steps_per_epoch)
                if plan.checkpoints.due(self.step, epoch_done) or (ends and plan.checkpoints.final):
                    self.checkpoint()
                if ends:
                    self.stopped_early = self.step < plan.total_steps
                    break
        except KeyboardInterrupt:
            bar.close()
            if plan.checkpoints.final:
                self.checkpoint()
            raise
        finally:
            bar.close()
        if main:
            plan.hooks.on_finish(self)
        distributed.barrier()
        return last_row


def _postfix(row: dict, item_name: str) -> str:
    skip = {"step", "epoch", "lr"}
    parts = []
    for k, v in row.items():
        if k in skip or k.startswith(("grad_norm", "lr_")):
            continue
        if k.endswith("_per_s"):
            parts.append(f"{item_name[:3]}/s={v:.0f}")
        else:
            parts.append(f"{k}={v:.3g}")
    return " ".join(parts[:7])
