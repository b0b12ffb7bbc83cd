"""Pre-training end to end on a tiny corpus: run folder, HF interoperability, resume, bad input."""

import json
import shutil

import numpy as np
import pytest
import torch

from electra.text.pretrain import pretrain

from test_cli import assert_one_line_error, run_cli
from text_fixtures import tiny_config, write_corpus


@pytest.fixture(scope="module")
def tiny_run(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "rtd"
    return pretrain(tiny_config(), data=str(corpus["data"]), out=str(out), progress=False)


def test_run_folder_and_metrics(tiny_run):
    for name in ("config.json", "metrics.jsonl", "loss_curve.png", "accuracy_curve.png",
                 "discriminator/config.json", "discriminator/model.safetensors", "discriminator/vocab.txt",
                 "generator/config.json", "generator/tokenizer.json", "checkpoints/last/state.json"):
        assert (tiny_run / name).is_file(), name
    row = json.loads((tiny_run / "metrics.jsonl").read_text().splitlines()[-1])
    for key in ("loss", "mlm_loss", "disc_loss", "gen_acc", "sampled_is_original", "disc_acc", "disc_auc",
                "disc_precision", "disc_recall", "lr", "tokens_per_s"):
        assert key in row, key


def test_learning_rate_follows_warmup_then_linear_decay(tiny_run):
    rows = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    peak = tiny_config().lr
    # logged lr is the one used at that step: steps 0..3 → 0.5, 1.0, 1.0·(4−2)/2, 1.0·(4−3)/2
    assert [r["lr"] for r in rows] == pytest.approx([peak * 0.5, peak, peak, peak * 0.5])


def test_transformers_loads_the_discriminator_with_the_same_logits(tiny_run, corpus):
    from transformers import ElectraForPreTraining

    from electra.core.checkpoint import find_checkpoint, load_weights
    from electra.text.models import build_rtd_models

    cfg = tiny_config()
    vocab = json.loads((corpus["data"] / "manifest.json").read_text())["vocab_size"]
    ours = build_rtd_models(cfg, vocab)
    load_weights(find_checkpoint(tiny_run), ours)
    theirs = ElectraForPreTraining.from_pretrained(str(tiny_run / "discriminator"))
    ids = torch.randint(5, vocab, (2, 20), generator=torch.Generator().manual_seed(0))
    ours["discriminator"].eval()
    theirs.eval()
    with torch.no_grad():
        a = ours["discriminator"](input_ids=ids).logits
        b = theirs(input_ids=ids).logits
    assert torch.allclose(a, b, atol=1e-6)


def test_fill_mask_pipeline_runs_on_the_generator(tiny_run):
    from transformers import pipeline

    fill = pipeline("fill-mask", model=str(tiny_run / "generator"), device="cpu")
    out = fill("the cat [MASK] on the mat.", top_k=3)
    assert len(out) == 3 and all("token_str" in o for o in out)


def test_sequence_classification_loads_with_only_the_head_new(tiny_run):
    from transformers import ElectraForSequenceClassification

    model, info = ElectraForSequenceClassification.from_pretrained(str(tiny_run / "discriminator"), num_labels=2,
                                                                   output_loading_info=True)
    assert info["missing_keys"] and all(k.startswith("classifier.") for k in info["missing_keys"])


@pytest.mark.parametrize("stop_at", [2, 6])   # inside the 4-step warm-up, and inside the linear decay
def test_resume_in_a_new_process_continues_the_lr_schedule_exactly(corpus, tmp_path, stop_at):
    from resume_helpers import assert_same_run, resume_in_new_process

    cfg = tiny_config(steps=8, warmup_steps=4)
    full = pretrain(cfg, data=str(corpus["data"]), out=str(tmp_path / "full"), progress=False)
    part = pretrain(cfg, data=str(corpus["data"]), out=str(tmp_path / "part"), progress=False, stop_at=stop_at)
    assert json.loads((part / "checkpoints/last/state.json").read_text())["step"] == stop_at
    resume_in_new_process("text", "pretrain", part)
    assert_same_run(full, part)


def test_files_are_prepared_on_the_fly_and_mlm_objective_runs(corpus, tmp_path):
    run = pretrain(tiny_config(objective="mlm", steps=2), files=[str(corpus["text"])], out=str(tmp_path / "m"),
                   vocab_size=120, progress=False)
    assert (run / "data" / "manifest.json").is_file() and (run / "tokenizer" / "vocab.txt").is_file()
    assert (run / "mlm" / "model.safetensors").is_file()
    row = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert "mlm_loss" in row and "disc_loss" not in row


def test_repack_lays_each_rows_text_out_as_cls_a_sep_b_sep_pieces():
    from electra.text.corpus import repack

    cls, sep, pad = 2, 3, 0
    rows = torch.tensor([[cls, 10, 11, 12, sep, 13, 14, 15, 16, 17, 18, sep, pad, pad],
                         [cls, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, sep, pad]])
    pieces = repack(rows, 8, pad, sep, cls)   # 5 text tokens a piece: 2 in A, 3 in B
    assert pieces.tolist() == [[cls, 10, 11, sep, 12, 13, 14, sep],
                               [cls, 20, 21, sep, 22, 23, 24, sep], [cls, 25, 26, sep, 27, 28, 29, sep]]
    assert repack(rows[:, :5], 8, pad, sep, cls) is None   # no row has text for one piece


def test_short_rows_repack_each_row_for_the_first_steps_only(corpus):
    from electra.text.corpus import ShortRowsFirst, TokenShards

    shards = TokenShards(corpus["data"])
    ids = shards.special
    full = shards.batches(4, seed=0)
    short = ShortRowsFirst(full, 8, steps=3, pad_id=ids["pad"], sep_id=ids["sep"], cls_id=ids["cls"])
    for step in (0, 2):
        cut, whole = short(step), full(step)["input_ids"]
        text = [row[~torch.isin(row, torch.tensor([ids["pad"], ids["sep"], ids["cls"]]))] for row in whole]
        assert cut["input_ids"].shape == (sum(len(t) // 5 for t in text), 8)
        assert (cut["input_ids"][:, [0, 3, 7]] == torch.tensor([ids["cls"], ids["sep"], ids["sep"]])).all()
        body = cut["input_ids"][:, [1, 2, 4, 5, 6]].reshape(-1)   # every row's text, in order, row after row
        assert torch.equal(body, torch.cat([t[: len(t) // 5 * 5] for t in text]))
        assert (cut["attention_mask"] == 1).all()
        assert cut["token_type_ids"].tolist() == [[0, 0, 0, 0, 1, 1, 1, 1]] * len(cut["input_ids"])
    assert all(torch.equal(short(step)[k], full(step)[k]) for step in (3, 7) for k in full(step))


def test_a_run_with_short_rows_first_trains_on_them_then_on_full_rows(corpus, tmp_path, monkeypatch):
    import electra.text.pretrain as module
    from electra.text.corpus import ShortRowsFirst

    widths = {}

    class Recording(ShortRowsFirst):
        def __call__(self, step, micro=0):
            batch = super().__call__(step, micro)
            widths[step] = batch["input_ids"].shape[1]
            return batch

    monkeypatch.setattr(module, "ShortRowsFirst", Recording)
    run = pretrain(tiny_config(objective="mlm", steps=4, short_rows=8, short_rows_steps=2), data=str(corpus["data"]),
                   out=str(tmp_path / "s"), progress=False)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "mlm_loss" in r] == [1, 2, 3, 4]
    assert widths == {0: 8, 1: 8, 2: 32, 3: 32}
    assert all(np.isfinite(r["mlm_loss"]) for r in rows if "mlm_loss" in r)
    from electra.text.heldout import evaluate_text   # any evaluation length, the short rows' own included

    for seq_len in (8, 32):
        assert evaluate_text(run, [corpus["text"]], 20, seq_len=seq_len)["seq_len"] == seq_len


@pytest.mark.parametrize("short_rows", ["5", "32", "40", "-8"])   # too short, not shorter, longer, negative
def test_a_bad_short_rows_is_one_clear_error(short_rows):
    from electra.config import apply_overrides
    from electra.errors import UserError

    with pytest.raises(UserError, match="short_rows"):
        apply_overrides(tiny_config(), {"short_rows": short_rows}).validate()


def _weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


@pytest.mark.parametrize("objective", ["mlm", "rtd"])
def test_init_from_starts_where_the_given_run_ended(corpus, tmp_path, objective):
    """A run started from another (lr so small that one step moves nothing) exports that run's weights; a fresh
    run does not.  MLM runs continue from an MLM run, RTD runs from a generator/discriminator pair."""
    first = pretrain(tiny_config(objective=objective, steps=3), data=str(corpus["data"]), out=str(tmp_path / "a"),
                     progress=False)
    still = tiny_config(objective=objective, steps=1, lr=1e-12, seed=5)
    after = pretrain(still, data=str(corpus["data"]), out=str(tmp_path / "b"), init_from=str(first), progress=False)
    fresh = pretrain(still, data=str(corpus["data"]), out=str(tmp_path / "c"), progress=False)
    part = "mlm" if objective == "mlm" else "discriminator"
    ended, started, new = (_weights(run / part) for run in (first, after, fresh))
    name = "electra.encoder.layer.0.attention.self.query.weight"
    assert torch.allclose(started[name], ended[name], atol=1e-6)
    assert not torch.allclose(new[name], ended[name], atol=1e-3)
    saved = {run: json.loads((run / "config.json").read_text()) for run in (after, fresh)}
    assert saved[after]["init_from"] == str(first.resolve()) and "init_from" not in saved[fresh]
    resumed = pretrain(resume=str(after), overrides={"steps": 2}, progress=False)   # the fact does not block resume
    assert json.loads((resumed / "config.json").read_text())["init_from"] == str(first.resolve())
    # a run stopped before its first checkpoint starts again from the given weights, not from fresh ones
    shutil.rmtree(after / "checkpoints")
    again = pretrain(resume=str(after), overrides={"steps": 3}, progress=False)
    assert torch.allclose(_weights(again / part)[name], ended[name], atol=1e-6)


def test_init_from_a_folder_without_a_model_is_one_clear_error(capsys, corpus, tmp_path):
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(capsys, "text", "pretrain", "--data", str(corpus["data"]), "--objective", "mlm",
                           "--init-from", str(tmp_path / "empty"), "--steps", "1", "--out", str(tmp_path / "r"))
    assert_one_line_error(code, err, "masked-LM")
    assert not (tmp_path / "r").exists()


def test_prepare_packs_cls_a_sep_b_sep(corpus):
    manifest = json.loads((corpus["data"] / "manifest.json").read_text())
    rows = np.fromfile(corpus["data"] / manifest["shards"][0]["file"], dtype=manifest["dtype"]).reshape(-1, 32)
    ids = manifest["special_ids"]
    assert (rows[:, 0] == ids["cls"]).all()
    seps = (rows == ids["sep"]).sum(1)
    assert set(seps.tolist()) <= {1, 2} and (seps == 2).any()
    assert manifest["tokenizer_hash"] and manifest["rows"] == len(rows)


def test_file_documents_fill_rows_that_blank_lines_leave_short(capsys, corpus, tmp_path):
    from electra.text.corpus import prepare_corpus

    def stats(documents):
        out = prepare_corpus([corpus["text"]], corpus["tokenizer"], 32, tmp_path / documents, progress=False,
                             documents=documents)
        m = json.loads((out / "manifest.json").read_text())
        return m["documents"], m["tokens"] / (m["rows"] * 32)

    docs_blank, fill_blank = stats("blank-line")
    docs_file, fill_file = stats("file")
    assert docs_blank == 60 and docs_file == 1  # write_corpus: 60 paragraphs in one file
    assert fill_file > fill_blank + 0.1
    code, _, err = _cli(capsys, "prepare", "--files", str(corpus["text"]), "--tokenizer", str(corpus["tokenizer"]),
                        "--out", str(tmp_path / "bad"), "--documents", "page")
    assert_one_line_error(code, err, "--documents")
    assert not (tmp_path / "bad").exists()


def test_builder_follows_the_official_packing():
    import random

    from electra.text.corpus import ExampleBuilder

    builder = ExampleBuilder(16, random.Random(0))
    assert builder.add([5] * 6) is None and builder.add([6] * 6) is None
    a, b = builder.add([7] * 6)  # 18 ≥ 16 tokens: an example, trimmed to fit [CLS] A [SEP] B [SEP]
    assert len(a) + len(b) + 3 <= 16 and a[0] == 5
    assert builder.add(None) is None  # a document boundary with nothing pending emits nothing


def _cli(capsys, *argv):
    return run_cli(capsys, "text", *argv)


def test_bad_text_inputs(capsys, corpus, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n   \n")
    code, _, err = _cli(capsys, "prepare", "--files", str(empty), "--tokenizer", str(corpus["tokenizer"]),
                        "--out", str(tmp_path / "o1"))
    assert_one_line_error(code, err, "is empty")
    binary = tmp_path / "blob.txt"
    binary.write_bytes(b"hello\x00\x01\x02")
    code, _, err = _cli(capsys, "prepare", "--files", str(binary), "--tokenizer", str(corpus["tokenizer"]),
                        "--out", str(tmp_path / "o2"))
    assert_one_line_error(code, err, "blob.txt", "offset 5")
    latin = tmp_path / "latin.txt"
    latin.write_bytes("the cat sat on the mat.\ncaf\xe9 au lait\n".encode("latin-1"))
    code, _, err = _cli(capsys, "prepare", "--files", str(latin), "--tokenizer", str(corpus["tokenizer"]),
                        "--out", str(tmp_path / "o3"))
    assert_one_line_error(code, err, "latin.txt", "byte offset 27", "--encoding")
    assert not (tmp_path / "o3").exists()
    code, _, _ = _cli(capsys, "prepare", "--files", str(latin), "--tokenizer", str(corpus["tokenizer"]),
                      "--out", str(tmp_path / "o4"), "--encoding", "latin-1")
    assert code == 0 and (tmp_path / "o4" / "manifest.json").is_file()


def test_bad_tokenizers(capsys, corpus, tmp_path):
    code, _, err = _cli(capsys, "prepare", "--files", str(corpus["text"]), "--tokenizer", str(tmp_path / "none"),
                        "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, "does not exist")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "tokenizer.json").write_text("{not json")
    code, _, err = _cli(capsys, "prepare", "--files", str(corpus["text"]), "--tokenizer", str(bad),
                        "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, "malformed")
    (tmp_path / "vocab.txt").write_text("hello\nworld\n")
    code, _, err = _cli(capsys, "prepare", "--files", str(corpus["text"]), "--tokenizer", str(tmp_path / "vocab.txt"),
                        "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, "lacks the special tokens")


def test_shards_from_another_tokenizer(capsys, corpus, tmp_path):
    from electra.text.tokenizer import train_tokenizer

    other = train_tokenizer([write_corpus(tmp_path / "c.txt", seed=9)], 90, tmp_path / "other", min_frequency=1)
    code, _, err = _cli(capsys, "pretrain", "--data", str(corpus["data"]), "--tokenizer", str(other), "--out",
                        str(tmp_path / "run"), "--quiet")
    assert_one_line_error(code, err, "another tokenizer")
    assert not (tmp_path / "run").exists()


def test_seq_len_beyond_positions(capsys, corpus, tmp_path):
    code, _, err = _cli(capsys, "pretrain", "--data", str(corpus["data"]), "--seq-len", "1024", "--out",
                        str(tmp_path / "run"))
    assert_one_line_error(code, err, "seq_len must lie in")


def test_truncated_shard(capsys, corpus, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(corpus["data"], data)
    shard = next(data.glob("shard-*.bin"))
    shard.write_bytes(shard.read_bytes()[:100])
    code, _, err = _cli(capsys, "pretrain", "--data", str(data), "--out", str(tmp_path / "run"))
    assert_one_line_error(code, err, "truncated")
    assert not (tmp_path / "run").exists()


def test_resume_from_an_image_run(capsys, tmp_path, mnist_dir):
    from test_cli import TINY_ARGS

    image_run = tmp_path / "img"
    assert run_cli(capsys, "image", "train", "--data-dir", str(mnist_dir), "--steps", "1", "--out", str(image_run),
                   *TINY_ARGS)[0] == 0
    code, _, err = _cli(capsys, "pretrain", "--resume", str(image_run))
    assert_one_line_error(code, err, "is an image run")
