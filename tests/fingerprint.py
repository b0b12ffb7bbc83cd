"""Weight fingerprints of short seeded runs, one per image preset and text objective.

A fingerprint is three float64 sums per tensor of the last checkpoint (plain, of squares, and position-weighted, so
a permutation shows): refactoring that must not change what a job computes is checked against the committed
``fingerprints.json`` (``test_fingerprints.py``).  Regenerate, only when a change of the maths is intended and
explained, with ``python tests/fingerprint.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

HERE = Path(__file__).resolve().parent
STORED = HERE / "fingerprints.json"

IMAGE_RUNS = {
    "seed": dict(steps=6, batch_size=16, phase_both=2, phase_generator=2, log_every=3, grid_size=4),
    "dcgan": dict(steps=6, batch_size=16, width=8, log_every=3, grid_size=4),
    "vae": dict(steps=6, batch_size=16, width=8, log_every=3, grid_size=4),
    "vaegan": dict(steps=6, batch_size=16, width=8, log_every=3, grid_size=4),
}
TEXT_RUNS = {"rtd": dict(objective="rtd"), "mlm": dict(objective="mlm")}


def tensor_sums(path: Path) -> dict[str, list[float]]:
    out = {}
    for name, t in sorted(load_file(str(path)).items()):
        x = t.double().flatten()
        ramp = torch.linspace(-1.0, 1.0, x.numel(), dtype=torch.float64) if x.numel() > 1 else torch.ones(1)
        out[name] = [x.sum().item(), x.square().sum().item(), (x * ramp).sum().item()]
    return out


def fixed_vocab(text: str, folder: Path) -> Path:
    """A WordPiece vocabulary written from the corpus's words (trained vocabularies are not byte-reproducible)."""
    from electra.text.tokenizer import SPECIAL_TOKENS

    words = sorted({w for w in text.replace(".", " . ").split()})
    folder.mkdir(parents=True)
    (folder / "vocab.txt").write_text("\n".join(SPECIAL_TOKENS + words) + "\n", encoding="utf-8")
    return folder / "vocab.txt"


def image_fingerprints(root: Path) -> dict:
    from electra.image.config import preset_config
    from electra.image.data import ImageSet
    from electra.image.train import train_image

    sys.path.insert(0, str(HERE))
    from conftest import make_digits

    images, labels = make_digits(128, seed=1)
    data = ImageSet(torch.from_numpy(images), torch.from_numpy(labels.astype("int64")), "fingerprint digits")
    out = {}
    for preset, overrides in IMAGE_RUNS.items():
        run = train_image(preset_config(preset), out=str(root / f"image-{preset}"), overrides=overrides, data=data,
                          progress=False)
        out[f"image-{preset}"] = tensor_sums(run / "checkpoints" / "last" / "model.safetensors")
    return out


def text_fingerprints(root: Path) -> dict:
    from electra.text.corpus import prepare_corpus
    from electra.text.pretrain import pretrain

    sys.path.insert(0, str(HERE))
    from text_fixtures import tiny_config, write_corpus

    text = write_corpus(root / "corpus.txt")
    vocab = fixed_vocab(text.read_text(encoding="utf-8"), root / "vocab")
    data = prepare_corpus([text], vocab, 32, root / "shards", progress=False)
    out = {}
    for name, overrides in TEXT_RUNS.items():
        cfg = tiny_config(steps=6, warmup_steps=2, log_every=3, **overrides)
        run = pretrain(cfg, data=str(data), out=str(root / f"text-{name}"), progress=False)
        out[f"text-{name}"] = tensor_sums(run / "checkpoints" / "last" / "model.safetensors")
    return out


# The CPU kernels torch, oneDNN and MKL pick differ with the instruction set (AVX2, AVX-512, AMX), and so does their
# rounding; six Adam steps of a conv GAN amplify that to whole per cent.  Pinning all three to AVX2, which every
# x86-64 machine of the last decade has, makes the runs agree across machines to ~1e-4 (measured on an AMX host
# against fingerprints made on another machine); the kernels are chosen when torch loads, so in a fresh process.
PINNED_KERNELS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}


def all_fingerprints() -> dict:
    torch.set_num_threads(1)  # one reduction order, as in the test suite
    with tempfile.TemporaryDirectory() as tmp:
        return {**image_fingerprints(Path(tmp)), **text_fingerprints(Path(tmp))}


def pinned_fingerprints() -> dict:
    """``all_fingerprints`` in a fresh interpreter whose kernels are pinned to AVX2."""
    done = subprocess.run([sys.executable, str(Path(__file__)), "--print"], capture_output=True, text=True,
                          env={**os.environ, **PINNED_KERNELS}, timeout=900)
    if done.returncode:
        raise RuntimeError(f"fingerprint runs failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    if "--print" in sys.argv:   # one JSON line on stdout, for pinned_fingerprints
        print(json.dumps(all_fingerprints()))
    else:
        STORED.write_text(json.dumps(pinned_fingerprints(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
        print(f"wrote {STORED}")
