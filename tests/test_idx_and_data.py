import http.server
import threading
from functools import partial

import numpy as np
import pytest

from electra.errors import UserError
from electra.image.data import IDX_DATASETS, MNIST, IdxDataset, load_dataset, load_embedded, load_folder, load_idx_dataset
from electra.image.download import file_digest
from electra.image.idx import IMAGES_MAGIC, read_idx, read_idx_images, write_idx

from conftest import make_digits


def test_idx_round_trip(tmp_path):
    images, labels = make_digits(10)
    write_idx(tmp_path / "x.gz", images)
    assert (read_idx(tmp_path / "x.gz", IMAGES_MAGIC) == images).all()
    write_idx(tmp_path / "x", images)  # uncompressed works too
    assert (read_idx_images(tmp_path / "x") == images).all()


def test_truncated_gzip(tmp_path):
    write_idx(tmp_path / "x.gz", make_digits(10)[0])
    data = (tmp_path / "x.gz").read_bytes()
    (tmp_path / "x.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="corrupt or truncated gzip"):
        read_idx_images(tmp_path / "x.gz")


def test_truncated_body(tmp_path):
    write_idx(tmp_path / "x", make_digits(10)[0])
    data = (tmp_path / "x").read_bytes()
    (tmp_path / "x").write_bytes(data[:-100])
    with pytest.raises(UserError, match="truncated or corrupt"):
        read_idx_images(tmp_path / "x")


def test_wrong_magic(tmp_path):
    write_idx(tmp_path / "labels.gz", np.arange(10, dtype=np.uint8))
    with pytest.raises(UserError, match="magic number 0x00000801"):
        read_idx_images(tmp_path / "labels.gz")


def test_wrong_image_size(tmp_path):
    write_idx(tmp_path / "big.gz", np.zeros((3, 32, 32), np.uint8))
    with pytest.raises(UserError, match="32x32 images; this model needs 28x28"):
        read_idx_images(tmp_path / "big.gz")


def test_mnist_folder_loads_with_labels(mnist_dir):
    data = load_idx_dataset("mnist", "train", str(mnist_dir))
    assert data.images.shape == (96, 28, 28) and data.labels.shape == (96,)
    assert "MNIST train split, 96 images" in data.description
    test = load_dataset("mnist", "test", str(mnist_dir))
    assert len(test) == 32


def test_missing_data_folder(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_dataset("mnist", "train", str(tmp_path / "nope"))
    with pytest.raises(UserError, match="no MNIST train files"):
        load_dataset("mnist", "train", str(tmp_path))


def test_embedded_digits_are_real_and_balanced():
    data = load_embedded()
    assert data.images.shape == (5000, 28, 28)
    assert np.bincount(data.labels.numpy()).tolist() == [500] * 10
    # real handwriting: mostly black background with bright strokes
    mean = data.images.float().mean().item()
    assert 20 < mean < 60 and data.images.max().item() == 255


def test_image_folder_converts_modes_and_sizes(tmp_path):
    from PIL import Image

    (tmp_path / "sub").mkdir()
    Image.new("RGB", (64, 48), (255, 0, 0)).save(tmp_path / "a.png")
    Image.new("L", (28, 28), 200).save(tmp_path / "sub" / "b.jpg")
    Image.new("RGBA", (10, 10), (255, 255, 255, 255)).save(tmp_path / "c.png")
    data = load_folder(str(tmp_path))
    assert data.images.shape == (3, 28, 28) and data.labels is None
    # sorted: a.png, c.png, sub/b.jpg
    assert data.images[1].min().item() == 255  # opaque white stays white
    assert abs(int(data.images[2].float().mean()) - 200) <= 2


def test_empty_and_corrupt_image_folders(tmp_path):
    with pytest.raises(UserError, match="holds no images"):
        load_folder(str(tmp_path))
    (tmp_path / "bad.png").write_bytes(b"not a png at all")
    with pytest.raises(UserError, match="cannot read image .*bad.png"):
        load_folder(str(tmp_path))


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def http_root(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def _served_dataset(root, digests=None):
    images, labels = make_digits(20)
    files = {}
    for role, name, array in [("train-images", "train-images-idx3-ubyte.gz", images),
                              ("train-labels", "train-labels-idx1-ubyte.gz", labels)]:
        write_idx(root / name, array)
        files[role] = (name, "sha256", (digests or {}).get(role) or file_digest(root / name, "sha256"))
    return IdxDataset("mnist", "MNIST", files, mirrors=())


def test_download_verifies_checksums(http_root, tmp_path, monkeypatch):
    root, url = http_root
    ds = _served_dataset(root)
    monkeypatch.setitem(IDX_DATASETS, "mnist", ds)
    target = tmp_path / "cache"
    data = load_idx_dataset("mnist", "train", str(target), fetch=True, mirrors=(url,))
    assert len(data) == 20 and (target / "train-images-idx3-ubyte.gz").is_file()


def test_download_with_bad_checksum_leaves_nothing(http_root, tmp_path, monkeypatch):
    root, url = http_root
    ds = _served_dataset(root, {"train-images": "0" * 64})
    monkeypatch.setitem(IDX_DATASETS, "mnist", ds)
    target = tmp_path / "cache"
    with pytest.raises(UserError, match="does not match the published"):
        load_idx_dataset("mnist", "train", str(target), fetch=True, mirrors=(url,))
    assert not (target / "train-images-idx3-ubyte.gz").exists()
    assert not [p for p in target.iterdir() if "part" in p.name]


def test_published_mnist_checksums_match_the_real_files():
    from conftest import shared_data

    path = shared_data("mnist") / "t10k-labels-idx1-ubyte.gz"
    name, algorithm, digest = MNIST.files["test-labels"]
    assert file_digest(path, algorithm) == digest
