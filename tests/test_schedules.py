from electra.core.schedules import Alternating, Phased, warmup_linear_decay


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
