import math

import pytest

from electra.core.schedules import Alternating, Phased, lr_decay, warmup_linear_decay


def test_alternating_k_discriminator_steps_per_generator_step():
    plan = [Alternating(3)(t) for t in range(9)]
    assert sum("discriminator" in p for p in plan) == 9
    assert sum("generator" in p for p in plan) == 3
    assert Alternating(1)(0) == ("discriminator", "generator")


def test_phased_trains_both_then_generator_only():
    sched = Phased(both=50, generator_only=50)
    plan = [sched(t) for t in range(200)]
    assert all(p == ("discriminator", "generator") for p in plan[:50])
    assert all(p == ("generator",) for p in plan[50:100])
    assert plan[100] == ("discriminator", "generator")
    assert Phased(2, 3)(4) == ("generator",) and Phased(2, 3)(5) == ("discriminator", "generator")


def test_warmup_then_linear_decay():
    assert warmup_linear_decay(0, 10, 110) == 0.1
    assert warmup_linear_decay(9, 10, 110) == 1.0
    assert warmup_linear_decay(60, 10, 110) == 0.5
    assert warmup_linear_decay(110, 10, 110) == 0.0


def test_lr_decay_shapes_over_the_fraction_of_the_run_done():
    assert lr_decay(0.5, "none", 0.0) == 1.0
    assert lr_decay(0.0, "linear", 0.1) == 1.0 and lr_decay(1.0, "linear", 0.1) == pytest.approx(0.1)
    assert lr_decay(0.5, "linear", 0.0) == pytest.approx(0.5)
    assert lr_decay(0.0, "cosine", 0.0) == pytest.approx(1.0) and lr_decay(1.0, "cosine", 0.2) == pytest.approx(0.2)
    assert lr_decay(0.25, "cosine", 0.0) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_decay(1.7, "linear", 0.0) == 0.0 and lr_decay(-1.0, "cosine", 0.0) == 1.0  # clipped to [0, 1]
    # held at the peak for the first two thirds, then linear to 0 (Salimans et al.'s MNIST schedule)
    assert lr_decay(0.5, "linear", 0.0, start=2 / 3) == 1.0 and lr_decay(2 / 3, "linear", 0.0, start=2 / 3) == 1.0
    assert lr_decay(5 / 6, "linear", 0.0, start=2 / 3) == pytest.approx(0.5)
    assert lr_decay(1.0, "cosine", 0.1, start=0.5) == pytest.approx(0.1)


def test_pretraining_lr_with_a_time_budget_decays_to_zero_by_its_end():
    from electra.config import apply_overrides
    from electra.text.config import preset_config
    from electra.text.pretrain import pretraining_lr

    steps_only = apply_overrides(preset_config("tiny"), {"steps": 1000, "warmup_steps": 100})
    timed = apply_overrides(steps_only, {"steps": 1_000_000, "minutes": 10.0})
    assert pretraining_lr(steps_only, 550, 0.55) == pytest.approx(0.5)          # by steps: (1000-550)/900
    assert pretraining_lr(timed, 50, 0.3) == pytest.approx(51 / 100)            # warm-up is by steps either way
    assert pretraining_lr(timed, 5000, 0.75) == pytest.approx(0.25)            # the budget, 3/4 used
    assert pretraining_lr(timed, 9000, 1.0) == 0.0
