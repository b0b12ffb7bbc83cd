"""Run by test_distributed under torchrun: rank 1's objective raises inside its third training step."""

import os
import sys

from electra.image.objectives import GANObjective

real = GANObjective.losses


def failing(self, update, batch, cache):
    if os.environ.get("RANK") == "1" and self.noise.random.step == 2:
        raise RuntimeError("rank 1 failed on purpose")
    return real(self, update, batch, cache)


GANObjective.losses = failing  # fault injection into the objective, not the loop

from electra.cli import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
