"""DiffAugment: exact transforms, gradients through them, what D sees, sampling untouched, resume, bad configs."""

import pytest
import torch

from electra.config import apply_overrides
from electra.image.augment import BACKGROUND, augment, cutout, parse_policy, translate
from electra.image.config import preset_config
from electra.image.train import build_system, train_image

from conftest import TINY
from test_cli import assert_one_line_error, run_cli


def _dot(y, x):
    img = torch.full((1, 1, 28, 28), BACKGROUND)
    img[0, 0, y, x] = 1.0
    return img


def test_translation_moves_every_pixel_by_the_drawn_shift_and_fills_the_background():
    x = torch.cat([_dot(10, 10), _dot(0, 27)])
    out = translate(x, torch.tensor([[2, -1], [-3, 3]]))
    assert out[0, 0, 12, 9] == 1.0 and (out[0] == 1.0).sum() == 1
    assert (out[1] == 1.0).sum() == 0          # shifted out of the frame
    assert (out[1] == BACKGROUND).all()        # and the border that came in is background


def test_cutout_blanks_exactly_the_square():
    x = torch.rand(2, 1, 28, 28)
    out = cutout(x, torch.tensor([[3, 5], [14, 14]]), 14)
    inside = torch.zeros(28, 28, dtype=torch.bool)
    inside[3:17, 5:19] = True
    assert (out[0, 0][inside] == BACKGROUND).all() and torch.equal(out[0, 0][~inside], x[0, 0][~inside])
    assert (out[1, 0, 14:, 14:] == BACKGROUND).all() and torch.equal(out[1, 0, :14], x[1, 0, :14])


def test_augment_is_a_function_of_its_draw_and_passes_gradients():
    policy = parse_policy("translation,cutout,brightness,contrast")
    x = torch.rand(4, 1, 28, 28, requires_grad=True)
    u = torch.rand(4, 4, 2)
    a, b = augment(x, policy, lambda *tail: u), augment(x, policy, lambda *tail: u)
    assert torch.equal(a, b) and not torch.equal(a, x)
    a.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert augment(x, (), lambda *tail: u) is x


def test_the_discriminator_judges_augmented_reals_and_fakes_but_sampling_is_untouched():
    plain = build_system(apply_overrides(preset_config("dcgan"), {"width": 4, "ema": 0.0}))
    augmented = build_system(apply_overrides(preset_config("dcgan"), {"width": 4, "ema": 0.0,
                                                                     "augment": "translation,cutout"}))
    z = torch.randn(5, 100)
    with torch.no_grad():   # same weights, same samples (before training steps move batch-norm statistics)
        assert torch.equal(plain.sampler.eval()(z), augmented.sampler.eval()(z))
    augmented.sampler.train()
    seen = []
    augmented.objective.D.register_forward_pre_hook(lambda m, inputs: seen.append(inputs[0].detach()))
    real = torch.rand(6, 1, 28, 28) * 2 - 1
    augmented.objective.losses("discriminator", real, {})
    assert len(seen) == 2 and not torch.equal(seen[0], real)
    assert (seen[0] == BACKGROUND).float().mean() > (real == BACKGROUND).float().mean()   # cut-out squares
    from electra.image.sampling import sample_images

    assert sample_images(augmented.sampler, z).shape == (5, 28, 28)   # sampling calls G alone: no augmentation


def test_augmented_training_resumes_bit_identically(mnist_dir, tmp_path):
    from resume_helpers import assert_same_run, resume_in_new_process

    cfg = apply_overrides(preset_config("dcgan"), {**TINY, "data_dir": str(mnist_dir), "steps": 6, "log_every": 1,
                                                   "augment": "translation,cutout"})
    full = train_image(cfg, out=str(tmp_path / "full"), progress=False)
    part = train_image(cfg, out=str(tmp_path / "part"), progress=False, stop_at=3)
    resume_in_new_process("image", "train", part)
    assert_same_run(full, part)


@pytest.mark.parametrize("argv,fragment", [
    (["augment=rotate"], "augment must be none or a comma-separated list"),
    (["--preset", "vae", "augment=translation"], "augment is an option of objectives gan, cgan and ssgan"),
])
def test_bad_augment_configs(capsys, tmp_path, argv, fragment):
    code, _, err = run_cli(capsys, "image", "train", *argv, "--out", str(tmp_path / "run"))
    assert_one_line_error(code, err, fragment)
