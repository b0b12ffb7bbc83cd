"""Run by test_distributed under torchrun: rank 1 raises inside its third training step."""

import os
import sys

from electra.core.trainer import Trainer

real = Trainer._update


def failing(self, update, step, *args, **kwargs):
    if os.environ.get("RANK") == "1" and step == 2:
        raise RuntimeError("rank 1 failed on purpose")
    return real(self, update, step, *args, **kwargs)


Trainer._update = failing

from electra.cli import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
