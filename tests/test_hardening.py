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
