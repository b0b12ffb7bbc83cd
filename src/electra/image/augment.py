"""Differentiable augmentation for the discriminator (DiffAugment, Zhao et al. 2020).

With few training images the discriminator memorises them and wins: its verdicts stop carrying information back to
the generator.  DiffAugment applies the same kind of random transform to every image the discriminator judges —
real images and the generator's fakes, in the discriminator's update and in the generator's — so the discriminator
can no longer tell the two apart by memorised pixels, and because every transform is differentiable the
generator's gradient flows through it.  Sampling never augments: only the objective calls this.

Policies (comma-separated in ``augment=``):
- ``translation``: shift by up to 1/8 of the side (±3 px at 28×28), the uncovered border filled with the background;
- ``cutout``: a square of half the side at a random place set to the background;
- ``brightness`` / ``contrast``: add up to ±0.5 (in [-1, 1] units) / scale the deviation from the mean by 0.5–1.5.
Random numbers come from the objective's per-step generator (one stream per call site), so training stays a pure
function of the step: resumable bit for bit and the same whatever the batch split.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

BACKGROUND = -1.0          # black in the models' [-1, 1] range (MNIST's background)
POLICIES = ("translation", "cutout", "brightness", "contrast")

Draw = Callable[..., torch.Tensor]   # draw(*tail) → uniform [0, 1) of shape (batch, *tail), on the CPU


def parse_policy(text: str) -> tuple[str, ...]:
    """``"translation,cutout"`` → ("translation", "cutout"); ``"none"`` or "" → ()."""
    if text in ("", "none"):
        return ()
    return tuple(part.strip() for part in text.split(","))


def translate(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Shift each image by ``shift[b] = (dy, dx)`` whole pixels, filling with the background."""
    b, c, h, w = x.shape
    r = int(shift.abs().max()) if shift.numel() else 0
    if r == 0:
        return x
    padded = F.pad(x, (r, r, r, r), value=BACKGROUND)
    dy, dx = shift[:, 0].to(x.device), shift[:, 1].to(x.device)
    rows = (torch.arange(h, device=x.device) + r).unsqueeze(0) - dy.unsqueeze(1)          # B×H
    cols = (torch.arange(w, device=x.device) + r).unsqueeze(0) - dx.unsqueeze(1)          # B×W
    out = padded.gather(2, rows[:, None, :, None].expand(b, c, h, w + 2 * r))
    return out.gather(3, cols[:, None, None, :].expand(b, c, h, w))


def cutout(x: torch.Tensor, corner: torch.Tensor, size: int) -> torch.Tensor:
    """Set a ``size``×``size`` square whose top-left corner is ``corner[b] = (y, x)`` to the background."""
    b, _, h, w = x.shape
    y = torch.arange(h, device=x.device).unsqueeze(0)
    xs = torch.arange(w, device=x.device).unsqueeze(0)
    cy, cx = corner[:, 0:1].to(x.device), corner[:, 1:2].to(x.device)
    inside = ((y >= cy) & (y < cy + size)).unsqueeze(2) & ((xs >= cx) & (xs < cx + size)).unsqueeze(1)
    return torch.where(inside.unsqueeze(1), torch.full_like(x, BACKGROUND), x)


def augment(x: torch.Tensor, policy: tuple[str, ...], draw: Draw) -> torch.Tensor:
    """``x`` (N×C×H×W in [-1, 1]) with every transform of ``policy`` applied, each image its own draw."""
    n, _, h, w = x.shape
    uniforms = draw(len(POLICIES), 2) if policy else None        # N × transform × 2, one draw per call
    for name in policy:
        u = uniforms[:, POLICIES.index(name)]
        if name == "translation":
            r = max(1, h // 8)
            x = translate(x, (u * (2 * r + 1)).long().clamp_(max=2 * r) - r)
        elif name == "cutout":
            size = h // 2
            corner = (u * torch.tensor([h - size + 1, w - size + 1], device="cpu")).long()
            x = cutout(x, corner, size)
        elif name == "brightness":
            x = x + (u[:, 0] - 0.5).to(x.device).view(n, 1, 1, 1)
        elif name == "contrast":
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = (x - mean) * (u[:, 0] + 0.5).to(x.device).view(n, 1, 1, 1) + mean
    return x
