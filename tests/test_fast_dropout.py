"""The cheap CPU dropout: its mask statistics, its forward/backward, and HF models switched to it."""

import math

import torch

from electra.core.dropout import FastDropout, dropout, keep_mask, use_fast_dropout


def test_keep_mask_is_bernoulli_in_every_lane():
    torch.manual_seed(0)
    n, p = 1 << 22, 0.1
    keep = keep_mask(torch.Size([n]), p).float()
    sigma = math.sqrt(p * (1 - p) / (n // 4))
    for lane in range(4):  # each 16-bit lane of the 64-bit words (the top one has 15 random bits)
        assert abs(1 - keep[lane::4].mean().item() - p) < 5 * sigma, lane
    for p in (0.0, 0.5, 0.9):
        assert abs(1 - keep_mask(torch.Size([n]), p).float().mean().item() - p) < 0.002
    # neighbours (same word and across words) are uncorrelated
    centred = keep - keep.mean()
    for shift in (1, 2, 3, 4):
        corr = (centred[:-shift] * centred[shift:]).mean() / centred.var()
        assert abs(corr.item()) < 0.005, shift


def test_keep_mask_shapes_not_a_multiple_of_four():
    keep = keep_mask(torch.Size([3, 5, 7]), 0.3)
    assert keep.shape == (3, 5, 7) and keep.dtype == torch.bool


def test_dropout_scales_kept_elements_and_routes_gradients_through_the_same_mask():
    torch.manual_seed(1)
    x = torch.randn(64, 33, requires_grad=True)
    y = dropout(x, 0.25)
    kept = y != 0
    assert 0.6 < kept.float().mean().item() < 0.9
    torch.testing.assert_close(y[kept], x.detach()[kept] / 0.75)
    g = torch.randn_like(y)
    y.backward(g)
    torch.testing.assert_close(x.grad, torch.where(kept, g / 0.75, torch.zeros_like(g)))
    assert dropout(x, 0.25, training=False) is x


def test_use_fast_dropout_swaps_modules_and_eval_is_identity():
    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.3), torch.nn.Sequential(torch.nn.Dropout(0.1)))
    assert use_fast_dropout(net) == 2
    assert isinstance(net[1], FastDropout) and net[1].p == 0.3 and isinstance(net[2][0], FastDropout)
    net.eval()
    x = torch.randn(8, 4)
    torch.testing.assert_close(net(x), net[0](x))


def _tiny_discriminator(dropout_p):
    from transformers import ElectraConfig, ElectraForPreTraining

    torch.manual_seed(0)
    return ElectraForPreTraining(ElectraConfig(
        vocab_size=50, embedding_size=16, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=32, hidden_dropout_prob=dropout_p,
        attention_probs_dropout_prob=dropout_p))


def test_fast_training_computes_what_the_stock_model_computes(tmp_path):
    from transformers import ElectraForPreTraining

    from electra.text.fast_training import fast_training

    ids = torch.randint(5, 50, (3, 12))
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0  # padding exercises the attention mask
    stock = _tiny_discriminator(1e-9).eval()
    expected = stock(input_ids=ids, attention_mask=mask).logits
    fast = fast_training(_tiny_discriminator(1e-9))
    # p = 1e-9 rounds to a keep-everything mask: training mode runs the new attention path and must match
    fast.train()
    torch.testing.assert_close(fast(input_ids=ids, attention_mask=mask).logits, expected, atol=1e-5, rtol=1e-5)
    fast.eval()
    torch.testing.assert_close(fast(input_ids=ids, attention_mask=mask).logits, expected, atol=1e-5, rtol=1e-5)
    # with real dropout the outputs vary from call to call, and the saved model loads in plain transformers
    noisy = fast_training(_tiny_discriminator(0.3)).train()
    assert not torch.equal(noisy(input_ids=ids).logits, noisy(input_ids=ids).logits)
    noisy.save_pretrained(str(tmp_path / "d"))
    assert "electra_cpu" not in (tmp_path / "d" / "config.json").read_text()
    reloaded = ElectraForPreTraining.from_pretrained(str(tmp_path / "d")).eval()
    torch.testing.assert_close(reloaded(input_ids=ids).logits, noisy.eval()(input_ids=ids).logits)
