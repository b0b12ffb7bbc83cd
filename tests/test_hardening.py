"""Runs that go wrong: non-finite losses, damaged checkpoints, a disk that refuses a write."""

import errno
import json

import pytest
import torch

from conftest import TINY
from test_cli import TINY_ARGS, assert_one_line_error, run_cli


def _train_args(mnist_dir, out, *extra):
    return ["image", "train", "--data-dir", str(mnist_dir), "--out", str(out), *TINY_ARGS, "log_every=1", *extra]


@pytest.fixture
def nan_from_step(monkeypatch):
    """Fault injection: the discriminator's loss turns NaN from a given step on."""
    from electra.image.objectives import GANObjective

    real = GANObjective.losses

    def arm(step):
        def losses(self, update, batch, cache):
            out, metrics = real(self, update, batch, cache)
            if update == "discriminator" and self.noise.random.step >= step:
                out = {k: v * float("nan") for k, v in out.items()}
            return out, metrics
        monkeypatch.setattr(GANObjective, "losses", losses)
    return arm


def test_a_nan_loss_stops_the_run_naming_the_step_and_the_last_good_checkpoint(capsys, mnist_dir, tmp_path,
                                                                                 nan_from_step):
    from electra.core.checkpoint import find_checkpoint, load_checkpoint
    from electra.image.config import preset_config
    from electra.config import apply_overrides
    from electra.image.train import build_optimizers, build_system

    nan_from_step(4)
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, *_train_args(mnist_dir, run, "--steps", "8", "checkpoint_every=3", "log_every=2"))
    assert_one_line_error(code, err, "at step 4 a loss or gradient turned NaN", "last good checkpoint is step 3")
    state = json.loads((run / "checkpoints/last/state.json").read_text())
    assert state["step"] == 3                                   # nothing written after the NaN
    cfg = apply_overrides(preset_config("dcgan"), {**TINY, "data_dir": str(mnist_dir)})
    system = build_system(cfg)
    load_checkpoint(find_checkpoint(run), system.modules, build_optimizers(cfg, system))
    assert all(torch.isfinite(p).all() for m in system.modules.values() for p in m.parameters())


def test_skip_policy_drops_non_finite_updates_and_keeps_training(capsys, mnist_dir, tmp_path, nan_from_step):
    nan_from_step(2)
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, *_train_args(mnist_dir, run, "--steps", "4", "on_nonfinite=skip"))
    assert code == 0, err
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["skipped_updates"] for r in rows] == [0.0, 0.0, 0.5, 0.5]   # D skipped, G stepped, from step 2
    from safetensors.torch import load_file
    assert all(torch.isfinite(t).all() for t in load_file(str(run / "checkpoints/last/model.safetensors")).values())


def test_a_flipped_byte_in_a_checkpoint_is_named(capsys, mnist_dir, tmp_path):
    run = tmp_path / "run"
    assert run_cli(capsys, *_train_args(mnist_dir, run, "--steps", "2"))[0] == 0
    weights = run / "checkpoints/last/model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0x01                                            # a tensor byte: the file still parses
    weights.write_bytes(bytes(data))
    code, _, err = run_cli(capsys, "image", "sample", str(run), "--out", str(tmp_path / "x.npy"))
    assert_one_line_error(code, err, "model.safetensors", "does not match the checksum")
    code, _, err = run_cli(capsys, "image", "train", "--resume", str(run), "--steps", "4", "--quiet")
    assert_one_line_error(code, err, "does not match the checksum")


def test_a_full_disk_during_a_checkpoint_keeps_the_previous_one(capsys, mnist_dir, tmp_path, monkeypatch):
    import electra.core.checkpoint as checkpoint

    real, calls = checkpoint.save_file, []

    def save_file(tensors, path, *a, **k):
        calls.append(path)
        if len(calls) > 2:                                     # the second checkpoint's first file
            raise OSError(errno.ENOSPC, "No space left on device", path)
        return real(tensors, path, *a, **k)

    monkeypatch.setattr(checkpoint, "save_file", save_file)
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, *_train_args(mnist_dir, run, "--steps", "4", "checkpoint_every=2"))
    assert_one_line_error(code, err, "could not write the step-4 checkpoint", "No space left on device",
                          "step 2 stays in place")
    monkeypatch.setattr(checkpoint, "save_file", real)
    assert json.loads((run / "checkpoints/last/state.json").read_text())["step"] == 2
    assert not [p.name for p in (run / "checkpoints").iterdir() if p.name != "last"]   # no temporary left
    code, _, err = run_cli(capsys, "image", "train", "--resume", str(run), "--quiet")
    assert code == 0, err


def test_one_process_at_a_time_writes_a_run_folder(capsys, mnist_dir, tmp_path):
    import subprocess
    import sys

    from electra.core.run import LOCK, _process_start

    run = tmp_path / "run"
    assert run_cli(capsys, *_train_args(mnist_dir, run, "--steps", "2"))[0] == 0
    assert not (run / LOCK).exists()                            # released when the run ends
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        import socket

        (run / LOCK).write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(),
                                            "started": _process_start(holder.pid)}))
        code, _, err = run_cli(capsys, "image", "train", "--resume", str(run), "--steps", "3", "--quiet")
        assert_one_line_error(code, err, "is in use by process", str(holder.pid))
        assert json.loads((run / "checkpoints/last/state.json").read_text())["step"] == 2
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone (a killed run): its lock is taken over
    code, _, err = run_cli(capsys, "image", "train", "--resume", str(run), "--steps", "3", "--quiet")
    assert code == 0, err
    assert json.loads((run / "checkpoints/last/state.json").read_text())["step"] == 3 and not (run / LOCK).exists()


@pytest.mark.parametrize("argv,fragment", [
    (["image", "train", "--lr", "inf"], "'lr' must be a finite number"),
    (["image", "train", "lr=nan"], "'lr' must be a finite number"),
    (["image", "train", "vae_beta=-inf"], "'vae_beta' must be a finite number"),
    (["image", "train", "width=100000000", "--quiet"], "GiB free; choose smaller sizes"),
])
def test_non_finite_and_impossible_sizes_are_refused(capsys, tmp_path, argv, fragment):
    code, _, err = run_cli(capsys, *argv, "--out", str(tmp_path / "run"))
    assert_one_line_error(code, err, fragment)
    assert not (tmp_path / "run").exists()


def test_an_impossible_text_model_is_refused_before_allocation(capsys, corpus, tmp_path):
    code, _, err = run_cli(capsys, "text", "pretrain", "--data", str(corpus["data"]), "hidden_size=4000000",
                           "num_heads=1", "--out", str(tmp_path / "run"), "--quiet")
    assert_one_line_error(code, err, "GiB free; choose smaller sizes")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("track,free_mb,big", [("image", 256, 2048), ("text", 64, 64)])
def test_a_batch_whose_activations_cannot_fit_is_refused_before_allocation(capsys, corpus, tmp_path, monkeypatch,
                                                                          track, free_mb, big):
    """The models fit (a few MB) but one batch's activations do not: with little memory free, a big batch is
    refused and a batch of 8 passes the same check."""
    from electra.core import memory

    monkeypatch.setattr(memory, "free_bytes", lambda device: free_mb * 2**20)
    source = ["image", "train"] if track == "image" else ["text", "pretrain", "--data", str(corpus["data"]),
                                                          "--seq-len", "32"]
    code, _, err = run_cli(capsys, *source, "--batch-size", str(big), "--steps", "1", "--out", str(tmp_path / "run"),
                           "--quiet")
    assert_one_line_error(code, err, "GiB of it activations", "choose a smaller batch size")
    assert not (tmp_path / "run").exists()
    code, _, err = run_cli(capsys, *source, "--batch-size", "8", "--steps", "1", "--out", str(tmp_path / "ok"),
                           "--quiet")
    assert code == 0, err


def test_a_decompression_bomb_in_an_image_folder(capsys, tmp_path, monkeypatch):
    from PIL import Image

    (tmp_path / "imgs").mkdir()
    Image.new("L", (64, 64)).save(tmp_path / "imgs" / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)   # 4,096 pixels > 2 × the limit: Pillow refuses it
    code, _, err = run_cli(capsys, "image", "train", "--dataset", "folder", "--data-dir", str(tmp_path / "imgs"),
                           "--out", str(tmp_path / "run"), "--quiet")
    assert_one_line_error(code, err, "cannot read image", "big.png")


def test_a_complex_valued_npy_is_refused(capsys, tmp_path):
    import numpy as np

    np.save(tmp_path / "x.npy", np.zeros((4, 28, 28), dtype=np.complex64))
    code, _, err = run_cli(capsys, "image", "eval", str(tmp_path / "x.npy"))
    assert_one_line_error(code, err, "complex64 values that are not finite real numbers")


def test_undecodable_bytes_on_the_command_line(capsys, tmp_path):
    import os

    text = os.fsdecode(b"the cat \xff\xfe sat")   # what Python makes of invalid UTF-8 in argv
    from electra.text.generate import _encode

    with pytest.raises(Exception) as exc:
        _encode(None, text, 16)
    from electra.errors import UserError

    assert isinstance(exc.value, UserError) and "not UTF-8 (at character 8)" in str(exc.value)


def test_threads_follow_the_free_cores_unless_told(monkeypatch):
    import electra.core.threads as threads

    before = torch.get_num_threads()
    try:
        monkeypatch.setattr(threads, "_allowed_cpus", lambda: [0, 1, 2, 3])
        monkeypatch.setattr(threads, "_quota", lambda: None)
        monkeypatch.setattr(threads, "idle_cpus", lambda cpus, seconds=0: 1)   # three of four cores busy
        assert threads.use_threads(0) is None                                  # OMP_NUM_THREADS (conftest) wins
        monkeypatch.delenv("OMP_NUM_THREADS")
        assert threads.use_threads(0) == 1 and torch.get_num_threads() == 1
        monkeypatch.setattr(threads, "idle_cpus", lambda cpus, seconds=0: 4)
        monkeypatch.setattr(threads, "_quota", lambda: 2.5)                     # a cgroup granting 2.5 CPUs
        assert threads.use_threads(0) == 2
        assert threads.use_threads(3) == 3                                      # threads=3 is obeyed
    finally:
        torch.set_num_threads(before)


def test_idle_cpus_sees_a_busy_core():
    import subprocess
    import sys

    from electra.core.threads import _allowed_cpus, idle_cpus

    cpus = _allowed_cpus()
    busy = subprocess.Popen([sys.executable, "-c", "import os; os.sched_setaffinity(0, {%d})\nwhile True: pass"
                             % cpus[0]])
    try:
        import time

        time.sleep(0.3)
        assert idle_cpus([cpus[0]], seconds=0.3) == 0
    finally:
        busy.kill()
        busy.wait()


def test_a_pickled_model_file_is_never_loaded(capsys, tmp_path):
    import pickle

    from transformers import ElectraConfig

    folder = tmp_path / "hf"
    ElectraConfig(vocab_size=50, embedding_size=8, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                  intermediate_size=16).save_pretrained(str(folder))
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"not": "weights"}))
    code, _, err = run_cli(capsys, "text", "detect", str(folder), "the cat sat.")
    assert_one_line_error(code, err, "cannot load", "as an ELECTRA discriminator")
