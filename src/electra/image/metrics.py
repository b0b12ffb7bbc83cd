"""Sample-quality statistics on feature vectors: FID, KID, improved precision/recall, class coverage.

Pure functions of arrays, so each can be checked on cases with known answers.
"""

from __future__ import annotations

import numpy as np
import torch


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """‖μ1 − μ2‖² + Tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½), with Tr (Σ1 Σ2)^½ = Σ √eig(Σ1^½ Σ2 Σ1^½) (symmetric, stable)."""
    s1 = _sqrt_psd(cov1)
    middle = s1 @ cov2 @ s1
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2 * tr_sqrt)


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    features = np.asarray(features, dtype=np.float64)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def fid(a: np.ndarray, b: np.ndarray) -> float:
    return frechet_distance(*gaussian_stats(a), *gaussian_stats(b))


def kid(a: np.ndarray, b: np.ndarray, subsets: int = 10, subset_size: int = 1000, seed: int = 0) -> float:
    """Kernel Inception Distance: unbiased MMD² with the cubic polynomial kernel, averaged over random subsets."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    d = a.shape[1]
    m = min(subset_size, len(a), len(b))
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        values.append((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                      - 2 * kxy.mean())
    return float(np.mean(values))


def _kth_neighbour_radius(x: torch.Tensor, k: int, chunk: int = 2048) -> torch.Tensor:
    radii = []
    for part in x.split(chunk):
        d = torch.cdist(part, x)
        radii.append(d.kthvalue(k + 1, dim=1).values)  # +1: each point is its own nearest neighbour
    return torch.cat(radii)


def _inside_any_ball(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    hits = []
    for part in points.split(chunk):
        hits.append((torch.cdist(part, centres) <= radii.unsqueeze(0)).any(dim=1))
    return torch.cat(hits)


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019): the k-NN-ball manifold of each set."""
    r = torch.as_tensor(np.asarray(real, dtype=np.float32), device="cpu")
    f = torch.as_tensor(np.asarray(fake, dtype=np.float32), device="cpu")
    precision = _inside_any_ball(f, r, _kth_neighbour_radius(r, k)).float().mean().item()
    recall = _inside_any_ball(r, f, _kth_neighbour_radius(f, k)).float().mean().item()
    return precision, recall


def class_coverage(probabilities: np.ndarray, num_classes: int = 10, min_share: float = 0.01) -> dict[str, float]:
    """Classes holding ≥ ``min_share`` of the predictions, KL(predicted-class histogram ‖ uniform), mean confidence."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    predicted = probabilities.argmax(axis=1)
    hist = np.bincount(predicted, minlength=num_classes) / len(predicted)
    nonzero = hist > 0
    kl = float((hist[nonzero] * np.log(hist[nonzero] * num_classes)).sum())
    return {
        "classes_covered": int((hist >= min_share).sum()),
        "class_kl": kl,
        "confidence": float(probabilities.max(axis=1).mean()),
        "class_histogram": [round(float(h), 4) for h in hist],
    }
