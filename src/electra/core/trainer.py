"""The one training loop both tracks run.

It knows nothing of images or text.  Each step it asks the schedule which updates run; for each update it asks the
objective for the losses (one loss per optimizer it steps) on each of this process's micro-batches, back-propagates
each loss into its own optimizer's parameters only, averages the gradients across ranks, clips, steps, and
accumulates metrics on the device.  Logging, checkpoints and pictures happen at intervals through hooks, on rank 0
only, so the hot loop has no host syncs.

Batches come from ``batches(step, micro)``: this rank's ``micro``-th slice of the step's global batch
(per-process batch × grad_accum × world size rows).  Objectives draw their noise through a ``StepRandom`` that the
loop points at the slice, so one process × 2B, two ranks × B and B × grad_accum 2 train identically.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
from tqdm import tqdm

from electra.core import distributed
from electra.core.checkpoint import save_checkpoint
from electra.core.metrics import MetricsLog, RunningMeans
from electra.core.randomness import StepRandom

PRECISIONS = ("fp32", "bf16", "fp16")


class Objective(Protocol):
    random: StepRandom

    def losses(self, update: str, batch: Any, cache: dict) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Return ({optimizer name: loss}, {metric name: scalar tensor}) for one update on ``batch``.

        ``cache`` lives for one micro-batch of one step, so updates on the same batch can share work (e.g. one G(z)
        for the discriminator and the generator update)."""

    def summarize(self, means: dict[str, float]) -> dict[str, float]:
        """Add derived metrics (e.g. L_ELECTRA = L_G + L_D) to the interval means."""


class Hooks:
    """Track-specific callbacks; every method is optional.  ``after_step`` runs on every rank, the rest on rank 0."""

    def after_step(self, trainer: "Trainer", step: int) -> None: ...
    def on_epoch_end(self, trainer: "Trainer", epoch: int) -> None: ...
    def on_log(self, trainer: "Trainer", row: dict) -> None: ...
    def before_checkpoint(self, trainer: "Trainer") -> None: ...
    def on_checkpoint(self, trainer: "Trainer") -> None: ...
    def on_finish(self, trainer: "Trainer") -> None: ...


def autocast(precision: str, device: torch.device):
    """bf16/fp16 autocast around the forward passes; fp32 runs as written."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


@dataclass
class Trainer:
    modules: dict[str, torch.nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    objective: Any
    schedule: Callable[[int], tuple[str, ...]]
    batches: Callable[[int, int], Any]         # (step, micro) -> this rank's micro-batch; deterministic
    run_dir: Path
    total_steps: int
    steps_per_epoch: int
    items_per_step: int                        # examples/tokens in one step's global batch
    item_name: str = "images"
    log_every: int = 50
    checkpoint_every: int = 1000
    max_seconds: float | None = None
    grad_clip: float | None = None
    lr_lambda: Callable[[int], float] | None = None   # multiplier of each group's initial lr at step t
    # … or, instead, a multiplier given the fraction of the run done: steps/total_steps or elapsed/max_seconds,
    # whichever is further, so a wall-clock budget can anneal without knowing its step count.
    lr_by_fraction: Callable[[float], float] | None = None
    generators: dict[str, torch.Generator] = field(default_factory=dict)  # RNGs saved with checkpoints
    hooks: Hooks = field(default_factory=Hooks)
    extra_state: Callable[[], dict] = dict           # track state stored in checkpoints
    progress: bool = True
    checkpoint_each_epoch: bool = True               # image epochs are short; text epochs may be tiny or huge
    grad_accum: int = 1
    micro_batch: int = 0                             # rows per micro-batch (for the StepRandom slice); 0: unknown
    precision: str = "fp32"

    def __post_init__(self) -> None:
        self.step = 0
        self.dist = distributed.current()
        self.metrics = MetricsLog(Path(self.run_dir) / "metrics.jsonl")
        self._params = {n: [p for g in o.param_groups for p in g["params"]] for n, o in self.optimizers.items()}
        self._base_lrs = {n: [g["lr"] for g in o.param_groups] for n, o in self.optimizers.items()}
        self.scaler = torch.amp.GradScaler(self.dist.device.type) if self.precision == "fp16" else None
        self.stopped_early = False
        self.elapsed = 0.0   # seconds of this run() so far, the same on every rank (agreed after each step)

    def fraction_done(self, step: int) -> float:
        by_steps = step / self.total_steps
        by_time = self.elapsed / self.max_seconds if self.max_seconds else 0.0
        return min(1.0, max(by_steps, by_time))

    def _set_lr(self, step: int) -> None:
        if self.lr_by_fraction is not None:
            scale = self.lr_by_fraction(self.fraction_done(step))
        elif self.lr_lambda is not None:
            scale = self.lr_lambda(step)
        else:
            return
        for name, opt in self.optimizers.items():
            for group, base in zip(opt.param_groups, self._base_lrs[name]):
                group["lr"] = base * scale

    def _point_random(self, step: int, micro: int) -> None:
        random = getattr(self.objective, "random", None)
        if random is not None:  # without micro_batch the draws still change every step, but are not sliced
            slot = self.dist.rank * self.grad_accum + micro
            random.begin(step, slot * self.micro_batch, self.micro_batch * self.grad_accum * self.dist.world)

    def _update(self, update: str, step: int, batches: list, caches: list[dict], running: RunningMeans) -> None:
        names: list[str] = []
        for micro, (batch, cache) in enumerate(zip(batches, caches)):
            self._point_random(step, micro)
            with autocast(self.precision, self.dist.device):
                losses, metrics = self.objective.losses(update, batch, cache)
            if micro == 0:
                names = list(losses)
                for n in names:
                    self.optimizers[n].zero_grad(set_to_none=True)
            for i, n in enumerate(names):
                loss = losses[n] / self.grad_accum
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
            if self.grad_clip:
                grad_metrics[f"grad_norm_{n}"] = torch.nn.utils.clip_grad_norm_(self._params[n], self.grad_clip)
            if self.scaler is not None:
                self.scaler.step(self.optimizers[n])
            else:
                self.optimizers[n].step()
        if self.scaler is not None:
            self.scaler.update()
        running.add(grad_metrics)

    def checkpoint(self) -> Path | None:
        if not self.dist.is_main:
            return None
        self.hooks.before_checkpoint(self)
        state = {"step": self.step, **self.extra_state()}
        path = save_checkpoint(self.run_dir, self.modules, self.optimizers, self.generators, state)
        self.hooks.on_checkpoint(self)
        return path

    def _log_row(self, running: RunningMeans, steps_since_log: int, elapsed: float) -> dict:
        means = running.pop()
        if self.dist.enabled and means:  # every rank's metrics, averaged
            keys = sorted(means)
            values = distributed.average_scalars(torch.tensor([means[k] for k in keys], dtype=torch.float64))
            means = dict(zip(keys, values.tolist()))
        row = {"step": self.step, "epoch": self.step / self.steps_per_epoch}
        row.update(self.objective.summarize(means))
        row[f"{self.item_name}_per_s"] = steps_since_log * self.items_per_step / max(elapsed, 1e-9)
        if self.optimizers:
            row["lr"] = next(iter(self.optimizers.values())).param_groups[-1]["lr"]
        return row

    def run(self, start_step: int = 0) -> dict[str, float]:
        """Train from ``start_step`` to ``total_steps`` (or until ``max_seconds``); return the last logged row."""
        self.step = start_step
        main = self.dist.is_main
        if start_step and main:
            self.metrics = MetricsLog(Path(self.run_dir) / "metrics.jsonl", resume_step=start_step)
        for m in self.modules.values():
            m.train()
        running = RunningMeans()
        last_row: dict[str, float] = {}
        t_start = t_log = time.perf_counter()
        steps_since_log = 0
        bar = tqdm(total=self.total_steps, initial=start_step, unit="step", dynamic_ncols=True,
                   disable=not (self.progress and main), mininterval=0.5)
        try:
            while self.step < self.total_steps:
                step = self.step
                self._set_lr(step)
                micro_batches = [self.batches(step, k) for k in range(self.grad_accum)]
                caches: list[dict] = [{} for _ in micro_batches]
                for update in self.schedule(step):
                    self._update(update, step, micro_batches, caches, running)
                self.step = step + 1
                steps_since_log += 1
                self.hooks.after_step(self, step)
                bar.update(1)
                epoch_done = self.step % self.steps_per_epoch == 0
                is_last = self.step == self.total_steps
                self.elapsed = time.perf_counter() - t_start
                if self.dist.enabled and self.max_seconds is not None:
                    # every rank stops at the same step and anneals its lr by the same clock
                    agreed = distributed.average_scalars(torch.tensor([self.elapsed], dtype=torch.float64))
                    self.elapsed = float(agreed.item())
                out_of_time = self.max_seconds is not None and self.elapsed >= self.max_seconds
                if self.step % self.log_every == 0 or is_last or out_of_time:
                    now = time.perf_counter()
                    row = self._log_row(running, steps_since_log, now - t_log)
                    t_log, steps_since_log = now, 0
                    if main:
                        self.metrics.write(row)
                        self.hooks.on_log(self, row)
                        bar.set_postfix_str(_postfix(row, self.item_name), refresh=False)
                    last_row = row
                if epoch_done and main:
                    self.hooks.on_epoch_end(self, self.step // self.steps_per_epoch)
                if (self.step % self.checkpoint_every == 0 or (epoch_done and self.checkpoint_each_epoch)
                        or is_last or out_of_time):
                    self.checkpoint()
                if out_of_time and not is_last:
                    self.stopped_early = True
                    break
        except KeyboardInterrupt:
            bar.close()
            self.checkpoint()
            raise
        bar.close()
        if main:
            self.hooks.on_finish(self)
        distributed.barrier()
        return last_row


def _postfix(row: dict, item_name: str) -> str:
    skip = {"step", "epoch", "lr"}
    parts = []
    for k, v in row.items():
        if k in skip or k.startswith("grad_norm"):
            continue
        if k.endswith("_per_s"):
            parts.append(f"{item_name[:3]}/s={v:.0f}")
        else:
            parts.append(f"{k}={v:.3g}")
    return " ".join(parts[:7])
