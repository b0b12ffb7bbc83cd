"""log_to=tensorboard: the same scalars as metrics.jsonl, the epoch grids, the config as hyper-parameters; resume
purges what a stopped run wrote past its checkpoint."""

import shutil

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from electra.config import apply_overrides
from electra.core.metrics import read_metrics
from electra.image.config import preset_config
from electra.image.train import train_image
from conftest import TINY
from test_cli import assert_one_line_error, run_cli
from text_fixtures import tiny_config


def _events(run):
    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def _scalars(acc, tag):
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def test_image_run_logs_the_metrics_rows_grids_and_config(mnist_dir, tmp_path):
    # 96 images / batch 16 = 6 steps per epoch: 12 steps give two epoch grids
    cfg = apply_overrides(preset_config("dcgan"), {**TINY, "data_dir": str(mnist_dir), "steps": 12,
                                                   "log_to": "tensorboard"})
    run = train_image(cfg, out=str(tmp_path / "run"), progress=False)
    acc = _events(run)
    rows = read_metrics(run / "metrics.jsonl")
    for key in ("L_D", "L_G", "D(x)", "D(G(z))", "L_ELECTRA"):
        want = [(r["step"], r[key]) for r in rows if key in r]
        got = _scalars(acc, key)
        assert [s for s, _ in got] == [s for s, _ in want]
        assert all(abs(a - b) < 1e-5 * max(1, abs(b)) for (_, a), (_, b) in zip(got, want))
    assert [e.step for e in acc.Images("samples")] == [6, 12, 12]   # each epoch's grid and the final one
    assert "config/text_summary" in acc.Tags()["tensors"]
    plugins = acc.PluginTagToContent("hparams")
    assert plugins, "the hyper-parameters summary is missing"


def test_a_resumed_text_run_purges_the_events_past_its_checkpoint(corpus, tmp_path):
    from electra.text.pretrain import pretrain

    cfg = tiny_config(steps=6, checkpoint_every=100, log_to="tensorboard")
    run = pretrain(cfg, data=str(corpus["data"]), out=str(tmp_path / "run"), progress=False, stop_at=3)
    shutil.copytree(run / "checkpoints" / "last", tmp_path / "at-3")
    pretrain(resume=str(run), progress=False, stop_at=5)
    # as if killed after step 5's rows but before its checkpoint: the run goes back to step 3
    shutil.rmtree(run / "checkpoints" / "last")
    shutil.copytree(tmp_path / "at-3", run / "checkpoints" / "last")
    pretrain(resume=str(run), progress=False)
    rows = [(r["step"], r["disc_loss"]) for r in read_metrics(run / "metrics.jsonl") if "disc_loss" in r]
    got = _scalars(_events(run), "disc_loss")
    assert [s for s, _ in got] == [s for s, _ in rows] == list(range(1, 7))
    assert all(abs(a - b) < 1e-5 for (_, a), (_, b) in zip(got, rows))


def test_jsonl_runs_write_no_event_files_and_a_bad_sink_is_refused(mnist_dir, tmp_path, capsys):
    cfg = apply_overrides(preset_config("dcgan"), {**TINY, "data_dir": str(mnist_dir), "steps": 2})
    run = train_image(cfg, out=str(tmp_path / "run"), progress=False)
    assert not (run / "tensorboard").exists()
    code, _, err = run_cli(capsys, "image", "train", "--steps", "1", "log_to=wandb", "--out", str(tmp_path / "x"))
    assert_one_line_error(code, err, "log_to must be one of jsonl, tensorboard")
    assert not (tmp_path / "x").exists()
