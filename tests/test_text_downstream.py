"""Fine-tuning, prediction, fill and detect: scorers, GLUE readers, layer-wise decay, tiny end-to-end runs."""

import json
import random

import numpy as np
import pytest
import torch

from electra.text.finetune import finetune, layer_depth, layerwise_param_groups, predict
from electra.text.tasks import accuracy, f1_binary, get_task, matthews, pearson, read_split, spearman

from test_cli import assert_one_line_error, run_cli
from text_fixtures import tiny_config


def test_scorers_match_scikit_learn_and_scipy():
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    rng = np.random.default_rng(0)
    gold = rng.integers(0, 2, 200)
    pred = np.where(rng.random(200) < 0.7, gold, 1 - gold)
    assert accuracy(pred, gold) == pytest.approx(accuracy_score(gold, pred))
    assert f1_binary(pred, gold) == pytest.approx(f1_score(gold, pred))
    assert matthews(pred, gold) == pytest.approx(matthews_corrcoef(gold, pred))
    x = rng.normal(size=100)
    y = x + rng.normal(size=100)
    y[:10] = y[10]  # ties
    assert pearson(x, y) == pytest.approx(pearsonr(x, y)[0])
    assert spearman(x, y) == pytest.approx(spearmanr(x, y)[0])
    assert matthews([1, 1, 1], [1, 1, 1]) == 0.0  # degenerate: no variance


def write_task(root, name, files):
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    for fname, lines in files.items():
        (folder / fname).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def test_cola_has_no_header(tmp_path):
    write_task(tmp_path, "CoLA", {"train.tsv": ["gj04\t1\t\tthe cat sat .", "gj04\t0\t*\tcat the sat ."]})
    ex = read_split(get_task("cola"), tmp_path, "train.tsv")
    assert ex.texts == [("the cat sat .",), ("cat the sat .",)] and ex.labels == [1, 0]


def test_mnli_has_two_dev_sets_and_label_in_last_column(tmp_path):
    header = "\t".join(["index", "promptID", "pairID", "genre", "s1bp", "s2bp", "s1p", "s2p", "sentence1",
                        "sentence2", "label1", "gold_label"])
    row = lambda lab: "\t".join(["0", "1", "2", "g", "x", "x", "x", "x", "a man sleeps", "a man is awake", lab, lab])
    write_task(tmp_path, "MNLI", {"dev_matched.tsv": [header, row("contradiction")],
                                  "dev_mismatched.tsv": [header, row("neutral"), row("entailment")]})
    task = get_task("mnli")
    assert task.dev_files == ("dev_matched.tsv", "dev_mismatched.tsv")
    assert read_split(task, tmp_path, "dev_mismatched.tsv").labels == [2, 1]
    assert read_split(task, tmp_path, "dev_matched.tsv").texts == [("a man sleeps", "a man is awake")]


def test_real_glue_files_read(tmp_path):
    from conftest import shared_data

    glue = shared_data("glue")
    counts = {"cola": 8551, "sst-2": 67349, "mrpc": 3668, "sts-b": 5749, "rte": 2490, "wnli": 635}
    for name, n in counts.items():
        assert len(read_split(get_task(name), glue, "train.tsv").texts) == n, name
    assert len(read_split(get_task("sst-2"), glue, "test.tsv", test=True).ids) == 1821
    assert read_split(get_task("sts-b"), glue, "dev.tsv").labels[0] == 5.0


def test_wrong_column_count_names_the_line(tmp_path):
    write_task(tmp_path, "RTE", {"train.tsv": ["index\tsentence1\tsentence2\tlabel", "0\ta\tb\tentailment",
                                              "1\tonly two"]})
    with pytest.raises(Exception, match=r"train.tsv line 3 has 2 columns, expected 4"):
        read_split(get_task("rte"), tmp_path, "train.tsv")


def test_length_grouped_batches_cover_the_epoch_pad_less_and_stay_seeded():
    from electra.core.batches import StepBatches, length_grouped

    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(3, 80, (1000,), generator=g, device="cpu")

    def epoch(order, seed=0, first_step=0):
        batches = StepBatches(1000, lambda i: i, 32, seed, order=order)
        return [batches(first_step + s) for s in range(batches.steps_per_epoch)]

    grouped, plain = epoch(length_grouped(lengths, 32, 0)), epoch(None)
    assert sorted(torch.cat(grouped).tolist()) == sorted(torch.cat(plain).tolist())   # the same examples, once each
    padded = lambda batches: np.mean([int(lengths[b].max()) for b in batches])  # noqa: E731
    assert padded(grouped) < 0.7 * padded(plain)
    assert np.mean([float(lengths[b].max() - lengths[b].min()) for b in grouped]) < 10
    again = epoch(length_grouped(lengths, 32, 0))
    assert all(torch.equal(a, b) for a, b in zip(grouped, again))            # a function of seed and epoch
    next_epoch = epoch(length_grouped(lengths, 32, 0), first_step=len(grouped))
    assert not all(torch.equal(a, b) for a, b in zip(grouped, next_epoch))
    other_seed = epoch(length_grouped(lengths, 32, 1), seed=1)
    assert not all(torch.equal(a, b) for a, b in zip(grouped, other_seed))


def test_a_finetuning_folder_saved_without_length_grouping_resumes_without_it():
    from electra.text.finetune import finetune_config_from_dict

    assert finetune_config_from_dict({"seed": 3}).group_by_length is False
    assert finetune_config_from_dict({"seed": 3, "group_by_length": True}).group_by_length is True


def test_layerwise_decay_values():
    from transformers import ElectraConfig, ElectraForSequenceClassification

    cfg = ElectraConfig(vocab_size=50, embedding_size=8, hidden_size=8, num_hidden_layers=3, num_attention_heads=2,
                        intermediate_size=16)
    model = ElectraForSequenceClassification(cfg)
    assert layer_depth("electra.embeddings.word_embeddings.weight", 3) == 0
    assert layer_depth("electra.encoder.layer.2.output.dense.weight", 3) == 3
    assert layer_depth("classifier.out_proj.weight", 3) == 5
    groups = layerwise_param_groups(model, 1.0, 0.8, 0.01)
    by_depth = {g["depth"]: g["lr"] for g in groups}
    assert by_depth == pytest.approx({0: 0.8**5, 1: 0.8**4, 2: 0.8**3, 3: 0.8**2, 5: 1.0})
    assert all(g["weight_decay"] == 0.0 for g in groups if any(p.dim() == 1 for p in g["params"]))


def test_recipe_lr_and_layer_decay_follow_the_model_size():
    from electra.text.finetune import recipe_for

    assert recipe_for(256) == (3e-4, 0.8) and recipe_for(128) == (3e-4, 0.8)   # Small, and the CPU tiny sizes
    assert recipe_for(768) == (1e-4, 0.8)                                        # Base
    assert recipe_for(1024) == (5e-5, 0.9)                                       # Large


def _sentiment_glue(root, n_train=240, n_dev=80, seed=0):
    rng = random.Random(seed)
    words = ["film", "story", "acting", "music", "plot", "ending", "cast", "scenes"]

    def line():
        label = rng.randint(0, 1)
        adj = rng.choice(["great", "wonderful", "superb"] if label else ["awful", "boring", "terrible"])
        return f"the {rng.choice(words)} was {adj} and the {rng.choice(words)} too\t{label}"

    write_task(root, "SST-2", {"train.tsv": ["sentence\tlabel"] + [line() for _ in range(n_train)],
                               "dev.tsv": ["sentence\tlabel"] + [line() for _ in range(n_dev)],
                               "test.tsv": ["index\tsentence"] + [f"{i}\t{line().split(chr(9))[0]}" for i in range(5)]})
    return root


@pytest.fixture(scope="module")
def sentiment_model(tmp_path_factory):
    """A tiny run whose vocabulary covers the synthetic sentiment task."""
    from electra.text.pretrain import pretrain

    root = tmp_path_factory.mktemp("sent")
    glue = _sentiment_glue(root / "glue")
    text = root / "corpus.txt"
    text.write_text("\n".join(l.split("\t")[0] for l in (glue / "SST-2" / "train.tsv").read_text().splitlines()[1:]))
    run = pretrain(tiny_config(steps=2, hidden_size=32, embedding_size=32, intermediate_size=64), files=[str(text)],
                   out=str(root / "run"), vocab_size=100, progress=False)
    return run, glue


def test_tiny_finetune_beats_the_majority_class_and_predicts(sentiment_model, tmp_path):
    run, glue = sentiment_model
    result = finetune(run, "sst-2", glue, out=tmp_path / "ft", progress=False,
                      overrides={"epochs": 6, "lr": 3e-3, "seeds": 2, "batch_size": 16})
    dev_labels = read_split(get_task("sst-2"), glue, "dev.tsv").labels
    majority = max(np.mean(dev_labels), 1 - np.mean(dev_labels))
    assert result["main_score"] > majority + 0.15
    assert len(result["seeds"]) == 2 and (tmp_path / "ft" / "results.json").is_file()
    assert (result["lr"], result["layer_decay"]) == (3e-3, 0.8)   # given lr kept, decay from the size recipe
    from transformers import ElectraForSequenceClassification

    ElectraForSequenceClassification.from_pretrained(str(tmp_path / "ft" / "seed-0" / "model"))
    files = predict(tmp_path / "ft" / "seed-0", "sst-2", glue, out=tmp_path / "pred")
    lines = files[0].read_text().splitlines()
    assert lines[0] == "index\tprediction" and len(lines) == 6 and lines[1].split("\t")[1] in ("0", "1")


def test_dropout_overrides_the_models_own_when_finetuning(sentiment_model, tmp_path):
    import json

    run, glue = sentiment_model
    for rate, out in ((None, "own"), (0.3, "set")):
        finetune(run, "sst-2", glue, out=tmp_path / out, progress=False,
                 overrides={"epochs": 1, "max_train_examples": 16, **({} if rate is None else {"dropout": rate})})
    saved = {out: json.loads((tmp_path / out / "seed-0" / "model" / "config.json").read_text())
             for out in ("own", "set")}
    own = json.loads((run / "discriminator" / "config.json").read_text())["hidden_dropout_prob"]
    assert saved["own"]["hidden_dropout_prob"] == own
    assert saved["set"]["hidden_dropout_prob"] == saved["set"]["attention_probs_dropout_prob"] == 0.3 != own
    from electra.errors import UserError

    with pytest.raises(UserError, match="dropout"):
        finetune(run, "sst-2", glue, out=tmp_path / "bad", progress=False, overrides={"dropout": 1.5})


@pytest.fixture(scope="module")
def trained_pair(corpus, tmp_path_factory):
    """A tiny model pre-trained long enough on the synthetic grammar for its discriminator to work."""
    from electra.text.pretrain import pretrain

    out = tmp_path_factory.mktemp("det") / "run"
    cfg = tiny_config(steps=300, warmup_steps=30, lr=2e-3, hidden_size=32, embedding_size=32, intermediate_size=64,
                      batch_size=16, log_every=50, dropout=0.0)
    return pretrain(cfg, data=str(corpus["data"]), out=str(out), progress=False)


def test_detect_scores_swapped_words_higher(trained_pair):
    from electra.text.generate import Detector

    det = Detector(trained_pair)
    clean = det.detect("the cat sat on the mat. the old man found a tree.")
    swapped = det.detect("the cat sat on the garden. the old king found a moon.")
    assert len(clean.tokens) == len(swapped.tokens)
    changed = [i for i, (a, b) in enumerate(zip(clean.tokens, swapped.tokens)) if a != b]
    same = [i for i in range(len(swapped.tokens)) if i not in changed]
    assert changed
    assert np.mean([swapped.probabilities[i] for i in changed]) > np.mean([swapped.probabilities[i] for i in same])


def test_fill_top_k_and_iterative(trained_pair, capsys):
    from electra.text.generate import Filler

    filler = Filler(trained_pair)
    filled = filler.fill("the cat [MASK] on the [MASK].", top_k=3)
    assert len(filled.candidates) == 2 and all(len(c) == 3 for c in filled.candidates)
    assert "[MASK]" not in filled.text
    assert all(c[0][1] >= c[1][1] >= c[2][1] for c in filled.candidates)
    it = filler.fill("the [MASK] [MASK] on the mat.", top_k=2, iterative=True)
    assert "[MASK]" not in it.text
    code, out, _ = run_cli(capsys, "text", "fill", str(trained_pair), "the cat [MASK] on the mat.", "--json")
    assert code == 0 and len(json.loads(out)["candidates"]) == 1
    code, out, _ = run_cli(capsys, "text", "detect", str(trained_pair), "the cat sat on the mat.", "--json")
    assert code == 0 and len(json.loads(out)["replaced_probability"]) == len(json.loads(out)["tokens"])


def test_long_sentence_is_truncated_with_a_warning(trained_pair, capsys):
    long = " ".join(["the cat sat on the mat."] * 40)
    code, out, err = run_cli(capsys, "text", "detect", str(trained_pair), long)
    assert code == 0 and "truncated" in err


@pytest.mark.parametrize("argv,fragment", [
    (["detect", "{run}", ""], "the text is empty"),
    (["fill", "{run}", "no masks here"], "no [MASK] token"),
    (["detect", "{tmp}/nothing", "hello"], "does not exist"),
    (["finetune", "{run}", "--task", "snli", "--data-dir", "{tmp}"], "unknown task 'snli'"),
    (["finetune", "{run}", "--task", "rte", "--data-dir", "{tmp}"], "missing file"),
])
def test_bad_downstream_input(capsys, trained_pair, tmp_path, argv, fragment):
    argv = [a.format(run=trained_pair, tmp=tmp_path) for a in argv]
    code, _, err = run_cli(capsys, "text", *argv)
    assert_one_line_error(code, err, fragment)


def test_a_model_that_is_not_electra(capsys, tmp_path):
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    code, _, err = run_cli(capsys, "text", "detect", str(tmp_path / "bert"), "hello")
    assert_one_line_error(code, err, "not an ELECTRA")


def test_an_interrupted_finetuning_resumes_keeping_finished_seeds(sentiment_model, tmp_path, capsys):
    run, glue = sentiment_model
    settings = {"epochs": 2, "lr": 3e-3, "batch_size": 16}
    straight = finetune(run, "sst-2", glue, out=tmp_path / "straight", progress=False,
                        overrides={**settings, "seeds": 3})
    job = tmp_path / "job"
    finetune(run, "sst-2", glue, out=job, progress=False, overrides={**settings, "seeds": 1})
    kept = (job / "seed-0" / "model" / "model.safetensors").stat().st_mtime_ns
    (job / "seed-1").mkdir()                                 # a seed killed before it finished
    (job / "seed-1" / "metrics.jsonl").write_text('{"step": 3, "loss": 0.')
    code, out, err = run_cli(capsys, "text", "finetune", "--resume", str(job), "--seeds", "3", "--quiet")
    assert code == 0, err
    resumed = json.loads((job / "results.json").read_text())
    assert [s["scores"] for s in resumed["seeds"]] == [s["scores"] for s in straight["seeds"]]
    assert resumed["main_score"] == straight["main_score"]
    assert (job / "seed-0" / "model" / "model.safetensors").stat().st_mtime_ns == kept   # not trained again
    code, _, err = run_cli(capsys, "text", "finetune", "--resume", str(job), "--lr", "0.1")
    assert_one_line_error(code, err, "cannot change lr when resuming")


def test_a_seed_stopped_mid_way_resumes_in_a_new_process_to_the_same_model(sentiment_model, tmp_path):
    from safetensors.torch import load_file

    from resume_helpers import run_electra

    run, glue = sentiment_model
    settings = {"epochs": 2, "lr": 3e-3, "batch_size": 16, "seeds": 2, "checkpoint_every": 2}
    straight = finetune(run, "sst-2", glue, out=tmp_path / "straight", progress=False, overrides=settings)
    job = tmp_path / "job"
    stopped = finetune(run, "sst-2", glue, out=job, progress=False, overrides=settings, stop_at=3)
    assert stopped["stopped_at"] == {"seed": 0, "step": 3}
    assert not (job / "seed-0" / "scores.json").exists() and (job / "seed-0/checkpoints/last/state.json").is_file()
    done = run_electra("text", "finetune", "--resume", str(job))   # a new process
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming at step 3" in done.stderr      # continued, not trained again from the start
    resumed = json.loads((job / "results.json").read_text())
    assert [s["scores"] for s in resumed["seeds"]] == [s["scores"] for s in straight["seeds"]]
    for seed in (0, 1):
        a = load_file(str(tmp_path / "straight" / f"seed-{seed}/model/model.safetensors"))
        b = load_file(str(job / f"seed-{seed}/model/model.safetensors"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        assert not (job / f"seed-{seed}" / "checkpoints").exists()   # a finished seed keeps only its model
