"""The ELECTRA recipe details, each pinned by a test that fails if the detail is wrong."""

import pytest
import torch

from electra.text.masking import apply_mask, binary_auc, generator_draw, mask_positions
from electra.text.models import build_rtd_models
from electra.text.objectives import RTDObjective
from electra.text.pretrain import build_optimizer

from text_fixtures import tiny_config

SPECIAL = torch.tensor([0, 1, 2, 3, 4])  # pad unk cls sep mask
IDS = {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}


def rows(batch=64, length=128, real=100, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 1000, (batch, length), generator=g)
    ids[:, 0], ids[:, 50], ids[:, real - 1] = 2, 3, 3
    ids[:, real:] = 0
    return ids, (ids != 0).long()


def test_mask_rate_and_cap():
    ids, am = rows()
    positions, weights = mask_positions(ids, am, SPECIAL, 0.15, generator_draw(len(ids), torch.Generator().manual_seed(0)))
    candidates = 100 - 3
    assert weights.shape[1] == int(0.155 * 128) == 19  # the official cap ⌊(0.15 + 0.005)·L⌋
    assert (weights.sum(1) == round(0.15 * candidates)).all()
    # the cap binds when a row has many candidates
    ids, am = rows(real=128)
    ids[:, 127] = 3
    _, weights = mask_positions(ids, am, SPECIAL, 0.15, generator_draw(len(ids), torch.Generator().manual_seed(0)))
    assert (weights.sum(1) == 19).all()


def test_special_tokens_and_padding_are_never_masked():
    ids, am = rows()
    positions, weights = mask_positions(ids, am, SPECIAL, 0.15, generator_draw(len(ids), torch.Generator().manual_seed(1)))
    chosen = ids.gather(1, positions)[weights.bool()]
    assert not torch.isin(chosen, SPECIAL).any()
    assert (positions[weights.bool()] < 100).all()


def test_85_percent_mask_15_percent_unchanged():
    ids, am = rows(batch=400)
    draw = generator_draw(len(ids), torch.Generator().manual_seed(2))
    positions, weights = mask_positions(ids, am, SPECIAL, 0.15, draw)
    masked = apply_mask(ids, positions, weights, 4, 0.85, draw)
    at = masked.gather(1, positions)[weights.bool()]
    share = (at == 4).float().mean().item()
    assert 0.83 < share < 0.87
    kept = at[at != 4]
    assert torch.equal(kept, ids.gather(1, positions)[weights.bool()][at != 4])  # unchanged means the original
    assert ((masked != ids).sum(1) <= weights.sum(1)).all()  # nothing outside the chosen positions changes


@pytest.mark.parametrize("sampler", ["gumbel", "cdf"])
def test_sampling_draws_from_the_softmax_in_float32(sampler):
    from electra.text.masking import SAMPLERS

    sample = SAMPLERS[sampler]
    logits = torch.tensor([[2.0, 0.0, -1.0, 1.0, -30.0]]).to(torch.bfloat16).expand(200_000, 5)
    samples = sample(logits, 1.0, generator_draw(len(logits), torch.Generator().manual_seed(3)))
    assert samples.dtype == torch.int64
    freq = torch.bincount(samples, minlength=5).float() / len(samples)
    expected = torch.softmax(logits[0].float(), 0)
    assert torch.allclose(freq, expected, atol=0.004)
    hot = sample(logits, 0.25, generator_draw(len(logits), torch.Generator().manual_seed(3)))  # sharper
    assert (hot == 0).float().mean() > expected[0] + 0.2


def test_binary_auc():
    assert binary_auc(torch.tensor([0.1, 0.2, 0.8, 0.9]), torch.tensor([0, 0, 1, 1])).item() == 1.0
    assert binary_auc(torch.tensor([0.9, 0.8, 0.2, 0.1]), torch.tensor([0, 0, 1, 1])).item() == 0.0
    assert binary_auc(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1])).item() == 0.75
    assert torch.isnan(binary_auc(torch.tensor([0.1, 0.2]), torch.tensor([0, 0])))


def test_embeddings_shared_and_output_layer_tied():
    cfg = tiny_config()
    m = build_rtd_models(cfg, 100)
    g, d = m["generator"], m["discriminator"]
    assert g.electra.embeddings is d.electra.embeddings
    assert g.electra.embeddings.word_embeddings.weight is d.electra.embeddings.word_embeddings.weight
    assert g.electra.embeddings.position_embeddings.weight is d.electra.embeddings.position_embeddings.weight
    assert g.generator_lm_head.weight is d.electra.embeddings.word_embeddings.weight
    assert g.get_output_embeddings().weight is g.get_input_embeddings().weight


@pytest.mark.parametrize("init_range", [0.02, 0.1])
def test_init_range_sets_the_spread_of_every_weight_matrix(init_range):
    cfg = tiny_config(hidden_size=64, num_heads=4, intermediate_size=256, embedding_size=64, init_range=init_range)
    m = build_rtd_models(cfg, 500)
    for model in m.values():
        assert model.config.initializer_range == init_range   # saved with the model: fine-tuning heads use it
        for name, p in model.named_parameters():
            if p.dim() == 2 and "LayerNorm" not in name:
                assert abs(p.detach().std().item() / init_range - 1) < 0.15, name


def test_generator_is_a_quarter_of_the_discriminator_width():
    cfg = tiny_config(hidden_size=64, num_heads=4, intermediate_size=256)
    m = build_rtd_models(cfg, 100)
    gc, dc = m["generator"].config, m["discriminator"].config
    assert (gc.hidden_size, gc.num_attention_heads, gc.intermediate_size) == (16, 1, 64)
    assert gc.num_hidden_layers == dc.num_hidden_layers
    from electra.text.config import preset_config

    small = preset_config("small")
    assert small.generator_sizes() == {"hidden_size": 64, "num_heads": 1, "intermediate_size": 256, "num_layers": 12}


def test_generator_layers_takes_a_share_of_the_depth_and_both_models_learn():
    from electra.errors import UserError

    cfg = tiny_config(num_layers=4, generator_width=1.0, generator_layers=0.5)
    m = build_rtd_models(cfg, 100)
    assert (m["generator"].config.num_hidden_layers, m["discriminator"].config.num_hidden_layers) == (2, 4)
    assert tiny_config(num_layers=3, generator_layers=0.1).generator_sizes()["num_layers"] == 1
    losses, _ = RTDObjective(m["generator"], m["discriminator"], cfg, IDS, 100, seed=0).losses("joint", _batch(), {})
    losses["model"].backward()
    assert m["generator"].electra.encoder.layer[1].attention.self.query.weight.grad.abs().sum() > 0
    assert m["discriminator"].electra.encoder.layer[3].attention.self.query.weight.grad.abs().sum() > 0
    with pytest.raises(UserError, match="generator_layers"):
        tiny_config(generator_layers=0.0)


def _objective(cfg, vocab=100):
    m = build_rtd_models(cfg, vocab)
    return m, RTDObjective(m["generator"], m["discriminator"], cfg, IDS, vocab, seed=0)


def _batch(vocab=100, batch=4, length=32):
    from electra.text.corpus import make_batch

    ids = torch.randint(5, vocab, (batch, length), generator=torch.Generator().manual_seed(5))
    ids[:, 0], ids[:, -1] = 2, 3
    return make_batch(ids, 0, 3)


def test_discriminator_loss_never_reaches_the_generator():
    cfg = tiny_config()
    m, obj = _objective(cfg)
    positions, weights, targets, sampled, corrupted, labels, mlm, _ = obj.corrupt(_batch())
    assert not corrupted.requires_grad and not sampled.requires_grad
    d_logits = m["discriminator"](input_ids=corrupted, attention_mask=torch.ones_like(corrupted)).logits
    torch.nn.functional.binary_cross_entropy_with_logits(d_logits, labels.float()).backward()
    shared = {id(p) for p in m["discriminator"].electra.embeddings.parameters()}
    own = [p for p in m["generator"].parameters() if id(p) not in shared]
    assert own and all(p.grad is None for p in own)
    assert m["discriminator"].electra.embeddings.word_embeddings.weight.grad is not None


def test_sample_equal_to_original_is_labelled_original(monkeypatch):
    import electra.text.objectives as objectives

    cfg = tiny_config()
    _, obj = _objective(cfg)
    batch = _batch()
    # a generator that always samples the true token: nothing counts as replaced
    monkeypatch.setitem(objectives.SAMPLERS, "cdf", lambda logits, t, draw: batch["input_ids"].gather(1, pos[0]))
    pos = []
    real_mask = objectives.mask_positions

    def spy(*a, **k):
        out = real_mask(*a, **k)
        pos.append(out[0])
        return out

    monkeypatch.setattr(objectives, "mask_positions", spy)
    *_, corrupted, labels, _, _ = obj.corrupt(batch)
    assert not labels.any() and torch.equal(corrupted, batch["input_ids"])


def test_joint_loss_uses_lambda_50():
    cfg = tiny_config()
    assert cfg.disc_weight == 50.0
    _, obj = _objective(cfg)
    losses, metrics = obj.losses("joint", _batch(), {})
    assert losses["model"].item() == pytest.approx(metrics["mlm_loss"].item() + 50 * metrics["disc_loss"].item(),
                                                   rel=1e-5)


def test_adamw_epsilon_and_weight_decay_exclusions():
    cfg = tiny_config()
    m = build_rtd_models(cfg, 100)
    opt = build_optimizer(cfg, m)
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["eps"] == 1e-6
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for k, mod in m.items() for n, p in mod.named_parameters()}
    assert all("LayerNorm" in names[id(p)] or names[id(p)].endswith("bias") for p in no_decay["params"])
    assert not any("LayerNorm" in names[id(p)] or names[id(p)].endswith("bias") for p in decay["params"])
    n_unique = len({id(p) for mod in m.values() for p in mod.parameters()})
    assert len(decay["params"]) + len(no_decay["params"]) == n_unique  # shared embeddings counted once


def test_gradient_clipping_at_1(tmp_path):
    from electra.core.schedules import EveryStep
    from electra.core.trainer import NO_CHECKPOINTS, Plan, Trainer

    layer = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(layer.parameters(), lr=1.0)

    class Huge:
        updates = {"x": ("m",)}
        random = None

        def losses(self, update, batch, cache):
            return {"m": layer(batch).sum() * 1e6}, {}

        def summarize(self, means):
            return means

    before = torch.cat([p.detach().flatten().clone() for p in layer.parameters()])
    plan = Plan(modules={"m": layer}, optimizers={"m": opt}, objective=Huge(), schedule=EveryStep(("x",)),
                batches=lambda s, k: torch.ones(2, 4), steps_per_epoch=1, total_steps=1, items_per_step=2,
                grad_clip=1.0, checkpoints=NO_CHECKPOINTS)
    Trainer(plan, tmp_path, progress=False).run()
    after = torch.cat([p.detach().flatten() for p in layer.parameters()])
    assert (after - before).norm().item() == pytest.approx(1.0, rel=1e-5)


def test_small_preset_matches_the_paper():
    from electra.text.config import preset_config

    c = preset_config("small")
    assert (c.num_layers, c.hidden_size, c.num_heads, c.intermediate_size, c.embedding_size) == (12, 256, 4, 1024, 128)
    assert (c.batch_size, c.seq_len, c.steps, c.lr, c.warmup_steps) == (128, 128, 1_000_000, 5e-4, 10_000)
    assert (c.eps, c.weight_decay, c.grad_clip, c.dropout, c.mask_prob, c.disc_weight) == (1e-6, 0.01, 1.0, 0.1, 0.15, 50)
    assert c.init_range == 0.02
    assert preset_config("large").mask_prob == 0.25


@pytest.mark.parametrize("bad", ["0", "-0.02", "2", "wide"])
def test_a_bad_init_range_is_one_clear_error(bad):
    from electra.config import apply_overrides
    from electra.errors import UserError
    from electra.text.config import preset_config

    with pytest.raises(UserError, match="init_range"):
        apply_overrides(preset_config("tiny"), {"init_range": bad}).validate()
