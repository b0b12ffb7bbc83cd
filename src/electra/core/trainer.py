"""The one training loop both tracks run.

It knows nothing of images or text.  Each step it takes a batch, asks the schedule which updates run, asks the
objective for the losses of each update (one loss per optimizer it steps), back-propagates each loss into its own
optimizer's parameters only, clips, steps, and accumulates metrics on the device.  Logging, checkpoints and
pictures happen at intervals through hooks, so the hot loop has no host syncs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
from tqdm import tqdm

from electra.core.checkpoint import save_checkpoint
from electra.core.metrics import MetricsLog, RunningMeans


class Objective(Protocol):
    def losses(self, update: str, batch: Any, cache: dict) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Return ({optimizer name: loss}, {metric name: scalar tensor}) for one update on ``batch``.

        ``cache`` lives for one step, so updates on the same batch can share work (e.g. one G(z) for D and G)."""

    def summarize(self, means: dict[str, float]) -> dict[str, float]:
        """Add derived metrics (e.g. L_ELECTRA = L_G + L_D) to the interval means."""


class Hooks:
    """Track-specific callbacks; every method is optional."""

    def after_step(self, trainer: "Trainer", step: int) -> None: ...
    def on_epoch_end(self, trainer: "Trainer", epoch: int) -> None: ...
    def on_log(self, trainer: "Trainer", row: dict) -> None: ...
    def on_checkpoint(self, trainer: "Trainer") -> None: ...
    def on_finish(self, trainer: "Trainer") -> None: ...


@dataclass
class Trainer:
    modules: dict[str, torch.nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    objective: Any
    schedule: Callable[[int], tuple[str, ...]]
    batches: Callable[[int], Any]              # step -> batch; deterministic, so a resumed run sees the same data
    run_dir: Path
    total_steps: int
    steps_per_epoch: int
    items_per_step: int
    item_name: str = "images"
    log_every: int = 50
    checkpoint_every: int = 1000
    max_seconds: float | None = None
    grad_clip: float | None = None
    lr_lambda: Callable[[int], float] | None = None   # multiplier of each group's initial lr at step t
    generators: dict[str, torch.Generator] = field(default_factory=dict)  # RNGs saved with checkpoints
    hooks: Hooks = field(default_factory=Hooks)
    extra_state: Callable[[], dict] = dict           # track state stored in checkpoints
    progress: bool = True
    checkpoint_each_epoch: bool = True               # image epochs are short; text epochs may be tiny or huge

    def __post_init__(self) -> None:
        self.step = 0
        self.metrics = MetricsLog(Path(self.run_dir) / "metrics.jsonl")
        self._params = {n: [p for g in o.param_groups for p in g["params"]] for n, o in self.optimizers.items()}
        self._base_lrs = {n: [g["lr"] for g in o.param_groups] for n, o in self.optimizers.items()}
        self.stopped_early = False

    def _set_lr(self, step: int) -> None:
        if self.lr_lambda is None:
            return
        scale = self.lr_lambda(step)
        for name, opt in self.optimizers.items():
            for group, base in zip(opt.param_groups, self._base_lrs[name]):
                group["lr"] = base * group.get("lr_scale", 1.0) * scale

    def _update(self, update: str, batch: Any, cache: dict, running: RunningMeans) -> None:
        losses, metrics = self.objective.losses(update, batch, cache)
        names = list(losses)
        for n in names:
            self.optimizers[n].zero_grad(set_to_none=True)
        for i, n in enumerate(names):
            # inputs= keeps each loss's gradient inside its own optimizer's parameters: the generator loss computes
            # no discriminator weight gradients, and a discriminator loss never reaches the generator.
            losses[n].backward(inputs=self._params[n], retain_graph=i < len(names) - 1)
        for n in names:
            if self.grad_clip:
                norm = torch.nn.utils.clip_grad_norm_(self._params[n], self.grad_clip)
                metrics = {**metrics, f"grad_norm_{n}": norm}
            self.optimizers[n].step()
        running.add(metrics)

    def checkpoint(self) -> Path:
        state = {"step": self.step, **self.extra_state()}
        path = save_checkpoint(self.run_dir, self.modules, self.optimizers, self.generators, state)
        self.hooks.on_checkpoint(self)
        return path

    def run(self, start_step: int = 0) -> dict[str, float]:
        """Train from ``start_step`` to ``total_steps`` (or until ``max_seconds``); return the last logged row."""
        self.step = start_step
        if start_step:
            self.metrics = MetricsLog(Path(self.run_dir) / "metrics.jsonl", resume_step=start_step)
        for m in self.modules.values():
            m.train()
        running = RunningMeans()
        last_row: dict[str, float] = {}
        t_start = t_log = time.perf_counter()
        steps_since_log = 0
        bar = tqdm(total=self.total_steps, initial=start_step, unit="step", dynamic_ncols=True,
                   disable=not self.progress, mininterval=0.5)
        try:
            while self.step < self.total_steps:
                step = self.step
                self._set_lr(step)
                batch = self.batches(step)
                cache: dict = {}
                for update in self.schedule(step):
                    self._update(update, batch, cache, running)
                self.step = step + 1
                steps_since_log += 1
                self.hooks.after_step(self, step)
                bar.update(1)
                epoch_done = self.step % self.steps_per_epoch == 0
                is_last = self.step == self.total_steps
                out_of_time = self.max_seconds is not None and time.perf_counter() - t_start >= self.max_seconds
                if self.step % self.log_every == 0 or is_last or out_of_time:
                    now = time.perf_counter()
                    row = {"step": self.step, "epoch": self.step / self.steps_per_epoch}
                    row.update(self.objective.summarize(running.pop()))
                    row[f"{self.item_name}_per_s"] = steps_since_log * self.items_per_step / max(now - t_log, 1e-9)
                    if self.optimizers:
                        row["lr"] = next(iter(self.optimizers.values())).param_groups[0]["lr"]
                    t_log, steps_since_log = now, 0
                    self.metrics.write(row)
                    self.hooks.on_log(self, row)
                    bar.set_postfix_str(_postfix(row, self.item_name), refresh=False)
                    last_row = row
                if epoch_done:
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
        self.hooks.on_finish(self)
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
