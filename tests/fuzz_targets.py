"""Generated bad (and good) inputs for every parser a user's files reach, for property-based fuzzing.

Each target is (hypothesis strategy, function that feeds one generated input to a parser).  The property: the
parser either works or raises ``UserError`` (a one-line message) — never another exception.  ``test_fuzz.py`` runs a
few dozen inputs per target in the suite; ``benchmarks/fuzz.py`` runs 1,000+ and prints a table.
"""

from __future__ import annotations

import gzip
import io
import json
import shutil
import struct
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from hypothesis import strategies as st

from electra.errors import UserError


@contextmanager
def scratch():
    folder = Path(tempfile.mkdtemp(prefix="fuzz-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _idx_bytes(draw_dims, body: bytes, magic: int) -> bytes:
    return struct.pack(">I", magic) + struct.pack(f">{len(draw_dims)}I", *draw_dims) + body


@st.composite
def idx_files(draw):
    """Valid, truncated, mislabelled and random IDX files, gzip or not."""
    kind = draw(st.sampled_from(["valid", "mutated", "random"]))
    if kind == "random":
        raw = draw(st.binary(max_size=400))
    else:
        n = draw(st.integers(0, 4))
        side = draw(st.sampled_from([28, 27, 1, 0]))
        dims = [n, side, side]
        body = bytes(n * side * side)
        magic = draw(st.sampled_from([0x803, 0x801, 0x802, 0x1803, 0x0]))
        raw = _idx_bytes(dims, body, magic)
        if kind == "mutated":
            cut = draw(st.integers(0, len(raw)))
            raw = raw[:cut] + draw(st.binary(max_size=20))
    if draw(st.booleans()):
        raw = gzip.compress(raw, mtime=0)
        if draw(st.booleans()):
            raw = raw[: draw(st.integers(0, len(raw)))]
    return raw


def feed_idx(raw: bytes) -> None:
    from electra.image.idx import read_idx_images

    with scratch() as tmp:
        path = tmp / "train-images-idx3-ubyte.gz"
        path.write_bytes(raw)
        read_idx_images(path)


@st.composite
def arrays(draw):
    """Arrays of every dtype, shape and range a user may hand to ``image eval`` as .npy."""
    dtype = draw(st.sampled_from([np.uint8, np.int16, np.int64, np.float16, np.float32, np.float64, np.bool_,
                                  np.complex64]))
    shape = draw(st.sampled_from([(2, 28, 28), (3, 1, 28, 28), (0, 28, 28), (2, 32, 32), (28, 28), (2, 28, 28, 3),
                                  (1, 2, 28, 28)]))
    fill = draw(st.sampled_from([0.0, 0.5, 1.0, -1.0, 255.0, 1e6, -1e6, float("nan"), float("inf")]))
    with np.errstate(all="ignore"):
        array = np.full(shape, fill).astype(dtype)
    if array.size and draw(st.booleans()):
        value = draw(st.floats(allow_nan=True, allow_infinity=True, width=16))
        with np.errstate(all="ignore"):
            try:
                array.flat[0] = value
            except (ValueError, OverflowError):   # nan/inf into an integer array: keep the fill
                pass
    return array


def feed_array(array: np.ndarray) -> None:
    from electra.image.evaluate import images_from_array

    images_from_array(array, "fuzz.npy")


def feed_npy_file(raw: bytes) -> None:
    from electra.image.evaluate import load_target

    with scratch() as tmp:
        (tmp / "x.npy").write_bytes(raw)
        load_target(tmp / "x.npy", n=2)


@st.composite
def npy_files(draw):
    if draw(st.booleans()):
        buffer = io.BytesIO()
        np.save(buffer, draw(arrays()), allow_pickle=False)
        raw = buffer.getvalue()
        return raw[: draw(st.integers(0, len(raw)))] if draw(st.booleans()) else raw
    return draw(st.binary(max_size=300))


@st.composite
def image_files(draw):
    """PNG/JPEG/GIF bytes of odd modes and sizes, truncated ones, and garbage."""
    from PIL import Image

    kind = draw(st.sampled_from(["image", "truncated", "random"]))
    if kind == "random":
        return draw(st.sampled_from([".png", ".jpg", ".gif"])), draw(st.binary(max_size=200))
    mode = draw(st.sampled_from(["L", "RGB", "RGBA", "P", "1", "I", "F", "LA", "CMYK"]))
    size = (draw(st.integers(1, 64)), draw(st.integers(1, 64)))
    fmt = draw(st.sampled_from(["PNG", "GIF", "JPEG", "TIFF"]))
    if fmt == "JPEG" and mode not in ("L", "RGB", "CMYK"):
        mode = "RGB"
    buffer = io.BytesIO()
    try:
        Image.new(mode, size).save(buffer, format=fmt)
    except (OSError, ValueError):
        Image.new("L", size).save(buffer, format="PNG")
        fmt = "PNG"
    raw = buffer.getvalue()
    if kind == "truncated":
        raw = raw[: draw(st.integers(0, max(0, len(raw) - 1)))]
    return {"PNG": ".png", "GIF": ".gif", "JPEG": ".jpg", "TIFF": ".tif"}[fmt], raw


def feed_image_folder(item) -> None:
    from electra.image.data import load_folder, read_image_files

    suffix, raw = item
    with scratch() as tmp:
        (tmp / f"x{suffix}").write_bytes(raw)
        load_folder(str(tmp))
        read_image_files(tmp, fit=False)


@st.composite
def corpora(draw):
    """Text files: UTF-8, other encodings, NUL bytes, huge lines, empty, compressed garbage."""
    text = draw(st.text(max_size=200))
    kind = draw(st.sampled_from(["utf8", "latin1", "nul", "random", "long", "empty", "gzip", "bz2", "xz"]))
    if kind == "utf8":
        return text.encode("utf-8", errors="surrogatepass")
    if kind == "latin1":
        return text.encode("latin-1", errors="replace") + b"\xe9\xff"
    if kind == "nul":
        return text.encode("utf-8", errors="replace") + b"\x00"
    if kind == "long":
        return b"word " * draw(st.integers(1, 20000))
    if kind == "empty":
        return draw(st.sampled_from([b"", b"\n\n", b"   \n"]))
    if kind in ("gzip", "bz2", "xz"):   # whole or cut anywhere, with garbage after
        import bz2
        import lzma

        packed = {"gzip": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress}[kind](
            text.encode("utf-8", errors="replace"))
        return packed[: draw(st.integers(0, len(packed)))] + draw(st.binary(max_size=8))
    return draw(st.binary(max_size=300))


def feed_corpus(raw: bytes) -> None:
    from electra.text.corpus import check_text_files, prepare_corpus
    from electra.text.tokenizer import SPECIAL_TOKENS

    with scratch() as tmp:
        path = tmp / "corpus.txt"
        path.write_bytes(raw)
        check_text_files([path])
        (tmp / "vocab.txt").write_text("\n".join(SPECIAL_TOKENS + ["word", "the", "a"]) + "\n")
        prepare_corpus([path], tmp / "vocab.txt", 16, tmp / "shards", progress=False)
        from electra.text.tokenizer import train_tokenizer

        train_tokenizer([path], 30, tmp / "trained", min_frequency=1)


@st.composite
def blimp_files(draw):
    """BLiMP-style .jsonl: good rows, rows missing or mistyping fields, broken JSON, binary, empty."""
    def row():
        fields = {"sentence_good": st.text(max_size=20), "sentence_bad": st.text(max_size=20),
                  "UID": st.text(max_size=8), "field": st.text(max_size=6)}
        chosen = draw(st.sets(st.sampled_from(sorted(fields))))
        value = {k: draw(fields[k] if draw(st.booleans()) else st.one_of(st.integers(), st.none())) for k in chosen}
        return json.dumps(value).encode()

    lines = [row() if draw(st.booleans()) else draw(st.binary(max_size=30)) for _ in range(draw(st.integers(0, 4)))]
    return b"\n".join(lines)


def feed_blimp(raw: bytes) -> None:
    from electra.text.blimp import read_blimp

    with scratch() as tmp:
        (tmp / "phenomenon.jsonl").write_bytes(raw)
        read_blimp(tmp, per_phenomenon=2)


@st.composite
def tokenizer_files(draw):
    from electra.text.tokenizer import SPECIAL_TOKENS

    kind = draw(st.sampled_from(["vocab", "json", "random"]))
    if kind == "vocab":
        tokens = draw(st.lists(st.text(min_size=0, max_size=6), max_size=12))
        if draw(st.booleans()):
            tokens = SPECIAL_TOKENS + tokens
        return "vocab.txt", "\n".join(tokens).encode("utf-8", errors="surrogatepass")
    if kind == "json":
        value = draw(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                                  lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                                      st.sampled_from(["model", "vocab", "type", "normalizer", "added_tokens"]),
                                      inner, max_size=3), max_leaves=8))
        return "tokenizer.json", json.dumps(value).encode()
    return draw(st.sampled_from(["vocab.txt", "tokenizer.json"])), draw(st.binary(max_size=200))


def feed_tokenizer(item) -> None:
    from electra.text.tokenizer import load_tokenizer

    name, raw = item
    with scratch() as tmp:
        (tmp / name).write_bytes(raw)
        load_tokenizer(tmp / name)


@st.composite
def manifests(draw):
    """A shards folder: a manifest with missing, mistyped or lying fields, and shard files of any size."""
    good = {"format": "electra-shards-1", "seq_len": 8, "dtype": "uint16", "vocab_size": 10, "tokenizer_hash": "x",
            "special_ids": {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}, "rows": 2, "tokens": 16,
            "documents": 1, "shards": [{"file": "shard-00000.bin", "rows": 2}]}
    manifest = dict(good)
    for key in draw(st.lists(st.sampled_from(sorted(good)), max_size=3)):
        manifest[key] = draw(st.none() | st.integers(-5, 70000) | st.text(max_size=8) | st.just([]) | st.just({}))
    shard = bytes(2 * 8 * 2) if draw(st.booleans()) else draw(st.binary(max_size=64))   # 2 rows of 8 uint16
    raw = json.dumps(manifest).encode() if draw(st.integers(0, 5)) else draw(st.binary(max_size=50))
    return raw, shard


def feed_manifest(item) -> None:
    from electra.text.corpus import TokenShards

    raw, shard = item
    with scratch() as tmp:
        (tmp / "manifest.json").write_bytes(raw)
        (tmp / "shard-00000.bin").write_bytes(shard)
        shards = TokenShards(tmp)
        shards.batches(1, 0)(0)


@st.composite
def tsv_files(draw):
    rows = draw(st.lists(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8),
                                  max_size=5), max_size=6))
    text = "\n".join("\t".join(row) for row in rows)
    task = draw(st.sampled_from(["cola", "sst-2", "mrpc", "sts-b", "rte", "mnli", "qqp", "wnli"]))
    if draw(st.booleans()):   # well-formed SST-2 rows, with odd text and labels
        task = "sst-2"
        labels = st.sampled_from(["0", "1", "2", "", "x"])
        text = "sentence\tlabel\n" + "\n".join(f"{t}\t{draw(labels)}" for t in rows and [r[0] if r else "" for r in rows])
    return task, text.encode("utf-8") if draw(st.integers(0, 4)) else draw(st.binary(max_size=100))


def feed_tsv(item) -> None:
    from electra.text.tasks import get_task, read_split

    task_name, raw = item
    task = get_task(task_name)
    with scratch() as tmp:
        (tmp / task.folder).mkdir()
        (tmp / task.folder / "train.tsv").write_bytes(raw)
        read_split(task, tmp, "train.tsv")


@st.composite
def config_files(draw):
    from electra.image.config import ImageConfig
    from electra.config import field_names

    keys = field_names(ImageConfig) + ["nonsense", ""]
    values = st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=True) | \
        st.text(max_size=8) | st.lists(st.integers(), max_size=2)
    body = draw(st.dictionaries(st.sampled_from(keys), values, max_size=4))
    suffix = draw(st.sampled_from([".json", ".toml"]))
    if suffix == ".toml":
        lines = [f"{k} = {json.dumps(v)}" for k, v in body.items()] if draw(st.booleans()) else \
            [draw(st.text(max_size=30))]
        return suffix, "\n".join(lines).encode("utf-8", errors="surrogatepass")
    return suffix, json.dumps(body).encode() if draw(st.integers(0, 4)) else draw(st.binary(max_size=60))


def feed_config_file(item) -> None:
    from electra.config import apply_overrides, load_config_file
    from electra.image.config import preset_config

    suffix, raw = item
    with scratch() as tmp:
        (tmp / f"c{suffix}").write_bytes(raw)
        apply_overrides(preset_config("dcgan"), load_config_file(tmp / f"c{suffix}"))


@st.composite
def overrides(draw):
    """``key=value`` words as typed on a command line."""
    from electra.config import field_names
    from electra.image.config import ImageConfig
    from electra.text.config import TextConfig

    track = draw(st.sampled_from(["image", "text"]))
    keys = field_names(ImageConfig if track == "image" else TextConfig) + ["widht", "--lr", "x"]
    word = st.sampled_from(["0", "-1", "1e9", "nan", "inf", "-inf", "true", "yes", "none", "1,2", "", "3.5",
                            "999999999999999999999", "dcgan", "1_000"]) | st.text(max_size=6)
    return track, [f"{draw(st.sampled_from(keys))}={draw(word)}" for _ in range(draw(st.integers(1, 3)))]


def feed_overrides(item) -> None:
    from electra.config import apply_overrides, parse_assignments

    track, words = item
    if track == "image":
        from electra.image.config import preset_config
        apply_overrides(preset_config("dcgan"), parse_assignments(words))
    else:
        from electra.text.config import preset_config
        apply_overrides(preset_config("tiny"), parse_assignments(words))


@st.composite
def run_folders(draw):
    """A run folder whose config.json, state.json or tensor files are missing, truncated, flipped or foreign."""
    part = draw(st.sampled_from(["config", "state", "model", "optimizer", "track"]))
    return part, draw(st.integers(0, 10**6)), draw(st.binary(max_size=40))


_RUN_TEMPLATE: dict = {}


def _template_run(root: Path) -> Path:
    """One tiny real image run, trained once per process and copied for each input."""
    if "path" not in _RUN_TEMPLATE:
        from conftest import make_digits
        from electra.config import apply_overrides
        from electra.image.config import preset_config
        from electra.image.data import ImageSet
        from electra.image.train import train_image

        import torch

        images, labels = make_digits(32, seed=1)
        data = ImageSet(torch.from_numpy(images), torch.from_numpy(labels.astype("int64")), "fuzz digits")
        cfg = apply_overrides(preset_config("dcgan"), {"width": 4, "batch_size": 16, "steps": 1, "grid_size": 4})
        keep = Path(tempfile.mkdtemp(prefix="fuzz-run-"))
        train_image(cfg, out=str(keep / "run"), data=data, progress=False)
        _RUN_TEMPLATE["path"] = keep / "run"
    copy = root / "run"
    shutil.copytree(_RUN_TEMPLATE["path"], copy)
    return copy


def feed_run_folder(item) -> None:
    from electra.image.train import load_run

    part, position, junk = item
    with scratch() as tmp:
        run = _template_run(tmp)
        target = {"config": run / "config.json", "track": run / "config.json",
                  "state": run / "checkpoints/last/state.json",
                  "model": run / "checkpoints/last/model.safetensors",
                  "optimizer": run / "checkpoints/last/optimizer.safetensors"}[part]
        if part == "track":
            values = json.loads(target.read_text())
            values["track"] = junk.decode("latin-1")
            target.write_text(json.dumps(values))
        else:
            data = bytearray(target.read_bytes())
            if junk and data:
                at = position % len(data)
                data[at:at + len(junk)] = junk
            else:
                data = data[: position % (len(data) + 1)]
            target.write_bytes(bytes(data))
        load_run(run)
        from electra.core.checkpoint import find_checkpoint, read_checkpoint_state, read_tensors

        ckpt = find_checkpoint(run)
        read_tensors(ckpt / "optimizer.safetensors", read_checkpoint_state(ckpt).get("sha256", {})
                     .get("optimizer.safetensors"))


TARGETS = {
    "IDX files": (idx_files(), feed_idx),
    "arrays for eval": (arrays(), feed_array),
    ".npy files": (npy_files(), feed_npy_file),
    "image folders": (image_files(), feed_image_folder),
    "text corpora (plain, gzip, bzip2, xz)": (corpora(), feed_corpus),
    "BLiMP jsonl": (blimp_files(), feed_blimp),
    "tokenizer files": (tokenizer_files(), feed_tokenizer),
    "manifests and shards": (manifests(), feed_manifest),
    "GLUE TSVs": (tsv_files(), feed_tsv),
    "config files": (config_files(), feed_config_file),
    "key=value overrides": (overrides(), feed_overrides),
    "run folders and checkpoints": (run_folders(), feed_run_folder),
}


def outcome(feed, item) -> str:
    """'accepted', 'clean error' (UserError, one line) or 'other: TYPE: message' for one input."""
    try:
        feed(item)
    except UserError as exc:
        return "clean error" if "\n" not in str(exc) and str(exc).strip() else f"other: multi-line UserError {exc!r}"
    except Exception as exc:  # noqa: BLE001 — any other exception is the finding
        return f"other: {type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"
    return "accepted"
