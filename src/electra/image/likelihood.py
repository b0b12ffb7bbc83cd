"""Test log-likelihood of a VAE by importance sampling (Burda et al. 2016), on dynamically binarised digits.

log p(x) ≈ log (1/k) Σ_i p(x | z_i) p(z_i) / q(z_i | x),  z_i ~ q(z | x): a lower bound that tightens as k grows
(k = 5,000 is the literature's figure for MNIST).  The pixels are 0/1 draws with the grey level as probability —
the data a ``binarize=true`` VAE trains on — with a fixed seed, so two models are scored on the same digits.
"""

from __future__ import annotations

import math

import torch
from tqdm import tqdm

from electra.image.data import to_model_range
from electra.image.objectives import binarized, pixel_reconstruction


def _log_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return -0.5 * (((z - mu) ** 2) / logvar.exp() + logvar + math.log(2 * math.pi)).sum(-1)


@torch.no_grad()
def importance_sampled_nll(encoder, decoder, images_uint8: torch.Tensor, k: int = 5000, seed: int = 0,
                           chunk: int = 1000, progress: bool = True) -> dict:
    """−log p(x) in nats per image (mean and standard error over the images), from ``k`` importance samples."""
    device = next(decoder.parameters()).device
    was = encoder.training, decoder.training
    encoder.eval(), decoder.eval()
    g = torch.Generator().manual_seed(seed)
    x_all = binarized(to_model_range(images_uint8), torch.rand(len(images_uint8), 1, 28, 28, generator=g,
                                                               device="cpu"))
    values = []
    try:
        for x in tqdm(x_all, desc=f"importance sampling (k={k})", unit="image", disable=not progress):
            x = x[None].to(device)
            mu, logvar = encoder(x)
            log_w = []
            for start in range(0, k, chunk):
                n = min(chunk, k - start)
                eps = torch.randn(n, mu.shape[1], generator=g, device="cpu").to(device)
                z = mu + eps * (0.5 * logvar).exp()
                log_px_z = -pixel_reconstruction(decoder(z), x.expand(n, -1, -1, -1))
                log_w.append(log_px_z + _log_normal(z, torch.zeros_like(z), torch.zeros_like(z))
                             - _log_normal(z, mu, logvar))
            log_w = torch.cat(log_w)
            values.append(float(math.log(k) - torch.logsumexp(log_w.double(), 0)))
    finally:
        encoder.train(was[0]), decoder.train(was[1])
    t = torch.tensor(values, dtype=torch.float64, device="cpu")
    sem = float(t.std() / math.sqrt(len(t))) if len(t) > 1 else float("nan")
    return {"nll_nats": float(t.mean()), "standard_error": sem, "k": k, "images": len(t),
            "data": "test split, dynamically binarised (seed %d)" % seed}
