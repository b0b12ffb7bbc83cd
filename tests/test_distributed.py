"""torchrun with 2 CPU processes (gloo): equivalence with one process and with gradient accumulation, rank-0-only
writes, resuming, a failing rank, and bf16 autocast on the CPU."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from electra.cli import main
from dist_helpers import torchrun

IMAGE = ["image", "train", "--preset", "seed", "--dataset", "mnist", "--steps", "3", "--quiet", "log_every=1",
         "lr=0.001"]


def weights(run):
    return load_file(str(run / "checkpoints" / "last" / "model.safetensors"))


def assert_same(a, b, atol=1e-5):  # Adam turns float-rounding gradient differences into ~1e-6 steps
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=atol, rtol=1e-5), k


@pytest.fixture(scope="module")
def image_runs(tmp_path_factory, mnist_dir_module):
    root = tmp_path_factory.mktemp("dist-img")
    data = ["--data-dir", str(mnist_dir_module)]
    assert main([*IMAGE, *data, "--batch-size", "16", "--out", str(root / "one")]) == 0
    assert main([*IMAGE, *data, "--batch-size", "8", "grad_accum=2", "--out", str(root / "accum")]) == 0
    result = torchrun([*IMAGE, *data, "--batch-size", "8", "--out", str(root / "two")])
    assert result.returncode == 0, result.stderr[-2000:]
    return root


@pytest.fixture(scope="module")
def mnist_dir_module(tmp_path_factory):
    from electra.image.idx import write_idx

    from conftest import make_digits

    folder = tmp_path_factory.mktemp("mnist")
    x, y = make_digits(96, seed=1)
    write_idx(folder / "train-images-idx3-ubyte.gz", x)
    write_idx(folder / "train-labels-idx1-ubyte.gz", y)
    return folder


def test_image_two_ranks_equal_one_process_and_accumulation(image_runs):
    one = weights(image_runs / "one")
    assert_same(one, weights(image_runs / "two"))
    assert_same(one, weights(image_runs / "accum"))


def test_only_rank_zero_writes(image_runs):
    rows = (image_runs / "two" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in rows] == [1, 2, 3]  # one row per step, not one per rank
    assert sorted(p.name for p in (image_runs / "two").iterdir()) == sorted(
        p.name for p in (image_runs / "one").iterdir())


def test_two_ranks_resume(image_runs, mnist_dir_module):
    run = image_runs / "two"
    result = torchrun(["image", "train", "--resume", str(run), "--steps", "5", "--quiet"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((run / "checkpoints/last/state.json").read_text())["step"] == 5


def test_a_failing_rank_fails_the_job_without_hanging(tmp_path, mnist_dir_module):
    from pathlib import Path

    script = str(Path(__file__).parent / "dist_fail.py")
    env_args = [*IMAGE, "--data-dir", str(mnist_dir_module), "--batch-size", "8", "--steps", "6",
                "--out", str(tmp_path / "run")]
    result = torchrun([script, *env_args], module="", timeout=180)
    assert result.returncode != 0
    assert "rank 1 failed on purpose" in result.stderr + result.stdout


def full_length_shards(folder, rows=64, seq=32, vocab=120):
    """Shards whose every row is full (no padding), so per-rank token means average to the global mean."""
    from electra.text.corpus import MANIFEST
    from electra.text.tokenizer import SPECIAL_TOKENS

    folder.mkdir()
    rng = np.random.default_rng(0)
    ids = rng.integers(len(SPECIAL_TOKENS), vocab, size=(rows, seq)).astype(np.uint16)
    ids[:, 0], ids[:, seq // 2], ids[:, -1] = 2, 3, 3
    ids.tofile(folder / "shard-00000.bin")
    (folder / "tokenizer").mkdir()
    (folder / "tokenizer" / "vocab.txt").write_text("\n".join(SPECIAL_TOKENS + [f"w{i}" for i in range(vocab - 5)]))
    manifest = {"format": "electra-shards-1", "seq_len": seq, "dtype": "uint16", "vocab_size": vocab,
                "tokenizer_hash": "test", "special_ids": {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4},
                "rows": rows, "tokens": rows * seq, "documents": rows,
                "shards": [{"file": "shard-00000.bin", "rows": rows}], "sources": []}
    (folder / MANIFEST).write_text(json.dumps(manifest))
    return folder


TEXT = ["text", "pretrain", "--preset", "tiny", "--steps", "3", "--quiet", "embedding_size=16", "hidden_size=16",
        "num_layers=1", "num_heads=2", "intermediate_size=32", "max_position_embeddings=64", "dropout=0",
        "warmup_steps=1", "log_every=1", "plateau_check_step=0"]


def test_text_two_ranks_equal_one_process_and_accumulation(tmp_path):
    data = ["--data", str(full_length_shards(tmp_path / "shards"))]
    assert main([*TEXT, *data, "--batch-size", "8", "--out", str(tmp_path / "one")]) == 0
    assert main([*TEXT, *data, "--batch-size", "4", "grad_accum=2", "--out", str(tmp_path / "accum")]) == 0
    result = torchrun([*TEXT, *data, "--batch-size", "4", "--out", str(tmp_path / "two")])
    assert result.returncode == 0, result.stderr[-2000:]
    one = weights(tmp_path / "one")
    assert_same(one, weights(tmp_path / "accum"), atol=1e-5)
    assert_same(one, weights(tmp_path / "two"), atol=1e-5)
    assert (tmp_path / "two" / "discriminator" / "model.safetensors").is_file()


def test_bf16_autocast_runs_on_cpu(tmp_path, mnist_dir):
    assert main(["image", "train", "--data-dir", str(mnist_dir), "--dataset", "mnist", "--steps", "2", "width=4",
                 "--batch-size", "16", "precision=bf16", "--quiet", "--out", str(tmp_path / "img")]) == 0
    row = json.loads((tmp_path / "img" / "metrics.jsonl").read_text().splitlines()[-1])
    assert np.isfinite(row["L_ELECTRA"])
    data = ["--data", str(full_length_shards(tmp_path / "shards"))]
    assert main([*TEXT, *data, "--batch-size", "4", "precision=bf16", "--out", str(tmp_path / "txt")]) == 0
    row = json.loads((tmp_path / "txt" / "metrics.jsonl").read_text().splitlines()[-1])
    assert np.isfinite(row["loss"]) and np.isfinite(row["disc_auc"])


def test_fp16_on_cpu_is_a_clear_error(capsys, tmp_path, mnist_dir):
    code = main(["image", "train", "--data-dir", str(mnist_dir), "--dataset", "mnist", "--steps", "1",
                 "precision=fp16", "--quiet", "--out", str(tmp_path / "r")])
    assert code == 2 and "fp16 needs a GPU" in capsys.readouterr().err
