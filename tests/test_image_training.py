import json

import pytest
import torch
from safetensors.torch import load_file

from electra.config import apply_overrides
from electra.image.config import preset_config
from electra.image.train import build_optimizers, build_schedule, build_system, train_image

from conftest import TINY


def _cfg(preset="dcgan", **extra):
    return apply_overrides(preset_config(preset), {**TINY, **extra})


def _weights(run):
    return load_file(str(run / "checkpoints" / "last" / "model.safetensors"))


def test_run_folder_has_everything(mnist_dir, tmp_path):
    run = train_image(_cfg(data_dir=str(mnist_dir), epochs=2), out=str(tmp_path / "run"), progress=False)
    assert json.loads((run / "config.json").read_text())["track"] == "image"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 12  # 96 images / 16 per batch × 2 epochs
    for key in ("L_G", "L_D", "L_ELECTRA", "D(x)", "D(G(z))", "images_per_s"):
        assert key in rows[-1]
    assert rows[-1]["L_ELECTRA"] == pytest.approx(rows[-1]["L_G"] + rows[-1]["L_D"])
    for name in ("samples/epoch-001.png", "samples/epoch-002.png", "samples/final.png", "loss_curve.png",
                 "discriminator_curve.png", "checkpoints/last/model.safetensors",
                 "checkpoints/last/optimizer.safetensors", "checkpoints/last/state.json", "data.txt"):
        assert (run / name).is_file(), name
    assert "MNIST train split, 96 images" in (run / "data.txt").read_text()
    state = json.loads((run / "checkpoints/last/state.json").read_text())
    assert state["step"] == 12 and "discriminator" in state["optimizers"]


def test_fixed_noise_grid_is_the_same_noise_every_epoch(mnist_dir, tmp_path):
    from electra.image.train import fixed_noise

    cfg = _cfg(data_dir=str(mnist_dir))
    assert torch.equal(fixed_noise(cfg), fixed_noise(cfg))


@pytest.mark.parametrize("preset", ["dcgan", "seed", "vaegan"])
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(mnist_dir, tmp_path, preset):
    extra = dict(data_dir=str(mnist_dir), ema=0.9) if preset == "dcgan" else dict(data_dir=str(mnist_dir))
    if preset == "seed":
        extra.update(phase_both=2, phase_generator=3)
    full = train_image(_cfg(preset, steps=10, **extra), out=str(tmp_path / "full"), progress=False)
    part = train_image(_cfg(preset, steps=4, **extra), out=str(tmp_path / "part"), progress=False)
    train_image(resume=str(part), overrides={"steps": 10}, progress=False)
    a, b = _weights(full), _weights(part)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    steps = [json.loads(line)["step"] for line in (part / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 10


def test_scheduled_lr_resumes_mid_decay_in_a_new_process(mnist_dir, tmp_path):
    from resume_helpers import assert_same_run, resume_in_new_process

    cfg = _cfg(data_dir=str(mnist_dir), steps=10, log_every=1, lr=1e-3, lr_decay="linear", lr_final=0.1, ema=0.9)
    full = train_image(cfg, out=str(tmp_path / "full"), progress=False)
    part = train_image(cfg, out=str(tmp_path / "part"), progress=False, stop_at=5)
    resume_in_new_process("image", "train", part)
    assert_same_run(full, part)


def _one_step(cfg, update):
    system = build_system(cfg)
    opts = build_optimizers(cfg, system)
    before = {n: [p.detach().clone() for p in m.parameters()] for n, m in system.modules.items()}
    x = torch.rand(8, 1, 28, 28) * 2 - 1
    losses, _ = system.objective.losses(update, x, {})
    for name, loss in losses.items():
        loss.backward(inputs=list(p for g in opts[name].param_groups for p in g["params"]), retain_graph=True)
        opts[name].step()
    changed = {n: any(not torch.equal(a, b) for a, b in zip(before[n], m.parameters()))
               for n, m in system.modules.items()}
    return changed


def test_discriminator_update_leaves_generator_alone_and_vice_versa():
    cfg = _cfg()   # the preset keeps a weight average of G, which only the training hook moves, never an update
    assert _one_step(cfg, "discriminator") == {"generator": False, "discriminator": True, "generator_ema": False}
    assert _one_step(cfg, "generator") == {"generator": True, "discriminator": False, "generator_ema": False}


def test_vae_and_vaegan_update_their_networks():
    assert _one_step(_cfg("vae"), "autoencoder") == {"generator": True, "encoder": True}
    assert _one_step(_cfg("vaegan"), "joint") == {"generator": True, "encoder": True, "discriminator": True}

def _logged_lrs(run, key="lr_discriminator"):
    return [json.loads(line)[key] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_the_preset_generator_learns_at_three_times_the_discriminators_rate(mnist_dir, tmp_path):
    run = train_image(_cfg(data_dir=str(mnist_dir), steps=2, log_every=1), out=str(tmp_path / "run"), progress=False)
    assert _logged_lrs(run, "lr_generator") == pytest.approx([6e-3, 6e-3])
    assert _logged_lrs(run) == pytest.approx([2e-3, 2e-3])
    # lr moves both; lr_g, given, wins over the scale
    opts = build_optimizers(_cfg(lr=1e-3), build_system(_cfg(lr=1e-3)))
    peaks = (opts["generator"].param_groups[0]["lr"], opts["discriminator"].param_groups[0]["lr"])
    assert peaks == pytest.approx((3e-3, 1e-3))
    cfg = _cfg(lr=1e-3, lr_g=5e-4)
    assert build_optimizers(cfg, build_system(cfg))["generator"].param_groups[0]["lr"] == 5e-4


def test_lr_decay_by_steps_follows_the_schedule(mnist_dir, tmp_path):
    cfg = _cfg(data_dir=str(mnist_dir), steps=8, log_every=1, lr=1e-3, lr_decay="linear", lr_final=0.0)
    lrs = _logged_lrs(train_image(cfg, out=str(tmp_path / "run"), progress=False))
    # the row after step s was trained at the lr set for step s-1: 1e-3 · (1 - (s-1)/8)
    assert lrs == pytest.approx([1e-3 * (1 - s / 8) for s in range(8)])


def test_lr_decay_held_at_the_peak_until_its_start(mnist_dir, tmp_path):
    cfg = _cfg(data_dir=str(mnist_dir), steps=8, log_every=1, lr=1e-3, lr_decay="linear", lr_decay_start=0.5)
    lrs = _logged_lrs(train_image(cfg, out=str(tmp_path / "run"), progress=False))
    # steps 0–4 at the peak, then the last half of the run falls linearly: 1e-3 · (1 - (s/8 - 0.5) / 0.5)
    assert lrs == pytest.approx([1e-3 * min(1.0, 2 - s / 4) for s in range(8)])


def test_lr_decay_over_a_wall_clock_budget_anneals_without_a_step_count(mnist_dir, tmp_path):
    cfg = _cfg(data_dir=str(mnist_dir), epochs=10**6, minutes=2 / 60, log_every=1, lr=1e-3, lr_decay="linear")
    lrs = _logged_lrs(train_image(cfg, out=str(tmp_path / "run"), progress=False))
    assert len(lrs) > 10
    assert lrs[0] == pytest.approx(1e-3)                      # nothing elapsed before the first step
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))          # monotone in elapsed time
    assert lrs[-1] < 0.25e-3                                  # the budget is nearly used up by the last step


def test_phased_schedule_freezes_the_discriminator(mnist_dir, tmp_path):
    cfg = _cfg("seed", data_dir=str(mnist_dir), phase_both=1, phase_generator=100, steps=4)
    system = build_system(cfg)
    sched = build_schedule(cfg, system)
    assert [sched(t) for t in range(3)] == [("discriminator", "generator"), ("generator",), ("generator",)]


def test_seed_generator_maps_100d_noise_to_28x28():
    cfg = _cfg("seed")
    system = build_system(cfg)
    out = system.modules["generator"](torch.randn(3, 100))
    assert out.shape == (3, 1, 28, 28) and out.abs().max() <= 1
    sizes = [m.out_features for m in system.modules["generator"].modules() if isinstance(m, torch.nn.Linear)]
    assert sizes == [1024, 512, 256, 128, 784]
    d_sizes = [m.out_features for m in system.modules["discriminator"].modules() if isinstance(m, torch.nn.Linear)]
    assert d_sizes == [128, 128, 1]


def test_minibatch_std_channel_measures_the_batch_spread():
    from electra.errors import UserError
    from electra.image.models import DCGANDiscriminator

    torch.manual_seed(0)
    d = DCGANDiscriminator(width=4, minibatch_std=True)
    same = torch.randn(1, 1, 28, 28).expand(6, 1, 28, 28).contiguous()
    varied = torch.randn(6, 1, 28, 28)
    spread_same = d.spread(d.body(same))[:, 8]                # the appended (2w+1)-th channel
    spread_varied = d.spread(d.body(varied))[:, 8]
    assert spread_same.max() < 1e-3                           # a collapsed batch has (almost) no spread …
    assert spread_varied.min() > 10 * spread_same.max()       # … a varied one has, the same value for every image
    assert torch.allclose(spread_varied, spread_varied[0, 0].expand_as(spread_varied))
    assert d(varied).shape == (6,) and d.features(varied).shape == (6, 8 * 49)   # features: per image only
    with pytest.raises(UserError, match="minibatch_std"):
        _cfg("seed", minibatch_std=True).validate()


def test_minibatch_std_groups_give_each_group_its_own_spread():
    from electra.image.models import MinibatchStd

    torch.manual_seed(0)
    # group 2 over 6 images pairs image i with image i + 3; make pair (0, 3) identical, the others differ
    x = torch.randn(6, 2, 3, 3)
    x[3] = x[0]
    spread = MinibatchStd(group=2)(x)[:, 2, 0, 0]
    assert spread[0] == spread[3] and spread[0] < 1e-3
    assert spread[1] == spread[4] and spread[2] == spread[5] and spread[1] > 0.1 and spread[1] != spread[2]
    whole = MinibatchStd(group=0)(x)[:, 2]
    assert torch.allclose(whole, whole[0, 0].expand_as(whole)) and whole[0, 0, 0] > 0.1
    # a batch the group size does not divide falls back to the largest group size that does: 5 → groups of 1 → 0
    assert MinibatchStd(group=4)(torch.randn(5, 2, 3, 3))[:, 2].max() < 1e-3


def test_d_width_widens_only_the_discriminator():
    system = build_system(_cfg(width=4, d_width=6, minibatch_std=True, minibatch_group=4))
    d, g = system.modules["discriminator"], system.modules["generator"]
    assert [m.out_channels for m in d.modules() if isinstance(m, torch.nn.Conv2d)] == [6, 12, 12, 12]
    assert [m.out_channels for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d)] == [8, 1]
    assert d.head.in_features == (12 + 1) * 49 and d.spread.group == 4
    assert d(torch.randn(8, 1, 28, 28)).shape == (8,)


def _pixels_seen_by_first_feature(d) -> torch.Tensor:
    x = torch.randn(1, 1, 28, 28, requires_grad=True)
    d.eval().body(x)[0, :, 0, 0].sum().backward()
    return x.grad[0, 0] != 0


def test_extra_discriminator_convs_widen_what_each_feature_sees():
    plain = build_system(_cfg(width=4, d_extra_convs=0)).modules["discriminator"]
    deeper = build_system(_cfg(width=4, d_extra_convs=2, minibatch_std=True)).modules["discriminator"]
    assert [m.kernel_size for m in deeper.modules() if isinstance(m, torch.nn.Conv2d)] == [(4, 4), (4, 4), (3, 3), (3, 3)]
    assert deeper.head.in_features == (8 + 1) * 49 and deeper(torch.randn(8, 1, 28, 28)).shape == (8,)
    # the corner feature of the two-conv body sees pixels 0–6 (a 10×10 patch, padding included); each 3×3 layer
    # at 7×7 (stride 4 in pixels) reaches 4 pixels further
    assert _pixels_seen_by_first_feature(plain).nonzero().max() == 6
    assert _pixels_seen_by_first_feature(deeper).nonzero().max() == 14


def test_refreshed_batch_norm_statistics_are_the_weight_averages_own():
    from electra.image.ema import refresh_batch_norm
    from electra.image.models import DCGANGenerator

    g = DCGANGenerator(noise_dim=10, width=4)
    with torch.no_grad():   # weights unlike those the running statistics (zeros / ones) describe
        g.project[0].weight.mul_(50).add_(0.3)
    refresh_batch_norm(g, lambda n, rng: torch.randn(n, 10, generator=rng), batch_size=16, seed=3, batches=5)
    z = torch.randn(5 * 16, 10, generator=torch.Generator().manual_seed(3))
    pre_norm = g.project[0](z).detach()
    bn = g.project[1]
    # the cumulative average of per-batch means is the overall mean; variances are each batch's unbiased one
    assert torch.allclose(bn.running_mean, pre_norm.mean(0), atol=1e-4)
    per_batch_var = torch.stack([chunk.var(0) for chunk in pre_norm.split(16)]).mean(0)
    assert torch.allclose(bn.running_var, per_batch_var, rtol=1e-4)
    assert bn.momentum == 0.1 and g.training        # settings put back


def test_checkpointed_weight_average_carries_its_own_batch_norm_statistics(mnist_dir, tmp_path):
    from electra.image.ema import refresh_batch_norm
    from electra.image.train import ImageHooks, input_sampler

    run = train_image(_cfg(data_dir=str(mnist_dir), steps=6, ema=0.5), out=str(tmp_path / "run"), progress=False)
    saved = _weights(run)
    cfg = _cfg(data_dir=str(mnist_dir), steps=6, ema=0.5)
    system = build_system(cfg)
    average = system.modules["generator_ema"]
    average.load_state_dict({k[len("generator_ema."):]: v for k, v in saved.items()
                             if k.startswith("generator_ema.")})
    live_mean = saved["generator.project.1.running_mean"]
    saved_mean = saved["generator_ema.project.1.running_mean"]
    assert not torch.allclose(saved_mean, live_mean)        # not simply borrowed from the live generator
    refresh_batch_norm(average, input_sampler(cfg), cfg.batch_size, cfg.seed + ImageHooks.STANDING_SEED_OFFSET)
    assert torch.allclose(average.project[1].running_mean, saved_mean, atol=1e-5)
