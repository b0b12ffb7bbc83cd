import json

import numpy as np
import pytest

from electra.errors import UserError
from electra.image.evaluate import evaluate, images_from_array
from electra.image.metrics import class_coverage, fid, frechet_distance, kid, precision_recall

from conftest import make_digits
from test_cli import assert_one_line_error, run_cli


def test_fid_of_a_set_with_itself_is_zero():
    x = np.random.default_rng(0).normal(size=(500, 8))
    assert abs(fid(x, x)) < 1e-8


def test_frechet_distance_closed_form_for_diagonal_gaussians():
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    mu1, mu2 = np.zeros(3), np.array([1.0, 2.0, 0.0])
    expected = 5.0 + sum(a + b - 2 * np.sqrt(a * b))
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-9)


def test_fid_of_shifted_samples_approaches_the_shift():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(20000, 4)), rng.normal(size=(20000, 4)) + np.array([3.0, 0, 0, 0])
    assert fid(x, y) == pytest.approx(9.0, abs=0.15)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(600, 4)), rng.normal(size=(600, 4))
    assert abs(kid(x, y, subset_size=300)) < 0.05
    assert kid(x, y + 2, subset_size=300) > 1.0


def test_precision_recall_on_toy_clouds():
    rng = np.random.default_rng(3)
    real = rng.normal(size=(400, 2))
    same = rng.normal(size=(400, 2))
    p, r = precision_recall(real, same)
    assert p > 0.9 and r > 0.9
    far = rng.normal(size=(400, 2)) + 50
    assert precision_recall(real, far) == (0.0, 0.0)
    collapsed = rng.normal(size=(400, 2)) * 0.01  # mode collapse onto the centre: precise, poor recall
    p, r = precision_recall(real, collapsed)
    assert p > 0.95 and r < 0.2


def test_class_coverage_on_hand_made_histograms():
    uniform = np.eye(10)[np.arange(1000) % 10]
    cov = class_coverage(uniform)
    assert cov["classes_covered"] == 10 and cov["class_kl"] == pytest.approx(0.0) and cov["confidence"] == 1.0
    half = np.eye(10)[np.array([0] * 500 + [1] * 495 + [2] * 5)]
    cov = class_coverage(half)
    assert cov["classes_covered"] == 2  # class 2 holds 0.5% < 1%
    expected_kl = 0.5 * np.log(5) + 0.495 * np.log(4.95) + 0.005 * np.log(0.05)
    assert cov["class_kl"] == pytest.approx(expected_kl)


def test_value_ranges():
    assert images_from_array(np.full((2, 28, 28), 1.0), "x").max() == 255
    assert images_from_array(np.full((2, 28, 28), -1.0), "x").max() == 0
    assert images_from_array(np.full((2, 1, 28, 28), 128, np.uint8), "x").shape == (2, 28, 28)
    with pytest.raises(UserError, match="values span"):
        images_from_array(np.full((2, 28, 28), 1000.0), "x")
    with pytest.raises(UserError, match="shape"):
        images_from_array(np.zeros((2, 32, 32)), "x")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_eval_npy_and_png_folder_and_classifier_cache(mnist_dir, tmp_path, cache, monkeypatch):
    from PIL import Image

    images, _ = make_digits(40, seed=5)
    np.save(tmp_path / "gen.npy", images)
    report = evaluate(tmp_path / "gen.npy", "mnist", str(mnist_dir), classifier_steps=30, progress=False)
    assert report["generated"]["n"] == 40 and report["real_floor"]["n"] == 40
    for key in ("fid", "kid", "precision", "recall", "classes_covered", "class_kl", "confidence"):
        assert key in report["generated"]
    assert json.loads((tmp_path / "gen.eval.json").read_text())["generated"]["fid"] == report["generated"]["fid"]
    assert list((cache / "electra" / "classifiers").glob("mnist-*.safetensors"))

    # The second evaluation reuses the cached classifier instead of training one.
    import electra.image.classifier as classifier

    monkeypatch.setattr(classifier, "train_classifier", lambda *a, **k: pytest.fail("retrained"))
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, img in enumerate(images[:10]):
        Image.fromarray(img).save(folder / f"{i}.png")
    report2 = evaluate(folder, "mnist", str(mnist_dir), classifier_steps=30, progress=False)
    assert report2["generated"]["n"] == 10
    assert report2["classifier_test_accuracy"] == report["classifier_test_accuracy"]


def test_eval_of_a_vae_run_reports_reconstruction(mnist_dir, tmp_path, cache):
    from electra.config import apply_overrides
    from electra.image.config import preset_config
    from electra.image.train import train_image

    from conftest import TINY

    run = train_image(apply_overrides(preset_config("vae"), {**TINY, "data_dir": str(mnist_dir), "steps": 3}),
                      out=str(tmp_path / "vae"), progress=False)
    report = evaluate(run, n=20, classifier_steps=10, progress=False)
    assert set(report["autoencoder"]) == {"reconstruction_nll", "reconstruction_mse", "neg_elbo"}
    assert report["autoencoder"]["neg_elbo"] >= report["autoencoder"]["reconstruction_nll"]
    assert (run / "eval.json").is_file()


def test_probe_on_a_tiny_run(mnist_dir, tmp_path):
    from electra.config import apply_overrides
    from electra.image.config import preset_config
    from electra.image.probe import probe
    from electra.image.train import train_image

    from conftest import TINY

    run = train_image(apply_overrides(preset_config("dcgan"), {**TINY, "data_dir": str(mnist_dir), "steps": 3}),
                      out=str(tmp_path / "gan"), progress=False)
    result = probe(run, n_train=96)
    for key in ("trained_discriminator_accuracy", "random_discriminator_accuracy"):
        assert 0.0 <= result[key] <= 1.0
    # the synthetic classes are bar angles: even random conv features separate them far above chance
    assert result["random_discriminator_accuracy"] > 0.3


def _npy(array):
    def make(p):
        np.save(p / "x.npy", array)
        return p / "x.npy"
    return make


def _garbage(p):
    (p / "x.npy").write_bytes(b"garbage")
    return p / "x.npy"


def _empty(p):
    (p / "empty").mkdir()
    return p / "empty"


@pytest.mark.parametrize("make,fragment", [
    (_npy(np.zeros((5, 32, 32), np.uint8)), "expected N×28×28"),
    (_npy(np.full((5, 28, 28), 7e3)), "values span"),
    (_garbage, "not a readable .npy"),
    (_empty, "holds no images"),
    (lambda p: p / "missing.npy", "does not exist"),
])
def test_eval_bad_input(capsys, tmp_path, make, fragment):
    target = make(tmp_path)
    code, _, err = run_cli(capsys, "image", "eval", str(target))
    assert_one_line_error(code, err, fragment)


def test_eval_grid_png_given_as_single_images(capsys, tmp_path):
    from electra.image.pictures import save_grid

    (tmp_path / "pngs").mkdir()
    save_grid(make_digits(16)[0], tmp_path / "pngs" / "grid.png")
    code, _, err = run_cli(capsys, "image", "eval", str(tmp_path / "pngs"))
    assert_one_line_error(code, err, "not 28x28", "a grid?")


def test_probe_needs_a_discriminator(capsys, mnist_dir, tmp_path):
    from test_cli import TINY_ARGS

    run = tmp_path / "vae"
    assert run_cli(capsys, "image", "train", "--preset", "vae", "--data-dir", str(mnist_dir), "--steps", "2",
                   "--out", str(run), *TINY_ARGS)[0] == 0
    code, _, err = run_cli(capsys, "image", "probe", str(run))
    assert_one_line_error(code, err, "has no discriminator")
