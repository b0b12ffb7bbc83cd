"""The VAE's importance-sampled test NLL on binarised digits, and the binarisation it trains with."""

import math

import pytest
import torch
from torch import nn

from electra.config import apply_overrides
from electra.image.config import preset_config
from electra.image.likelihood import importance_sampled_nll
from electra.image.objectives import binarized
from electra.image.train import train_image
from conftest import TINY
from test_cli import assert_one_line_error, run_cli


def test_binarised_pixels_are_plus_or_minus_one_with_the_grey_level_as_probability():
    grey = torch.full((20000, 1, 2, 2), 0.4)          # intensity (0.4 + 1) / 2 = 0.7
    b = binarized(grey, torch.rand(grey.shape, generator=torch.Generator().manual_seed(0)))
    assert set(b.unique().tolist()) == {-1.0, 1.0}
    assert (b == 1).float().mean().item() == pytest.approx(0.7, abs=0.01)


class _Prior(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, x):   # q(z | x) = N(0, I): the prior itself
        return torch.zeros(len(x), 8), torch.zeros(len(x), 8)


class _Coin(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, z):   # every pixel 1 with probability 1/2, whatever z
        return torch.zeros(len(z), 1, 28, 28) + 0 * self.w


def test_a_coin_flip_decoder_has_exactly_784_log_2_nats():
    # q = p(z) and p(x | z) = 2^-784 make every importance weight 2^-784: the estimate is exact for any k
    images = torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8)
    for k in (1, 7, 300):
        out = importance_sampled_nll(_Prior(), _Coin(), images, k=k, chunk=64, progress=False)
        assert out["nll_nats"] == pytest.approx(784 * math.log(2), rel=1e-6) and out["k"] == k   # float32 pixels


def test_a_binarised_vae_run_reports_a_bound_that_tightens_with_k(mnist_dir, tmp_path, capsys):
    cfg = apply_overrides(preset_config("vae"), {**TINY, "data_dir": str(mnist_dir), "steps": 60,
                                                 "binarize": True})
    run = train_image(cfg, out=str(tmp_path / "run"), progress=False)
    from electra.image.evaluate import evaluate

    loose = evaluate(run, n=64, floor=False, progress=False, write=False, iwae_k=1, iwae_images=16,
                     classifier_steps=20)["likelihood"]
    report = evaluate(run, n=64, floor=False, progress=False, write=False, iwae_k=64, iwae_images=16,
                      classifier_steps=20)
    tight = report["likelihood"]
    from electra.image.evaluate import format_report

    assert f"test NLL: {tight['nll_nats']:.2f} ±" in format_report(report)
    assert tight["images"] == 16 and 0 < tight["nll_nats"] < loose["nll_nats"]
    code, _, err = run_cli(capsys, "image", "eval", str(run), "--iwae-k", "0")
    assert_one_line_error(code, err, "--iwae-k")
    code, _, err = run_cli(capsys, "image", "train", "--preset", "dcgan", "binarize=true", "--steps", "1",
                           "--out", str(tmp_path / "x"))
    assert_one_line_error(code, err, "binarize is an option of objective vae")
