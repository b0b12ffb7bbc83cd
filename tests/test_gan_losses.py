import math

import pytest
import torch

from electra.image.objectives import discriminator_loss, generator_loss, kl_to_standard_normal


def logit(p):
    return torch.log(p) - torch.log1p(-p)


D_REAL = torch.tensor([0.9, 0.6, 0.99, 0.3], dtype=torch.float64)
D_FAKE = torch.tensor([0.2, 0.5, 0.01, 0.7], dtype=torch.float64)


def test_generator_loss_is_sum_of_minus_log_d_of_fake():
    expected = sum(-math.log(p) for p in D_FAKE.tolist())
    assert generator_loss(logit(D_FAKE), "sum").item() == pytest.approx(expected, rel=1e-12)
    assert generator_loss(logit(D_FAKE), "mean").item() == pytest.approx(expected / 4, rel=1e-12)


def test_discriminator_loss_matches_the_founding_formula():
    expected = sum(-math.log(p) for p in D_REAL.tolist()) - sum(math.log(1 - p) for p in D_FAKE.tolist())
    assert discriminator_loss(logit(D_REAL), logit(D_FAKE), "sum").item() == pytest.approx(expected, rel=1e-12)
    assert discriminator_loss(logit(D_REAL), logit(D_FAKE), "mean").item() == pytest.approx(expected / 4, rel=1e-12)


def test_losses_stay_finite_where_probabilities_saturate():
    huge = torch.tensor([80.0, -80.0])
    assert torch.isfinite(generator_loss(huge, "sum"))
    assert torch.isfinite(discriminator_loss(huge, huge, "sum"))
    # −log D(G(z)) with D = σ(−80) is 80, not inf
    assert generator_loss(torch.tensor([-80.0]), "sum").item() == pytest.approx(80.0, rel=1e-6)


def test_label_smoothing_mixes_the_real_target():
    lr, lf = logit(D_REAL), logit(D_FAKE)
    smooth = discriminator_loss(lr, lf, "sum", real_label=0.9).item()
    expected = sum(-0.9 * math.log(p) - 0.1 * math.log(1 - p) for p in D_REAL.tolist()) - \
        sum(math.log(1 - p) for p in D_FAKE.tolist())
    assert smooth == pytest.approx(expected, rel=1e-12)


def test_kl_closed_form():
    mu = torch.tensor([[0.5, -1.0]], dtype=torch.float64)
    logvar = torch.tensor([[math.log(2.0), math.log(0.5)]], dtype=torch.float64)
    expected = sum(0.5 * (m * m + v - 1 - math.log(v)) for m, v in [(0.5, 2.0), (-1.0, 0.5)])
    assert kl_to_standard_normal(mu, logvar).item() == pytest.approx(expected, rel=1e-12)
