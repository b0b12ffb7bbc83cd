"""A recipe turns a config and a device into a training ``Plan``; ``run_recipe`` runs any recipe in a run folder.

The lifecycle lives here once for every job: build the plan, restore the last checkpoint when resuming, refuse a
run that is already done, write the config and notes (only after everything that can fail on bad input has been
checked), train, and remove a new run folder whose run failed before its first checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from electra.core import distributed
from electra.core.checkpoint import has_checkpoint
from electra.core.run import RunFolder
from electra.core.tensorboard import TensorBoardLog, require_tensorboard
from electra.core.threads import use_threads
from electra.core.trainer import Plan, Trainer
from electra.errors import UserError


class Recipe(Protocol):
    facts: dict[str, Any]     # written into config.json beside the config (e.g. which data a text run reads)
    notes: dict[str, str]     # small text files written into the run folder (e.g. data.txt)

    def build(self, cfg: Any, device: torch.device) -> Plan:
        """Modules, optimizers, objective, schedule, batches and hooks for ``cfg`` on ``device``."""

    def describe(self, cfg: Any, plan: Plan) -> str:
        """The start-of-run line after the run folder's name: what trains, how long, how big a batch."""

    def check_restored(self, state: dict) -> None:
        """Refuse a checkpoint that does not fit this run's inputs (e.g. other data)."""


@dataclass
class Finished:
    run_dir: Path
    trainer: Trainer

    @property
    def modules(self) -> dict[str, torch.nn.Module]:
        return self.trainer.modules


def run_recipe(recipe: Recipe, run: RunFolder, cfg: Any, progress: bool = True, stop_at: int | None = None,
               device: torch.device | str | None = None) -> Finished:
    """Train ``cfg`` with ``recipe`` in ``run`` (new or resumed); ``stop_at`` ends early at that step with a
    checkpoint, to be continued with ``--resume``."""
    device = torch.device(device) if device is not None else distributed.current().device
    use_threads(getattr(cfg, "threads", 0))
    try:
        return _train(recipe, run, cfg, progress, stop_at, device)
    finally:
        run.release()


def _train(recipe: Recipe, run: RunFolder, cfg: Any, progress: bool, stop_at: int | None,
           device: torch.device) -> Finished:
    with run.removed_on_failure():
        plan = recipe.build(cfg, device)
        if plan.precision == "fp16" and device.type != "cuda":
            raise UserError("precision fp16 needs a GPU (its GradScaler); use bf16 or fp32 on the CPU")
        trainer = Trainer(plan, run.path, device, progress=progress, stop_at=stop_at)
        if run.resuming and has_checkpoint(run.path):
            recipe.check_restored(trainer.restore(run.last_checkpoint()))
            budget_used = plan.max_seconds is not None and trainer.elapsed >= plan.max_seconds
            if trainer.step >= plan.total_steps or budget_used:
                reached = f"its {plan.max_seconds / 60:g}-minute budget" if budget_used else \
                    f"step {trainer.step} of {plan.total_steps}"
                raise UserError(f"{run.path} already reached {reached}; raise --steps/--epochs/--minutes to go on")
        if stop_at is not None and stop_at <= trainer.step:
            raise UserError(f"--stop-at {stop_at} is not after the run's step {trainer.step}")
        tensorboard = getattr(cfg, "log_to", "jsonl") == "tensorboard" and distributed.current().is_main
        if tensorboard:
            require_tensorboard()
        run.mkdir()
        run.write_config(cfg, **recipe.facts)
        for name, text in recipe.notes.items():
            run.write_note(name, text)
        start = f"resuming at step {trainer.step}" if run.resuming else "new run"
        if run.resuming and not trainer.step:
            start = "resuming a run stopped before its first checkpoint: from step 0"
        run.log(f"run folder: {run.path}  ({start}, {recipe.describe(cfg, plan)}; {torch.get_num_threads()} "
                f"threads)")
        if tensorboard:
            trainer.tensorboard = TensorBoardLog(run.path, cfg, trainer.step)
        try:
            trainer.run()
        finally:
            if trainer.tensorboard is not None:
                trainer.tensorboard.close()
    distributed.barrier()
    return Finished(run.path, trainer)


def global_batch_text(plan: Plan, batch_size: int) -> str:
    world = distributed.current().world
    return (f"global batch {batch_size * plan.grad_accum * world} = {batch_size} × {plan.grad_accum} accumulation × "
            f"{world} ranks")
