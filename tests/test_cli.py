"""The command line: every user mistake is one line on stderr, exit code 2, and nothing half-written."""

import json
import subprocess
import sys

import numpy as np
import pytest

from electra.cli import main
from electra.image.idx import write_idx

TINY_ARGS = ["--dataset", "mnist", "width=4", "--batch-size", "16", "grid_size=4", "--quiet"]


def run_cli(capsys, *argv):
    capsys.readouterr()  # drop what fixtures printed
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code, err, *fragments):
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(("data:", "run folder:"))]
    assert len(lines) == 1, err
    assert lines[0].startswith("electra: error:")
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def trained_run(mnist_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    assert main(["image", "train", "--data-dir", str(mnist_dir), "--steps", "3", "--out", str(out), *TINY_ARGS]) == 0
    return out


def test_python_dash_m_electra_works():
    result = subprocess.run([sys.executable, "-m", "electra", "image", "presets"], capture_output=True, text=True)
    assert result.returncode == 0
    assert {"seed", "dcgan", "vae", "vaegan"} <= {line.split()[0] for line in result.stdout.splitlines()}


def test_help_lists_presets(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["image", "train", "--help"])
    assert exc.value.code == 0
    assert "vaegan" in capsys.readouterr().out


def test_sample_writes_png_npy_folder_and_strip(trained_run, tmp_path, capsys):
    assert main(["image", "sample", str(trained_run), "--n", "5", "--out", str(tmp_path / "x.npy")]) == 0
    arr = np.load(tmp_path / "x.npy")
    assert arr.shape == (5, 28, 28) and arr.dtype == np.uint8
    # same seed → same samples; another seed → others
    main(["image", "sample", str(trained_run), "--n", "5", "--out", str(tmp_path / "y.npy")])
    main(["image", "sample", str(trained_run), "--n", "5", "--out", str(tmp_path / "z.npy"), "--seed", "3"])
    assert (np.load(tmp_path / "y.npy") == arr).all() and not (np.load(tmp_path / "z.npy") == arr).all()
    assert main(["image", "sample", str(trained_run), "--n", "4", "--out", str(tmp_path / "g.png")]) == 0
    from PIL import Image

    assert Image.open(tmp_path / "g.png").size == (2 * (2 * 30 + 2),) * 2
    assert main(["image", "sample", str(trained_run), "--n", "3", "--out", str(tmp_path / "pngs")]) == 0
    assert sorted(p.name for p in (tmp_path / "pngs").iterdir()) == ["0.png", "1.png", "2.png"]
    assert main(["image", "sample", str(trained_run), "--n", "2", "--interpolate",
                 "--out", str(tmp_path / "strip.png")]) == 0
    assert Image.open(tmp_path / "strip.png").size == (2 * (10 * 30 + 2), 2 * (2 * 30 + 2))


def test_missing_data_folder(capsys, tmp_path):
    code, _, err = run_cli(capsys, "image", "train", "--data-dir", str(tmp_path / "nope"), "--out",
                           str(tmp_path / "run"), *TINY_ARGS)
    assert_one_line_error(code, err, "does not exist")
    assert not (tmp_path / "run").exists()


def test_corrupt_idx(capsys, mnist_dir, tmp_path):
    path = mnist_dir / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:200])
    code, _, err = run_cli(capsys, "image", "train", "--data-dir", str(mnist_dir), "--out", str(tmp_path / "run"),
                           *TINY_ARGS)
    assert_one_line_error(code, err, "train-images-idx3-ubyte.gz", "truncated")
    assert not (tmp_path / "run").exists()


def test_images_of_another_size(capsys, mnist_dir, tmp_path):
    write_idx(mnist_dir / "train-images-idx3-ubyte.gz", np.zeros((96, 32, 32), np.uint8))
    code, _, err = run_cli(capsys, "image", "train", "--data-dir", str(mnist_dir), "--out", str(tmp_path / "r"),
                           *TINY_ARGS)
    assert_one_line_error(code, err, "32x32")


def test_empty_image_folder(capsys, tmp_path):
    (tmp_path / "imgs").mkdir()
    code, _, err = run_cli(capsys, "image", "train", "--dataset", "folder", "--data-dir", str(tmp_path / "imgs"),
                           "--out", str(tmp_path / "run"), "--quiet")
    assert_one_line_error(code, err, "holds no images")


@pytest.mark.parametrize("argv,fragment", [
    (["image", "train", "--preset", "nope"], "unknown image preset 'nope'"),
    (["image", "train", "not_a_key=1"], "unknown config key 'not_a_key'"),
    (["image", "train", "--widht", "3"], "unknown config key 'widht'"),
    (["image", "train", "batch_size=many"], "expects int"),
    (["image", "train", "schedule=sideways"], "schedule must be one of"),
    (["image", "train", "--epochs", "0"], "epochs must be at least 1"),
    (["image", "train", "lr_decay=sideways"], "lr_decay must be one of"),
    (["image", "train", "lr_final=2"], "lr_final must lie in [0, 1]"),
    (["image", "train", "lr_decay_start=1"], "lr_decay_start must lie in [0, 1)"),
    (["image", "train", "--preset", "seed", "minibatch_std=true"], "minibatch_std is a dcgan discriminator option"),
    (["image", "train", "minibatch_group=-1"], "minibatch_group must be 0 (whole batch) or a group size"),
    (["image", "train", "d_width=0"], "width, d_width and noise_dim must be positive"),
    (["image", "train", "lr_d=0"], "learning rates (and lr_g_scale) must be positive"),
    (["image", "train", "lr_g_scale=-3"], "learning rates (and lr_g_scale) must be positive"),
    (["image", "train", "d_extra_convs=-1"], "d_extra_convs must be 0 or more"),
    (["image", "train", "--preset", "seed", "d_extra_convs=1"], "d_extra_convs is a dcgan discriminator option"),
    (["image", "train", "--config", "/nonexistent.json"], "config file not found"),
    (["image", "fly"], "invalid choice"),
])
def test_bad_config(capsys, argv, fragment):
    code, _, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, fragment)


def test_nonexistent_run_to_resume_or_sample(capsys, tmp_path):
    code, _, err = run_cli(capsys, "image", "train", "--resume", str(tmp_path / "ghost"))
    assert_one_line_error(code, err, "does not exist")
    code, _, err = run_cli(capsys, "image", "sample", str(tmp_path / "ghost"), "--out", str(tmp_path / "x.png"))
    assert_one_line_error(code, err, "does not exist")
    assert not (tmp_path / "x.png").exists()


def test_n_zero(capsys, trained_run, tmp_path):
    code, _, err = run_cli(capsys, "image", "sample", str(trained_run), "--n", "0", "--out", str(tmp_path / "x.npy"))
    assert_one_line_error(code, err, "--n must be at least 1")


def test_checkpoint_from_another_model(capsys, trained_run, tmp_path):
    config = json.loads((trained_run / "config.json").read_text())
    config["width"] = 8
    (trained_run / "config.json").write_text(json.dumps(config))
    code, _, err = run_cli(capsys, "image", "sample", str(trained_run), "--out", str(tmp_path / "x.npy"))
    assert_one_line_error(code, err, "does not fit the configured generator")
    assert not (tmp_path / "x.npy").exists()


def test_corrupt_checkpoint(capsys, trained_run, tmp_path):
    weights = trained_run / "checkpoints" / "last" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    code, _, err = run_cli(capsys, "image", "sample", str(trained_run), "--out", str(tmp_path / "x.npy"))
    assert_one_line_error(code, err, "model.safetensors", "does not match the checksum")


def test_resume_refuses_to_change_the_maths(capsys, trained_run):
    code, _, err = run_cli(capsys, "image", "train", "--resume", str(trained_run), "--lr", "0.1", "--steps", "5")
    assert_one_line_error(code, err, "cannot change lr when resuming")


def test_resume_with_a_finished_run(capsys, trained_run):
    code, _, err = run_cli(capsys, "image", "train", "--resume", str(trained_run), "--quiet")
    assert_one_line_error(code, err, "already reached step 3")


def test_out_folder_not_empty(capsys, trained_run, mnist_dir):
    before = sorted(p.name for p in trained_run.iterdir())
    code, _, err = run_cli(capsys, "image", "train", "--data-dir", str(mnist_dir), "--out", str(trained_run),
                           *TINY_ARGS)
    assert_one_line_error(code, err, "not empty")
    assert sorted(p.name for p in trained_run.iterdir()) == before
