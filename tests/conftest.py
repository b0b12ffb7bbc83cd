import os
from pathlib import Path

# One compute thread everywhere (and in every subprocess a test starts): tests compare weights bit for bit, and one
# thread keeps reductions in one order.  The package leaves a set OMP_NUM_THREADS alone (core/threads.py).
os.environ["OMP_NUM_THREADS"] = "1"

import numpy as np
import pytest
import torch

from electra.image.idx import write_idx

torch.set_num_threads(1)  # tests compare weights bit for bit; one thread keeps reductions in one order


def make_digits(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic 28×28 'digits': a bright bar whose angle depends on the label, on a black background."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    yy, xx = np.mgrid[0:28, 0:28] - 13.5
    images = np.zeros((n, 28, 28), dtype=np.uint8)
    for i, label in enumerate(labels):
        angle = np.pi * label / 10
        dist = np.abs(np.cos(angle) * yy - np.sin(angle) * xx)
        images[i] = np.clip(255 * (dist < 2.5) * (np.hypot(xx, yy) < 11) + rng.integers(0, 20, (28, 28)), 0, 255)
    return images, labels


def write_mnist(folder: Path, train: int = 96, test: int = 32) -> Path:
    """A folder laid out like MNIST's download: four IDX gz files of synthetic digits."""
    folder.mkdir(parents=True)
    for split, n, seed in (("train", train, 1), ("t10k", test, 2)):
        images, labels = make_digits(n, seed=seed)
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", labels)
    return folder


@pytest.fixture
def mnist_dir(tmp_path):
    return write_mnist(tmp_path / "mnist")


TINY = dict(dataset="mnist", width=4, batch_size=16, log_every=2, grid_size=4)


def shared_data(name: str) -> Path:
    """A folder of the real data in ../shared/data (beside the checkout here and in CI; ELECTRA_SHARED names
    another shared folder).  Missing data fails the test with where it looked: the tests that read it never skip."""
    root = Path(os.environ.get("ELECTRA_SHARED") or Path(__file__).resolve().parents[2] / "shared")
    folder = root / "data" / name
    if not folder.is_dir():
        pytest.fail(f"expected the shared {name} data at {folder} (set ELECTRA_SHARED to the shared folder)")
    return folder


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """A tiny synthetic corpus, its WordPiece tokenizer and prepared shards (seq 32)."""
    from electra.text.corpus import prepare_corpus
    from text_fixtures import write_corpus
    from electra.text.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("text")
    text = write_corpus(root / "corpus.txt")
    tok = train_tokenizer([text], 120, root / "tok", min_frequency=1)
    data = prepare_corpus([text], tok, 32, root / "data", progress=False)
    return {"root": root, "text": text, "tokenizer": tok, "data": data}
