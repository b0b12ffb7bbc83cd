"""Training-step throughput: the project's GAN step vs a textbook PyTorch DCGAN loop, same models, same maths.

The textbook loop is the recipe most tutorials teach (pytorch/examples dcgan): a DataLoader over a TensorDataset,
a Sigmoid at the end of D with separate BCELoss calls for real and fake, ``.item()`` on every step, default Adam.
Both train the same DCGAN-28 (width from --width) on the same data with batch 64 and the same update order
(D on real + detached fake, then G through D on the same fake).  They run alternately in one process; the script
prints images/s of each, the ratio (medians of several rounds), achieved GFLOP/s as a fraction of a float32 matmul
peak measured in the same run, and the process's peak RSS.

    python benchmarks/image_throughput.py [--rounds 5] [--steps 60] [--width 32]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from common import SHARED, TimedSlices, forward_macs, matmul_peak_gflops, median, peak_rss_mb, say
from electra.config import apply_overrides
from electra.core.trainer import NO_CHECKPOINTS, Plan
from electra.image.config import preset_config
from electra.image.data import image_batches, load_dataset, to_model_range
from electra.image.train import build_optimizers, build_schedule, build_system


def load_images():
    if (SHARED / "mnist" / "train-images-idx3-ubyte.gz").exists():
        return load_dataset("mnist", "train", str(SHARED / "mnist"))
    return load_dataset("embedded")


TUTORIAL_LR, TUTORIAL_BETAS = 2e-4, (0.5, 0.999)  # pytorch/examples dcgan (Radford et al. 2015)


# The preset's additions to the DCGAN of the tutorials: D's minibatch-std channel and extra layers, G's average.
PLAIN_DCGAN = {"minibatch_std": False, "d_extra_convs": 0, "ema": 0.0}


class TextbookLoop:
    """pytorch/examples-style DCGAN training, written plainly."""

    def __init__(self, cfg, images_uint8):
        # the tutorial's architecture: plain DCGAN D, whatever extras the project's preset adds
        system = build_system(apply_overrides(cfg, {"channels_last": False, **PLAIN_DCGAN}))
        self.netG = system.modules["generator"]
        self.netD = nn.Sequential(system.modules["discriminator"], nn.Sigmoid())
        self.criterion = nn.BCELoss()
        # the tutorial's optimiser settings, whatever the project's preset uses
        self.optD = torch.optim.Adam(self.netD.parameters(), lr=TUTORIAL_LR, betas=TUTORIAL_BETAS)
        self.optG = torch.optim.Adam(self.netG.parameters(), lr=TUTORIAL_LR, betas=TUTORIAL_BETAS)
        data = TensorDataset(to_model_range(images_uint8))
        self.loader = DataLoader(data, batch_size=cfg.batch_size, shuffle=True, drop_last=True)
        self.iterator = iter(self.loader)
        self.nz = cfg.noise_dim
        self.history = []

    def next_batch(self):
        try:
            return next(self.iterator)[0]
        except StopIteration:
            self.iterator = iter(self.loader)
            return next(self.iterator)[0]

    def step(self):
        real = self.next_batch()
        b = real.size(0)
        self.netD.zero_grad()
        label = torch.full((b,), 1.0)
        output = self.netD(real).view(-1)
        errD_real = self.criterion(output, label)
        errD_real.backward()
        D_x = output.mean().item()
        noise = torch.randn(b, self.nz)
        fake = self.netG(noise)
        label.fill_(0.0)
        output = self.netD(fake.detach()).view(-1)
        errD_fake = self.criterion(output, label)
        errD_fake.backward()
        D_G_z1 = output.mean().item()
        self.optD.step()
        self.netG.zero_grad()
        label.fill_(1.0)
        output = self.netD(fake).view(-1)
        errG = self.criterion(output, label)
        errG.backward()
        self.optG.step()
        self.history.append(((errD_real + errD_fake).item(), errG.item(), D_x, D_G_z1, output.mean().item()))

    def run(self, steps):
        t = time.perf_counter()
        for _ in range(steps):
            self.step()
        return steps * self.loader.batch_size / (time.perf_counter() - t)


class ProjectLoop:
    """The project's core Trainer on the same config; images/s taken from its own metrics row."""

    def __init__(self, cfg, images_uint8, run_dir):
        self.system = build_system(cfg)
        batches = image_batches(images_uint8, cfg.batch_size, cfg.seed, cfg.channels_last)
        plan = Plan(modules=self.system.modules, optimizers=build_optimizers(cfg, self.system),
                    objective=self.system.objective, schedule=build_schedule(cfg, self.system), batches=batches,
                    steps_per_epoch=10**9, total_steps=10**9, items_per_step=cfg.batch_size, log_every=10**9,
                    checkpoints=NO_CHECKPOINTS, micro_batch=cfg.batch_size)
        self.slices, self.cfg = TimedSlices(plan, run_dir), cfg  # measure steps, not checkpoint writes

    def run(self, steps):
        return steps * self.cfg.batch_size / self.slices(steps)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_images()
    say(f"data: {data.description}; threads {torch.get_num_threads()}; torch {torch.__version__}")
    # Both loops compute the same thing: the plain DCGAN (the preset's extras are model changes, not speed tricks,
    # so they are left out of the speed comparison).
    cfg = apply_overrides(preset_config("dcgan"), {"width": args.width, "batch_size": 64, **PLAIN_DCGAN})
    system = build_system(cfg)
    g_macs = forward_macs(system.modules["generator"], torch.randn(1, 100))
    d_macs = forward_macs(system.modules["discriminator"], torch.zeros(1, 1, 28, 28))
    # Per image and step: G fwd + bwd (3 F_G); D on real and fake, fwd + full bwd (6 F_D);
    # D fwd + input-gradient bwd for the generator update (2 F_D).
    flops_per_image = 2 * (3 * g_macs + 8 * d_macs)
    peak = matmul_peak_gflops()
    say(f"model: DCGAN-28 width {args.width}; forward MACs/image G {g_macs / 1e6:.2f}M, D {d_macs / 1e6:.2f}M; "
        f"training FLOPs/image {flops_per_image / 1e6:.1f}M; matmul peak {peak:.1f} GFLOP/s")
    with tempfile.TemporaryDirectory() as tmp:
        textbook = TextbookLoop(cfg, data.images)
        project = ProjectLoop(cfg, data.images, Path(tmp))
        textbook.run(5), project.run(5)  # warm-up
        rates = {"textbook": [], "project": []}
        for r in range(args.rounds):
            rates["textbook"].append(textbook.run(args.steps))
            rates["project"].append(project.run(args.steps))
            say(f"round {r + 1}: textbook {rates['textbook'][-1]:.0f} img/s, project {rates['project'][-1]:.0f} img/s")
    t, p = median(rates["textbook"]), median(rates["project"])
    for name, rate in (("textbook", t), ("project", p)):
        gflops = rate * flops_per_image / 1e9
        say(f"{name:9s} {rate:7.0f} img/s  {gflops:6.1f} GFLOP/s  {100 * gflops / peak:5.1f}% of matmul peak")
    say(f"peak RSS {peak_rss_mb():.0f} MB (both loops, one process)")
    say(f"SUMMARY image_throughput: project/textbook = {p / t:.2f}x ({p:.0f} vs {t:.0f} img/s, median of "
        f"{args.rounds} rounds, width {args.width}, batch 64)")


if __name__ == "__main__":
    main()
