"""The semi-supervised GAN: the K+1 loss, the labelled draw, test error while training, classify, bad input."""

import json

import numpy as np
import pytest
import torch

from electra.config import apply_overrides
from electra.image.config import preset_config
from electra.image.semi_supervised import (NormalisedLinear, SSGANDiscriminator, labelled_indices,
                                           unsupervised_loss)
from electra.image.train import train_image

from test_cli import assert_one_line_error, run_cli


def test_the_unsupervised_loss_is_the_k_plus_one_class_likelihood():
    real, fake = torch.randn(5, 10), torch.randn(7, 10) * 3
    p_real = lambda logits: logits.exp().sum(1) / (logits.exp().sum(1) + 1)  # noqa: E731  the fake logit is 0
    expected = -0.5 * p_real(real).log().mean() - 0.5 * (1 - p_real(fake)).log().mean()
    assert unsupervised_loss(real, fake).item() == pytest.approx(expected.item(), rel=1e-5)


def test_labels_are_drawn_class_balanced_and_seeded():
    labels = torch.arange(1000) % 10
    a, b, c = labelled_indices(labels, 100, 0), labelled_indices(labels, 100, 0), labelled_indices(labels, 100, 1)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.bincount(labels[a], minlength=10).tolist() == [10] * 10 and len(set(a.tolist())) == 100


def test_the_data_dependent_initialisation_standardises_each_unit():
    torch.manual_seed(0)
    layer = NormalisedLinear(30, 8, train_scale=False)
    x = torch.randn(200, 30) * 3 + 1
    returned = layer.initialise_from(x)
    out = layer(x).detach()
    assert torch.allclose(out, returned, atol=1e-5)
    assert torch.allclose(out.mean(0), torch.zeros(8), atol=1e-5)
    assert torch.allclose(out.var(0, unbiased=False), torch.ones(8), atol=1e-4)
    w = layer.weight().detach()   # g·V/‖V‖: each unit's weight vector has norm g
    assert torch.allclose(w.norm(dim=1), layer.scale, atol=1e-5)


def test_hidden_scales_stay_as_initialised_and_only_the_output_scale_trains():
    torch.manual_seed(0)
    D = SSGANDiscriminator(hidden=(16, 8))
    D.initialise_from(torch.rand(64, 1, 28, 28) * 2 - 1)
    scales = [layer.scale.clone() for layer in D.hidden]
    head_scale = D.head.scale.detach().clone()
    optimizer = torch.optim.Adam(D.parameters(), lr=0.1)
    torch.nn.functional.cross_entropy(D(torch.rand(10, 1, 28, 28)), torch.arange(10)).backward()
    optimizer.step()
    assert all(torch.equal(a, layer.scale) for a, layer in zip(scales, D.hidden))
    assert not torch.equal(head_scale, D.head.scale.detach())
    assert {n for n, _ in D.named_buffers()} == {"hidden.0.scale", "hidden.1.scale"}


@pytest.fixture(scope="module")
def ss_run(tmp_path_factory):
    from conftest import write_mnist

    root = tmp_path_factory.mktemp("ss")
    mnist = write_mnist(root / "mnist", train=200, test=60)
    cfg = apply_overrides(preset_config("ssgan"), {"dataset": "mnist", "data_dir": str(mnist), "labels": 20,
                                                   "batch_size": 20, "epochs": 3, "log_every": 5, "grid_size": 4,
                                                   "lr": 1e-3})
    return train_image(cfg, out=str(root / "run"), progress=False), mnist


def test_the_run_records_its_labels_and_reports_test_error_each_epoch(ss_run):
    run, _ = ss_run
    drawn = json.loads((run / "labelled.json").read_text())
    assert drawn["count"] == 20 and sorted(np.bincount(drawn["labels"], minlength=10).tolist()) == [2] * 10
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    errors = [r["test_error"] for r in rows if "test_error" in r]
    assert len(errors) == 3 and all(0 <= e <= 1 for e in errors)
    assert any("L_supervised" in r for r in rows)


def test_classify_a_test_split_an_npy_and_a_png_folder(ss_run, capsys, tmp_path):
    from PIL import Image

    run, mnist = ss_run
    code, out, err = run_cli(capsys, "image", "classify", str(run), "--out", str(tmp_path / "test.csv"))
    assert code == 0, err
    assert "accuracy" in out and len((tmp_path / "test.csv").read_text().splitlines()) == 61
    from conftest import make_digits

    images, _ = make_digits(5, seed=9)
    np.save(tmp_path / "x.npy", images)
    code, out, err = run_cli(capsys, "image", "classify", str(run), str(tmp_path / "x.npy"))
    assert code == 0, err and "accuracy" not in out
    assert (tmp_path / "x.npy.predictions.csv").read_text().splitlines()[0] == "index,prediction,probability"
    (tmp_path / "pngs").mkdir()
    for i, img in enumerate(images):
        Image.fromarray(img).save(tmp_path / "pngs" / f"{i}.png")
    code, _, err = run_cli(capsys, "image", "classify", str(run), str(tmp_path / "pngs"))
    assert code == 0, err
    assert (tmp_path / "x.npy.predictions.csv").read_text() == (tmp_path / "pngs.predictions.csv").read_text()


@pytest.mark.parametrize("labels,fragment", [(5, "multiple of the 10 classes"), (6000, "needs 600 images of class")])
def test_impossible_label_counts(capsys, tmp_path, labels, fragment):
    code, _, err = run_cli(capsys, "image", "train", "--preset", "ssgan", "--labels", str(labels), "--steps", "1",
                           "--out", str(tmp_path / "run"))
    assert_one_line_error(code, err, fragment)
    assert not (tmp_path / "run").exists()


def test_classify_refuses_a_run_that_is_not_semi_supervised(capsys, tmp_path, mnist_dir):
    from conftest import TINY

    plain = train_image(apply_overrides(preset_config("dcgan"), {**TINY, "data_dir": str(mnist_dir), "steps": 2}),
                        out=str(tmp_path / "plain"), progress=False)
    code, _, err = run_cli(capsys, "image", "classify", str(plain))
    assert_one_line_error(code, err, "semi-supervised")


def test_unlabelled_weight_zero_trains_on_the_labelled_digits_alone():
    from electra.image.semi_supervised import SSGANDiscriminator, SSGANGenerator, SSGANObjective

    torch.manual_seed(0)
    gen, disc = SSGANGenerator(), SSGANDiscriminator()
    batch = {"unlabelled": torch.rand(6, 1, 28, 28) * 2 - 1, "labelled": (torch.rand(4, 1, 28, 28) * 2 - 1,
                                                                         torch.tensor([0, 1, 2, 3]))}
    noise = lambda n: torch.randn(n, 100)  # noqa: E731
    disc.eval()   # no Gaussian noise layers: the two losses are compared on the same function
    both, _ = SSGANObjective(gen, disc, noise).losses("discriminator", batch, {})
    alone, stats = SSGANObjective(gen, disc, noise, unlabelled_weight=0.0).losses("discriminator", batch, {})
    assert alone["discriminator"].item() == pytest.approx(stats["L_supervised"].item())
    assert both["discriminator"].item() > alone["discriminator"].item()   # the real/fake term is positive


def test_class_balance_adds_the_kl_of_the_mean_class_distribution_from_uniform():
    from electra.image.semi_supervised import SSGANGenerator, SSGANObjective, class_imbalance

    assert class_imbalance(torch.zeros(8, 10)).item() == pytest.approx(0.0, abs=1e-6)
    assert class_imbalance(torch.eye(10) * 30).item() == pytest.approx(0.0, abs=1e-6)   # confident, but even
    one_class = torch.zeros(8, 10)
    one_class[:, 9] = 30.0
    assert class_imbalance(one_class).item() == pytest.approx(np.log(10), rel=1e-4)      # all on one class
    logits = torch.randn(6, 10)
    mean = logits.softmax(1).mean(0)
    assert class_imbalance(logits).item() == pytest.approx(float((mean * (mean * 10).log()).sum()), rel=1e-5)

    torch.manual_seed(0)
    gen, disc = SSGANGenerator(), SSGANDiscriminator()
    disc.eval()   # no noise layers: the same function in both losses
    images = torch.rand(6, 1, 28, 28) * 2 - 1
    batch = {"unlabelled": images, "labelled": (images[:4], torch.tensor([0, 1, 2, 3]))}
    fake = {"fake": gen(torch.randn(6, 100))}
    noise = lambda n: torch.randn(n, 100)  # noqa: E731
    plain, _ = SSGANObjective(gen, disc, noise).losses("discriminator", batch, dict(fake))
    balanced, stats = SSGANObjective(gen, disc, noise, class_balance=0.5).losses("discriminator", batch, dict(fake))
    with torch.no_grad():
        expected = plain["discriminator"] + 0.5 * class_imbalance(disc(images))
    assert balanced["discriminator"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert stats["class_imbalance"].item() > 0


def test_the_papers_generator_sees_uniform_noise_and_has_no_batch_norm_scale():
    from electra.image.semi_supervised import SSGANGenerator

    torch.manual_seed(0)
    paper, ours = SSGANGenerator(uniform_noise=True, bn_scale=False), SSGANGenerator()
    seen = []
    paper.net[0].register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    images = paper(torch.randn(4000, 100))
    u = seen[0]
    assert images.shape == (4000, 1, 28, 28) and 0 <= u.min() and u.max() <= 1
    # uniform on [0, 1]: mean 1/2, variance 1/12, a tenth of the values in each tenth
    assert u.mean().item() == pytest.approx(0.5, abs=0.01) and u.var().item() == pytest.approx(1 / 12, rel=0.03)
    assert torch.histc(u, bins=10, min=0, max=1).div(u.numel()).sub(0.1).abs().max() < 0.01
    names = {n for n, _ in paper.named_parameters()}
    assert not any(n.endswith(".weight") for n in names if n.startswith(("net.1.", "net.4.")))
    assert {"net.1.shift", "net.4.shift"} <= names and "net.1.weight" in {n for n, _ in ours.named_parameters()}


def test_the_papers_initial_generator_is_a_sigmoid_of_unit_scale_over_glorot_layers():
    from electra.image.semi_supervised import SSGANGenerator

    torch.manual_seed(0)
    paper, ours = SSGANGenerator(init="paper"), SSGANGenerator()
    for gen in (paper, ours):
        gen.eval()   # fixed batch-norm statistics: the same function for the direct computation below
    z = torch.randn(64, 100)
    # the paper's output: sigmoid(h·(V/‖V‖)ᵀ + b) with scale 1 and bias 0, on [0, 1]; the track's range is 2·that − 1
    h = paper.net[:6](z)
    V = paper.net[6].parametrizations.weight.original1
    direct = 2 * torch.sigmoid(h @ (V / V.norm(dim=1, keepdim=True)).T) - 1
    assert torch.allclose(paper(z).flatten(1), direct, atol=1e-6)
    assert torch.all(paper.net[6].bias == 0)
    for layer, (n_in, n_out) in zip((paper.net[0], paper.net[3]), ((100, 500), (500, 500))):
        limit = (6 / (n_in + n_out)) ** 0.5   # Glorot-uniform: U(−limit, limit), variance limit²/3
        assert layer.weight.abs().max() <= limit
        assert layer.weight.var().item() == pytest.approx(limit ** 2 / 3, rel=0.05)
    # torch's default: tanh of the plain layer, whose scale is ‖V‖ of torch's initial weights (≈ 0.58, not 1)
    h = ours.net[:6](z)
    assert torch.allclose(ours(z).flatten(1), torch.tanh(ours.net[6](h)), atol=1e-6)
    assert ours.net[6].parametrizations.weight.original0.mean().item() == pytest.approx(0.577, abs=0.02)


def test_the_fresh_generator_step_matches_new_fakes_to_the_second_batch():
    from electra.image.objectives import Noise
    from electra.image.semi_supervised import SSGANDiscriminator, SSGANGenerator, SSGANObjective

    torch.manual_seed(0)
    gen, disc = SSGANGenerator(), SSGANDiscriminator(hidden=(16, 8))
    gen.eval(), disc.eval()   # no noise layers, fixed batch-norm statistics: one function throughout
    batch = {"unlabelled": torch.rand(6, 1, 28, 28) * 2 - 1, "second": torch.rand(6, 1, 28, 28) * 2 - 1,
             "labelled": (torch.rand(4, 1, 28, 28) * 2 - 1, torch.tensor([0, 1, 2, 3]))}
    noise = Noise(100, seed=3)
    fresh = SSGANObjective(gen, disc, noise, fresh_batch=True)
    cache = {}
    fresh.losses("discriminator", batch, cache)   # leaves the D step's fakes in the cache, as a training step does
    loss = fresh.losses("generator", batch, cache)[0]["generator"]
    fakes = gen(noise(6, stream="z_generator"))
    expected = (disc.features(batch["second"]).mean(0) - disc.features(fakes).mean(0)).square().mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    reused = SSGANObjective(gen, disc, noise).losses("generator", batch, dict(cache))[0]["generator"]
    assert reused.item() != pytest.approx(loss.item(), rel=1e-3)


def test_a_run_with_the_papers_generator_options_trains_and_records_them(tmp_path):
    from conftest import write_mnist

    mnist = write_mnist(tmp_path / "mnist", train=200, test=60)
    cfg = apply_overrides(preset_config("ssgan"), {
        "dataset": "mnist", "data_dir": str(mnist), "labels": 20, "batch_size": 20, "steps": 4, "log_every": 2,
        "grid_size": 4, "g_noise": "uniform", "g_bn_scale": False, "g_fresh_batch": True})
    run = train_image(cfg, out=str(tmp_path / "run"), progress=False)
    saved = json.loads((run / "config.json").read_text())
    assert (saved["g_noise"], saved["g_bn_scale"], saved["g_fresh_batch"]) == ("uniform", False, True)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["L_G"]) for r in rows if "L_G" in r) and any("L_G" in r for r in rows)


@pytest.mark.parametrize("preset,override,fragment", [
    ("ssgan", "unlabelled_weight=-1", "unlabelled_weight must be 0 or more"),
    ("ssgan", "d_ema=1", "d_ema must lie in [0, 1)"),
    ("dcgan", "d_ema=0.9", "d_ema is an option of objective ssgan"),
    ("ssgan", "adam_eps=0", "adam_eps must be positive"),
    ("ssgan", "g_noise=normal", "g_noise must be gaussian or uniform"),
    ("ssgan", "g_init=glorot", "g_init must be torch or paper"),
    ("ssgan", "class_balance=-1", "class_balance must be 0 or more"),
    ("dcgan", "class_balance=1", "class_balance is an option of objective ssgan"),
    ("dcgan", "g_init=paper", "are options of objective ssgan"),
    ("dcgan", "g_fresh_batch=true", "are options of objective ssgan")])
def test_bad_semi_supervised_keys_are_one_line(capsys, tmp_path, preset, override, fragment):
    code, _, err = run_cli(capsys, "image", "train", "--preset", preset, override, "--steps", "1",
                           "--out", str(tmp_path / "x"))
    assert_one_line_error(code, err, fragment)
    assert not (tmp_path / "x").exists()


def test_the_recogniser_is_the_moving_average_of_the_discriminator(ss_run):
    from electra.image.evaluate import split_for_eval
    from electra.image.train import load_run, test_error

    run, mnist = ss_run
    system = load_run(run)
    live, average = system.modules["discriminator"], system.recogniser
    assert average is system.modules["discriminator_ema"]
    # the data-initialised hidden scales travel with the average; the trained weights are averaged, not copied
    assert all(torch.equal(b, dict(average.named_buffers())[n]) for n, b in live.named_buffers())
    assert not torch.equal(live.head.direction, average.head.direction)
    last = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
            if "test_error" in line][-1]
    test = split_for_eval("mnist", str(mnist))[1]
    assert last["test_error"] == pytest.approx(test_error(average, test))
    assert last["test_error_live"] == pytest.approx(test_error(live, test))


def test_the_preset_optimises_with_the_papers_adam_epsilon():
    from electra.image.train import build_optimizers, build_system

    # the paper's Adam adds its 1e-8 under the square root, which outside it is ~1e-4
    cfg = preset_config("ssgan")
    optimizers = build_optimizers(cfg, build_system(cfg))
    assert {g["eps"] for o in optimizers.values() for g in o.param_groups} == {1e-4}
    cfg = apply_overrides(preset_config("dcgan"), {"adam_eps": 3e-7})
    assert {g["eps"] for o in build_optimizers(cfg, build_system(cfg)).values() for g in o.param_groups} == {3e-7}


def test_each_step_moves_the_discriminator_average_towards_the_live_weights():
    from electra.image.train import ImageHooks, build_system, fixed_noise

    cfg = apply_overrides(preset_config("ssgan"), {"d_ema": 0.75})
    system = build_system(cfg)
    live, average = system.modules["discriminator"], system.modules["discriminator_ema"]
    before = [p.detach().clone() for p in average.parameters()]
    with torch.no_grad():
        for p in live.parameters():
            p.add_(1.0)
    ImageHooks(system, fixed_noise(cfg)).after_step(None, step=10_000)
    for old, new, target in zip(before, average.parameters(), live.parameters()):
        torch.testing.assert_close(new, 0.75 * old + 0.25 * target)


def test_augment_translates_the_labelled_images_and_leaves_the_unlabelled_and_the_fakes():
    from electra.image.augment import translate
    from electra.image.objectives import Noise
    from electra.image.semi_supervised import SSGANGenerator, SSGANObjective

    torch.manual_seed(0)
    gen, disc = SSGANGenerator(), SSGANDiscriminator(hidden=(16, 8))
    disc.eval()   # no noise layers: D's inputs are exactly what the objective gives it
    images = torch.rand(6, 1, 28, 28) * 2 - 1
    batch = {"unlabelled": images, "labelled": (images[:4], torch.tensor([0, 1, 2, 3]))}

    def inputs_seen(objective, update):
        seen = []
        handle = disc.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0].detach().clone()))
        cache = {"fake": gen(objective.noise(6))}
        objective.losses(update, batch, cache)
        handle.remove()
        return seen, cache["fake"].detach()

    augmented = SSGANObjective(gen, disc, Noise(100, 3, "cpu"), augment=("translation",))
    for objective in (SSGANObjective(gen, disc, Noise(100, 3, "cpu")), augmented):
        (labelled, unlabelled, fake_judged), fake = inputs_seen(objective, "discriminator")
        assert torch.equal(unlabelled, images) and torch.equal(fake_judged, fake)
    assert not torch.equal(labelled, images[:4])
    # each labelled image moved by a whole-pixel shift of at most ±3: one of the 49 shifts reproduces it exactly
    shifts = [torch.tensor([[dy, dx]]) for dy in range(-3, 4) for dx in range(-3, 4)]
    assert all(any(torch.equal(translate(g[None], s), j[None]) for s in shifts) for g, j in zip(images[:4], labelled))
    seen = []
    handle = disc.hidden[0].register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0].detach()))
    augmented.losses("generator", batch, {"fake": gen(augmented.noise(6))})
    handle.remove()
    assert torch.equal(seen[0], (images.flatten(1) + 1) * 0.5)   # feature matching compares the images as they are
