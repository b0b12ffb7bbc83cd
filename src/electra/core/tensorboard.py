"""``log_to=tensorboard``: the run's metrics rows, its progress pictures and its hyper-parameters as TensorBoard
event files in ``RUN/tensorboard/`` (through ``torch.utils.tensorboard``; the optional ``tensorboard`` extra).

``metrics.jsonl`` is written either way and stays the source of the PNG curves; this is a second view of the same
numbers.  A resumed run purges the events past the step it resumes from, as ``metrics.jsonl`` drops those rows.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from pathlib import Path

import numpy as np

from electra.errors import UserError

LOG_TO = ("jsonl", "tensorboard")
FOLDER = "tensorboard"


def require_tensorboard() -> None:
    try:
        importlib.import_module("torch.utils.tensorboard")   # raises without the tensorboard package
    except ImportError:
        raise UserError("log_to=tensorboard needs the tensorboard extra: pip install -e '.[tensorboard]'") from None


def _hparam_value(value):
    """TensorBoard's hparams take numbers, strings and booleans; anything else is shown as its JSON text."""
    if isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value)


class TensorBoardLog:
    def __init__(self, run_dir: Path, cfg, start_step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # rows up to the checkpoint's step are kept (as in metrics.jsonl); later ones were written by a run that
        # was stopped before its next checkpoint, and go
        self.writer = SummaryWriter(str(Path(run_dir) / FOLDER), purge_step=start_step + 1 if start_step else None)
        self._hparams = {k: _hparam_value(v) for k, v in dataclasses.asdict(cfg).items()} \
            if dataclasses.is_dataclass(cfg) else {}
        self._hparams_written = start_step > 0   # a resumed run has them from its first part
        if self._hparams:
            self.writer.add_text("config", "```\n" + json.dumps(dataclasses.asdict(cfg), indent=2) + "\n```",
                                 start_step)

    def scalars(self, row: dict) -> None:
        step = int(row.get("step", 0))
        numbers = {k: float(v) for k, v in row.items()
                   if k not in ("step",) and isinstance(v, (int, float)) and not isinstance(v, bool)}
        for key, value in numbers.items():
            self.writer.add_scalar(key, value, step)
        if not self._hparams_written and self._hparams and numbers:
            # the hparams view lists the run's config beside the scalars it logs (by their tags)
            from torch.utils.tensorboard.summary import hparams

            for summary in hparams(self._hparams, {k: v for k, v in numbers.items() if k != "epoch"}):
                self.writer.file_writer.add_summary(summary)
            self._hparams_written = True
        self.writer.flush()

    def image(self, tag: str, picture: np.ndarray, step: int) -> None:
        """A grey uint8 H×W picture (a sample grid)."""
        self.writer.add_image(tag, np.asarray(picture, dtype=np.uint8)[None], step, dataformats="CHW")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
