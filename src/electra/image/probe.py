"""``probe``: how good are the trained discriminator's features for recognising digits?

The discriminator is frozen; a multinomial logistic regression is fit on its penultimate features of labelled
training images and scored on the test split — once for the trained discriminator and once for a randomly
initialised one of the same shape, so the gain from adversarial training is visible (a DCGAN-paper-style result).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from electra.errors import UserError
from electra.image.data import to_model_range


@torch.no_grad()
def discriminator_features(discriminator: torch.nn.Module, images: torch.Tensor, batch: int = 500) -> torch.Tensor:
    discriminator.eval()
    return torch.cat([discriminator.features(to_model_range(c)) for c in images.split(batch)])


def fit_linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, num_classes: int, weight_decay: float = 1e-4,
                     iterations: int = 100) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Standardise, then L-BFGS on the L2-regularised softmax loss; returns (mean, std, W, b)."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    x = (train_x - mean) / std
    w = torch.zeros(x.shape[1], num_classes, requires_grad=True, device="cpu")
    b = torch.zeros(num_classes, requires_grad=True, device="cpu")
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=iterations, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(x @ w + b, train_y) + weight_decay * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return mean, std, w.detach(), b.detach()


def probe_accuracy(discriminator, train, test, n_train: int, seed: int = 0) -> float:
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(train), generator=g, device="cpu")[:n_train]
    fx = discriminator_features(discriminator, train.images[idx])
    num_classes = int(train.labels.max()) + 1
    mean, std, w, b = fit_linear_probe(fx, train.labels[idx], num_classes)
    tx = (discriminator_features(discriminator, test.images) - mean) / std
    return ((tx @ w + b).argmax(1) == test.labels).float().mean().item()


def probe(run_dir, dataset: str | None = None, data_dir: str | None = None, n_train: int = 10_000,
          seed: int = 0) -> dict:
    from electra.image.evaluate import split_for_eval
    from electra.image.train import build_system, load_run

    system = load_run(run_dir)
    if "discriminator" not in system.modules:
        raise UserError(f"{run_dir} has no discriminator (objective {system.config.objective}); probe a gan or "
                        f"vaegan run")
    if n_train < 10:
        raise UserError(f"--n-train must be at least 10, got {n_train}")
    dataset = dataset or system.config.dataset
    train, test = split_for_eval(dataset, data_dir or (system.config.data_dir if dataset == system.config.dataset
                                                       else None))
    trained = probe_accuracy(system.modules["discriminator"], train, test, n_train, seed)
    random_d = build_system(dataclasses.replace(system.config, seed=system.config.seed + 1)).modules["discriminator"]
    untrained = probe_accuracy(random_d, train, test, n_train, seed)
    return {"run": str(run_dir), "dataset": dataset, "n_train": min(n_train, len(train)), "n_test": len(test),
            "trained_discriminator_accuracy": trained, "random_discriminator_accuracy": untrained}
