"""Held-out figures (``text eval``, ``eval_files=``), BLiMP scoring and GDES embedding sharing."""

import json

import pytest
import torch
import torch.nn.functional as F

from electra.text.blimp import discriminator_scores, pair_accuracy, pseudo_log_likelihoods, read_blimp, summarize
from electra.text.heldout import tied_auc
from electra.text.pretrain import pretrain

from test_cli import assert_one_line_error, run_cli
from text_fixtures import tiny_config, write_corpus


@pytest.fixture(scope="module")
def eval_run(corpus, tmp_path_factory):
    """A tiny RTD run that logs held-out figures at each checkpoint."""
    root = tmp_path_factory.mktemp("eval")
    held = write_corpus(root / "held.txt", documents=20, seed=7)
    cfg = tiny_config(steps=6, checkpoint_every=3, eval_files=str(held), eval_examples=40, dropout=0.0)
    return pretrain(cfg, data=str(corpus["data"]), out=str(root / "run"), progress=False), held


def test_a_constant_answer_has_auc_one_half():
    labels = torch.tensor([True, False, False, True, False])
    assert tied_auc(torch.full((5,), 3.0), labels) == 0.5           # always "replaced"
    assert tied_auc(torch.tensor([0.9, 0.1, 0.2, 0.8, 0.3]), labels) == 1.0
    assert tied_auc(torch.tensor([0.1, 0.9, 0.8, 0.2, 0.7]), labels) == 0.0
    assert tied_auc(torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0]), labels) == pytest.approx(3.5 / 6)   # pairs: 0.5+1+1 and 0+0.5+0.5


def test_eval_reports_figures_deterministically_and_writes_json(eval_run, capsys, tmp_path):
    run, held = eval_run
    code, out, err = run_cli(capsys, "text", "eval", str(run), "--files", str(held), "--out", str(tmp_path / "a.json"))
    assert code == 0, err
    assert "discriminator AUC" in out and "masked-LM loss" in out
    first = json.loads((tmp_path / "a.json").read_text())
    for key in ("mlm_loss", "mlm_ppl", "disc_loss", "disc_auc", "disc_precision", "disc_recall", "replaced_frac"):
        assert key in first and first[key] == first[key], key        # present and not NaN
    assert first["mlm_ppl"] == pytest.approx(torch.tensor(first["mlm_loss"]).exp().item())
    run_cli(capsys, "text", "eval", str(run), "--files", str(held), "--out", str(tmp_path / "b.json"))
    assert json.loads((tmp_path / "b.json").read_text()) == first    # fixed masks and replacements


def test_eval_on_the_generator_alone_gives_the_same_mlm_figures(eval_run, tmp_path):
    from electra.text.heldout import evaluate_text

    run, held = eval_run
    pair = evaluate_text(run, [held], out=tmp_path / "pair.json")
    alone = evaluate_text(run / "generator", [held], out=tmp_path / "gen.json", seq_len=32)   # the run's length
    assert alone["objective"] == "mlm" and "disc_auc" not in alone
    assert alone["mlm_loss"] == pytest.approx(pair["mlm_loss"], rel=1e-6)


def test_mask_prob_sets_the_share_of_positions_scored(eval_run, capsys, tmp_path):
    run, held = eval_run
    reports = {}
    for rate in ("0.15", "0.5"):
        code, _, err = run_cli(capsys, "text", "eval", str(run), "--files", str(held), "--mask-prob", rate,
                               "--out", str(tmp_path / f"{rate}.json"))
        assert code == 0, err
        reports[rate] = json.loads((tmp_path / f"{rate}.json").read_text())
    assert reports["0.15"]["mask_prob"] == 0.15 and reports["0.5"]["mask_prob"] == 0.5
    # about three times as many masked positions scored at 0.5: fewer of each row's tokens left as context
    assert reports["0.5"]["masked_tokens"] > 2.5 * reports["0.15"]["masked_tokens"]
    code, _, err = run_cli(capsys, "text", "eval", str(run), "--files", str(held), "--mask-prob", "1.5")
    assert_one_line_error(code, err, "--mask-prob")


def test_shuffled_context_keeps_masks_specials_and_each_rows_bag_of_words():
    from electra.text.heldout import shuffle_context

    special = torch.tensor([0, 2, 3, 4])                     # pad, cls, sep, mask
    inputs = torch.tensor([[2, 10, 11, 4, 12, 13, 14, 3, 15, 16, 3, 0, 0],
                           [2, 20, 21, 22, 23, 4, 24, 25, 26, 27, 28, 29, 3]])
    attention = (inputs != 0).long()
    out = shuffle_context(inputs, attention, special, seed=5)
    fixed = torch.isin(inputs, special)
    assert torch.equal(out[fixed], inputs[fixed])           # [CLS], [SEP], [MASK] and padding where they were
    for row in range(2):
        assert sorted(out[row].tolist()) == sorted(inputs[row].tolist())   # the same words …
    assert not torch.equal(out, inputs)                      # … in another order
    assert torch.equal(shuffle_context(inputs, attention, special, seed=5), out)   # a fixed draw


def test_order_gain_is_zero_for_a_model_blind_to_position(eval_run, tmp_path):
    """Without position (and segment) embeddings attention sees a set: shuffling the context cannot change
    the prediction at a [MASK].  With them it does, so the figure tells the two apart.  (The run's 1 × 4 generator
    barely reads context after 6 steps; its weights are redrawn wide enough that it does.)"""
    from transformers import ElectraForMaskedLM

    from electra.text.heldout import evaluate_text

    run, held = eval_run
    model = ElectraForMaskedLM.from_pretrained(run / "generator")
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 1.0)
    figures = {}
    for name in ("positions", "blind"):
        if name == "blind":
            with torch.no_grad():
                model.electra.embeddings.position_embeddings.weight.zero_()
                model.electra.embeddings.token_type_embeddings.weight.zero_()   # rows hold two segments
        model.save_pretrained(tmp_path / name)
        for f in (run / "generator").iterdir():
            if f.suffix != ".safetensors" and f.name != "config.json":
                (tmp_path / name / f.name).write_bytes(f.read_bytes())
        figures[name] = evaluate_text(tmp_path / name, [held], out=tmp_path / f"{name}.json", seq_len=32)
    assert abs(figures["blind"]["order_gain"]) < 1e-4
    assert abs(figures["positions"]["order_gain"]) > 1e-2
    assert figures["positions"]["order_gain"] == pytest.approx(figures["positions"]["mlm_loss_shuffled"]
                                                               - figures["positions"]["mlm_loss"])


def test_checkpoints_log_eval_rows(eval_run):
    run, _ = eval_run
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "eval_mlm_loss" in r]
    assert [r["step"] for r in evals] == [3, 6] and all("eval_disc_auc" in r for r in evals)
    assert (run / "eval_curve.png").is_file()


def test_bad_eval_inputs(capsys, eval_run, tmp_path):
    run, held = eval_run
    code, _, err = run_cli(capsys, "text", "eval", str(run / "discriminator"), "--files", str(held))
    assert_one_line_error(code, err, "lone discriminator")
    code, _, err = run_cli(capsys, "text", "eval", str(tmp_path / "none"), "--files", str(held))
    assert_one_line_error(code, err, "does not exist")
    binary = tmp_path / "b.txt"
    binary.write_bytes(b"\x00\x01")
    code, _, err = run_cli(capsys, "text", "eval", str(run), "--files", str(binary))
    assert_one_line_error(code, err, "looks binary")


# --- BLiMP ------------------------------------------------------------------------------------------------------

def test_pll_matches_masking_each_token_by_hand(eval_run):
    from transformers import ElectraForMaskedLM

    run, _ = eval_run
    model = ElectraForMaskedLM.from_pretrained(str(run / "generator")).eval()
    sentences = [[2, 10, 11, 12, 3], [2, 13, 14, 3], [2, 15, 3]]
    mask = 4
    got = pseudo_log_likelihoods(model, sentences, mask, pad_id=0, batch_size=2)
    for ids, value in zip(sentences, got):
        expected = 0.0
        for i in range(1, len(ids) - 1):
            masked = torch.tensor([ids[:i] + [mask] + ids[i + 1:]])
            with torch.no_grad():
                logits = model(input_ids=masked).logits[0, i]
            expected += F.log_softmax(logits.float(), -1)[ids[i]].item()
        assert value == pytest.approx(expected, rel=1e-4, abs=1e-4)


def test_word_l2r_pll_masks_the_later_pieces_of_the_scored_word():
    from transformers import ElectraConfig, ElectraForMaskedLM

    torch.manual_seed(0)   # large random weights: every score depends on the context, so a wrong mask shows
    model = ElectraForMaskedLM(ElectraConfig(vocab_size=20, embedding_size=16, hidden_size=16, num_hidden_layers=1,
                                             num_attention_heads=2, intermediate_size=32, max_position_embeddings=16,
                                             initializer_range=1.0)).eval()
    mask = 4
    # [CLS] w0 w1a w1b w1c w2 [SEP]: word 1 in three pieces
    ids, words = [2, 10, 11, 12, 13, 14, 3], [None, 0, 1, 1, 1, 2, None]
    masked_sets = {1: [1], 2: [2, 3, 4], 3: [3, 4], 4: [4], 5: [5]}
    expected = 0.0
    for i, positions in masked_sets.items():
        row = list(ids)
        for j in positions:
            row[j] = mask
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([row])).logits[0, i]
        expected += F.log_softmax(logits.float(), -1)[ids[i]].item()
    got = pseudo_log_likelihoods(model, [ids, [2, 15, 3]], mask, pad_id=0, batch_size=3, words=[words, [None, 0, None]])
    assert got[0] == pytest.approx(expected, rel=1e-4, abs=1e-4)
    original = pseudo_log_likelihoods(model, [ids], mask, pad_id=0)[0]
    assert abs(original - got[0]) > 1e-3           # masking the later pieces changes the score
    single = [None, 0, 1, 2, 3, 4, None]            # every word one piece: the same as the original PLL
    assert pseudo_log_likelihoods(model, [ids], mask, pad_id=0, words=[single])[0] == pytest.approx(original, rel=1e-5)


def test_discriminator_score_sums_log_p_original_over_inner_tokens(eval_run):
    from transformers import ElectraForPreTraining

    run, _ = eval_run
    model = ElectraForPreTraining.from_pretrained(str(run / "discriminator")).eval()
    ids = [2, 10, 11, 3]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0]
    expected = float(-F.softplus(logits[1:3]).sum())
    short_batch = discriminator_scores(model, [ids, [2, 12, 3]], pad_id=0)
    assert short_batch[0] == pytest.approx(expected, rel=1e-4)


def test_a_tie_counts_as_wrong():
    assert pair_accuracy([1.0, 2.0, -3.0], [1.0, 1.0, -3.0]) == [False, True, False]


def write_blimp(folder, phenomena=("agreement_a", "island_b"), n=6):
    folder.mkdir(parents=True, exist_ok=True)
    for uid in phenomena:
        rows = [{"sentence_good": f"the cat sat on the mat {i}.", "sentence_bad": f"the cat sat mat the on {i}.",
                 "field": "syntax" if "island" in uid else "morphology", "UID": uid, "pairID": str(i)}
                for i in range(n)]
        (folder / f"{uid}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_blimp_reports_overall_fields_and_phenomena(eval_run, capsys, tmp_path):
    run, _ = eval_run
    data = write_blimp(tmp_path / "blimp")
    code, out, err = run_cli(capsys, "text", "blimp", str(run), "--data-dir", str(data), "--per-phenomenon", "4",
                             "--out", str(tmp_path / "b.json"))
    assert code == 0, err
    report = json.loads((tmp_path / "b.json").read_text())
    assert report["pairs"] == 8 and set(report["scorers"]) == {"generator", "discriminator"}
    for scorer in report["scorers"].values():
        assert set(scorer["phenomena"]) == {"agreement_a", "island_b"}
        assert set(scorer["fields"]) == {"morphology", "syntax"} and 0 <= scorer["overall"] <= 1
    assert "overall" in out and "island_b" in out
    code, out, err = run_cli(capsys, "text", "blimp", str(run), "--data-dir", str(data), "--per-phenomenon", "4",
                             "--pll", "word-l2r", "--out", str(tmp_path / "l2r.json"))
    assert code == 0, err
    assert json.loads((tmp_path / "l2r.json").read_text())["pll"] == "word-l2r" and "PLL word-l2r" in out


def test_the_seeded_subset_is_fixed(tmp_path):
    data = write_blimp(tmp_path / "blimp", n=50)
    a, b = read_blimp(data, 5), read_blimp(data, 5)
    assert [p.good for p in a] == [p.good for p in b] and len(a) == 10
    assert [p.good for p in a] != [p.good for p in read_blimp(data)[:10]]   # not simply the first ones


def test_summaries_average_pairs_and_phenomena():
    from electra.text.blimp import Pair

    pairs = [Pair("a", "b", "x", "f")] * 3 + [Pair("a", "b", "y", "g")]
    s = summarize(pairs, [True, True, False, False])
    assert s["overall"] == 0.5 and s["phenomena"] == {"x": 2 / 3, "y": 0.0}
    assert s["mean_over_phenomena"] == pytest.approx(1 / 3)


def test_a_malformed_blimp_line_names_file_and_line(capsys, eval_run, tmp_path):
    run, _ = eval_run
    data = write_blimp(tmp_path / "blimp")
    path = data / "island_b.jsonl"
    lines = path.read_text().splitlines()
    lines[2] = '{"sentence_good": "x", '
    path.write_text("\n".join(lines) + "\n")
    code, _, err = run_cli(capsys, "text", "blimp", str(run), "--data-dir", str(data))
    assert_one_line_error(code, err, "island_b.jsonl line 3")
    lines[2] = json.dumps({"sentence_good": "x", "UID": "island_b"})
    path.write_text("\n".join(lines) + "\n")
    code, _, err = run_cli(capsys, "text", "blimp", str(run), "--data-dir", str(data))
    assert_one_line_error(code, err, "line 3 lacks")


# --- GDES -------------------------------------------------------------------------------------------------------

def _pair(sharing):
    from electra.text.models import build_rtd_models

    return build_rtd_models(tiny_config(embedding_sharing=sharing, dropout=0.0), 60)


@pytest.mark.parametrize("sharing", ["shared", "gdes"])
def test_a_discriminator_only_loss_moves_the_shared_table_only_without_gdes(sharing):
    models = _pair(sharing)
    generator, discriminator = models["generator"], models["discriminator"]
    table = generator.electra.embeddings.word_embeddings.weight
    before = table.detach().clone()
    params = {id(p): p for m in models.values() for p in m.parameters()}
    opt = torch.optim.SGD(list(params.values()), lr=1.0)
    ids = torch.randint(5, 60, (4, 12))
    logits = discriminator(input_ids=ids).logits
    F.binary_cross_entropy_with_logits(logits, (ids % 2).float()).backward()
    opt.step()
    moved = not torch.equal(table.detach(), before)
    assert moved == (sharing == "shared")
    if sharing == "gdes":
        assert discriminator.electra.embeddings.word_embeddings.delta.abs().sum() > 0   # the delta learnt instead


def test_gdes_starts_equal_to_shared_and_exports_the_summed_table(tmp_path):
    from transformers import ElectraForPreTraining

    from electra.text.models import export_hf

    shared, gdes = _pair("shared"), _pair("gdes")
    ids = torch.randint(5, 60, (2, 10))
    with torch.no_grad():
        assert torch.allclose(shared["discriminator"](input_ids=ids).logits, gdes["discriminator"](input_ids=ids).logits)
        delta = gdes["discriminator"].electra.embeddings.word_embeddings.delta
        delta.add_(torch.randn_like(delta))
        expected = gdes["discriminator"].eval()(input_ids=ids).logits
    tok = tmp_path / "tok"
    tok.mkdir()
    export_hf({"discriminator": gdes["discriminator"]}, tmp_path, tok)
    loaded = ElectraForPreTraining.from_pretrained(str(tmp_path / "discriminator")).eval()   # plain transformers
    with torch.no_grad():
        assert torch.allclose(loaded(input_ids=ids).logits, expected, atol=1e-5)
    summed = gdes["generator"].electra.embeddings.word_embeddings.weight + delta
    assert torch.allclose(loaded.electra.embeddings.word_embeddings.weight, summed)


def test_gdes_pretraining_resumes_bit_identically(corpus, tmp_path):
    from resume_helpers import assert_same_run, resume_in_new_process

    cfg = tiny_config(embedding_sharing="gdes", steps=6, checkpoint_every=3, dropout=0.0)
    full = pretrain(cfg, data=str(corpus["data"]), out=str(tmp_path / "full"), progress=False)
    part = pretrain(cfg, data=str(corpus["data"]), out=str(tmp_path / "part"), progress=False, stop_at=3)
    resume_in_new_process("text", "pretrain", part)
    assert_same_run(full, part)
