"""The domain classifier whose penultimate layer is the feature space for LeNet-FID, KID and precision/recall.

Inception features need a download and fit 28×28 digits poorly; a small CNN trained on the data set itself
(≥ 99% test accuracy on MNIST) is the usual substitute.  It is trained once per data set and cached as
safetensors under ~/.cache/electra/classifiers, keyed by a hash of the training images.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from electra.core.checkpoint import read_tensors
from electra.core.files import atomic_file
from electra.core.log import log
from electra.image.data import ImageSet, cache_dir, to_model_range

FEATURE_DIM = 128


class LeNet(nn.Module):
    """conv32 → pool → conv64 → pool → fc128 (features) → fc10."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 49, FEATURE_DIM), nn.ReLU(),
        )
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(FEATURE_DIM, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.body(x)))

    @torch.no_grad()
    def embed(self, images_uint8: torch.Tensor, batch: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
        """(features N×128, class probabilities N×10) for uint8 N×28×28 images."""
        self.eval()
        feats, probs = [], []
        for chunk in images_uint8.split(batch):
            f = self.body(to_model_range(chunk))
            feats.append(f)
            probs.append(F.softmax(self.head(f), dim=1))
        return torch.cat(feats), torch.cat(probs)


def data_key(images: torch.Tensor) -> str:
    return hashlib.sha256(images.contiguous().numpy().tobytes()).hexdigest()[:16]


def accuracy(model: LeNet, data: ImageSet) -> float:
    _, probs = model.embed(data.images)
    return (probs.argmax(1) == data.labels).float().mean().item()


def train_classifier(train: ImageSet, epochs: int = 3, min_steps: int = 1500, batch_size: int = 128,
                     seed: int = 0, progress: bool = True) -> LeNet:
    """Adam with a one-cycle schedule and ±2-pixel shifts: > 99% MNIST test accuracy in 3 epochs.

    Small data sets get more epochs (at least ``min_steps`` steps in all)."""
    torch.manual_seed(seed)
    model = LeNet(int(train.labels.max()) + 1)
    batch_size = min(batch_size, len(train))
    steps_per_epoch = len(train) // batch_size
    total = max(epochs * steps_per_epoch, min_steps)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, foreach=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=total)
    g = torch.Generator().manual_seed(seed)
    bar = tqdm(total=total, desc="training the evaluation classifier", unit="step",
               disable=not progress, file=sys.stderr)
    model.train()
    for step in range(total):
        i = step % steps_per_epoch
        if i == 0:
            perm = torch.randperm(len(train), generator=g, device="cpu")
        idx = perm[i * batch_size:(i + 1) * batch_size]
        x = to_model_range(train.images[idx])
        dx, dy = torch.randint(-2, 3, (2,), generator=g, device="cpu").tolist()
        x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
        loss = F.cross_entropy(model(x), train.labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.update(1)
    bar.close()
    model.eval()
    return model


def classifier_path(dataset: str, train: ImageSet) -> Path:
    return cache_dir() / "classifiers" / f"{dataset}-{data_key(train.images)}.safetensors"


def get_classifier(dataset: str, train: ImageSet, test: ImageSet, min_steps: int = 1500,
                   progress: bool = True) -> tuple[LeNet, float]:
    """The cached classifier for this training data, training (and caching) it first if needed."""
    from safetensors.torch import save_file

    path = classifier_path(dataset, train)
    model = LeNet(int(train.labels.max()) + 1)
    if path.is_file():
        model.load_state_dict(read_tensors(path))
        model.eval()
        return model, accuracy(model, test)
    log(f"training the evaluation classifier on {train.description} (once; cached in {path})")
    model = train_classifier(train, min_steps=min_steps, progress=progress)
    acc = accuracy(model, test)
    with atomic_file(path) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    log(f"evaluation classifier test accuracy: {acc:.4f}")
    return model, acc
