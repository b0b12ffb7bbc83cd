"""SIGKILL at a few moments of real training processes, each time resumed: the end is bit-identical to an
uninterrupted run and no file is left unreadable.  ``benchmarks/kill_resume.py`` does the same at many random
moments per job."""

import time

from resume_helpers import finished, killed_after, next_command, run_electra, same_weights, unreadable_files


def _image_argv(mnist_dir, out):
    return ["image", "train", "--dataset", "mnist", "--data-dir", str(mnist_dir), "width=4", "--batch-size", "16",
            "grid_size=4", "--steps", "150", "checkpoint_every=7", "log_every=3", "lr_decay=linear", "--quiet",
            "--out", str(out)]


def _timed(*argv):
    start = time.monotonic()
    result = run_electra(*argv)
    assert result.returncode == 0, result.stderr[-2000:]
    return time.monotonic() - start


def test_image_training_killed_three_times_ends_as_one_run(mnist_dir, tmp_path):
    full = tmp_path / "full"
    seconds = _timed(*_image_argv(mnist_dir, full))
    # moments as shares of an uninterrupted run: in start-up (before the folder exists), then inside training; on a
    # busy machine a run's length varies, so an attempt whose kills came too late starts again with earlier ones
    for attempt, scale in enumerate((1.0, 0.6, 0.35)):
        run = tmp_path / f"run-{attempt}"
        resume = ["image", "train", "--resume", str(run), "--quiet"]
        kills = 0
        for share in (0.1, 0.8, 0.9):
            if finished(run, 150):
                break
            kills += killed_after(scale * share * seconds, *next_command(run, _image_argv(mnist_dir, run), resume))
            assert not run.exists() or not unreadable_files(run)
        if kills >= 2:
            break
    else:
        raise AssertionError("fewer than two kills landed before the end of training in every attempt")
    if not finished(run, 150):
        result = run_electra(*next_command(run, _image_argv(mnist_dir, run), resume))
        assert result.returncode == 0, result.stderr[-2000:]
    assert same_weights(full, run) and not unreadable_files(run)


def test_text_pretraining_killed_mid_run_ends_as_one_run(corpus, tmp_path):
    argv = ["text", "pretrain", "--data", str(corpus["data"]), "embedding_size=16", "hidden_size=16", "num_layers=1",
            "num_heads=2", "intermediate_size=32", "max_position_embeddings=64", "--batch-size", "4", "--steps", "300",
            "warmup_steps=40", "checkpoint_every=25", "log_every=10", "plateau_check_step=0", "--quiet"]
    full = tmp_path / "full"
    seconds = _timed(*argv, "--out", str(full))
    for attempt, share in enumerate((0.5, 0.3, 0.15)):   # until a kill lands before the run's end
        run = tmp_path / f"run-{attempt}"
        if killed_after(share * seconds, *argv, "--out", str(run)) and not finished(run, 300):
            break
    else:
        raise AssertionError("no kill landed before the end of training")
    assert not unreadable_files(run)
    result = run_electra(*next_command(run, [*argv, "--out", str(run)], ["text", "pretrain", "--resume", str(run),
                                                                          "--quiet"]))
    assert result.returncode == 0, result.stderr[-2000:]
    assert same_weights(full, run) and not unreadable_files(run)
