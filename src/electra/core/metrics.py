"""Metric accumulation without per-step host syncs, the metrics.jsonl writer and the loss-curve picture."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from electra.core.files import atomic_file, write_text


class RunningMeans:
    """Keeps detached scalar tensors on the device; ``pop`` stacks and syncs once per log interval, not once per
    step, so the hot loop does no arithmetic for logging at all.

    Non-finite values (e.g. an AUC on a batch with one class) are left out of their mean."""

    def __init__(self) -> None:
        self._values: dict[str, list[torch.Tensor]] = {}

    def add(self, metrics: dict[str, torch.Tensor]) -> None:
        for k, v in metrics.items():
            self._values.setdefault(k, []).append(v.detach())

    def pop(self) -> dict[str, float]:
        if not self._values:
            return {}
        keys = list(self._values)
        means = torch.stack([torch.stack(self._values[k]).float().nanmean() for k in keys]).cpu().tolist()  # one sync
        self._values.clear()
        return dict(zip(keys, means))


class MetricsLog:
    """Appends one JSON object per log interval to ``metrics.jsonl``; a resumed run drops rows past its step."""

    def __init__(self, path: Path, resume_step: int | None = None) -> None:
        self.path = Path(path)
        if resume_step is not None and self.path.exists():
            kept = [json.dumps(row) for row in read_metrics(self.path) if row.get("step", 0) <= resume_step]
            write_text(self.path, "".join(line + "\n" for line in kept))

    def write(self, row: dict) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")


def read_metrics(path: Path) -> list[dict]:
    """The rows of a metrics.jsonl; a line torn by a killed process (the last one) is left out."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def plot_curves(rows: list[dict], keys: list[str], out: Path, title: str = "") -> Path | None:
    """Loss curves (one panel per group of keys present in ``rows``) written as a PNG; None if nothing to plot."""
    present = [k for k in keys if any(k in r for r in rows)]
    if not present:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for k in present:
        pts = [(r["step"], r[k]) for r in rows if k in r]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], label=k, linewidth=1.2)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    with atomic_file(out) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return Path(out)
