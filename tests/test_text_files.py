"""Compressed corpora and the deterministic WordPiece trainer."""

import bz2
import gzip
import lzma
import os
import random
import subprocess
import sys
from collections import Counter

import pytest

from electra.text.corpus import prepare_corpus
from electra.text.text_files import TextFiles
from electra.text.tokenizer import SPECIAL_TOKENS, train_tokenizer
from electra.text.wordpiece import learn_vocabulary

from test_cli import assert_one_line_error, run_cli
from text_fixtures import write_corpus

COMPRESSORS = {"gz": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress}


def compressed_copy(path, suffix):
    out = path.with_name(path.name + "." + suffix)
    out.write_bytes(COMPRESSORS[suffix](path.read_bytes()))
    return out


@pytest.mark.parametrize("suffix", sorted(COMPRESSORS))
def test_a_compressed_corpus_prepares_the_same_shards_as_the_plain_one(corpus, tmp_path, suffix):
    text = corpus["text"]
    packed = compressed_copy(text, suffix)
    lines = list(TextFiles([text]).lines())
    assert list(TextFiles([packed]).lines()) == lines and lines.count(None) == 1
    plain = prepare_corpus([text], corpus["tokenizer"], 32, tmp_path / "plain", progress=False)
    other = prepare_corpus([packed], corpus["tokenizer"], 32, tmp_path / "packed", progress=False)
    shards = sorted(p.name for p in plain.glob("shard-*.bin"))
    assert shards and shards == sorted(p.name for p in other.glob("shard-*.bin"))
    for name in shards:
        assert (plain / name).read_bytes() == (other / name).read_bytes()


def test_compression_is_recognised_by_content_not_name(tmp_path):
    fake = tmp_path / "notes.txt"
    fake.write_bytes(gzip.compress(b"one line\r\ntwo\n\nthree"))
    assert list(TextFiles([fake]).lines()) == ["one line", "two", "", "three", None]


@pytest.mark.parametrize("suffix", sorted(COMPRESSORS))
def test_a_damaged_compressed_file_is_one_line(capsys, corpus, tmp_path, suffix):
    packed = compressed_copy(corpus["text"], suffix)
    data = packed.read_bytes()
    packed.write_bytes(data[: len(data) // 2])  # truncated mid-stream
    code, _, err = run_cli(capsys, "text", "prepare", "--files", str(packed), "--tokenizer", str(corpus["tokenizer"]),
                           "--out", str(tmp_path / "out"))
    assert_one_line_error(code, err, str(packed), "damaged")
    assert not (tmp_path / "out").exists()


def test_binary_inside_a_gzip_is_refused(capsys, corpus, tmp_path):
    packed = tmp_path / "bin.gz"
    packed.write_bytes(gzip.compress(b"text\x00\x01\x02"))
    code, _, err = run_cli(capsys, "text", "tokenizer", "--files", str(packed), "--out", str(tmp_path / "tok"))
    assert_one_line_error(code, err, "looks binary")


def test_learned_merges_follow_frequency_then_lexicographic_order():
    # h ##e ##l ##l ##o ×5, l ##o ##w ×2, h ##e ×1
    counts = Counter({"hello": 5, "low": 2, "he": 1})
    vocab = learn_vocabulary(counts, len(SPECIAL_TOKENS) + 9, SPECIAL_TOKENS, min_frequency=2)
    alphabet = ["##e", "##l", "##o", "##w", "h", "l"]
    assert vocab[: len(SPECIAL_TOKENS) + len(alphabet)] == SPECIAL_TOKENS + alphabet
    # (h, ##e) is the most frequent pair (6); it leaves he ##l ##l ##o, whose three pairs tie at 5: the smallest,
    # (##l, ##l), merges ("#" sorts before letters); then (##ll, ##o) beats (he, ##ll)
    assert vocab[len(SPECIAL_TOKENS) + len(alphabet):] == ["he", "##ll", "##llo"]


def test_min_frequency_stops_the_merges():
    vocab = learn_vocabulary(Counter({"ab": 1, "cd": 1}), 100, SPECIAL_TOKENS, min_frequency=2)
    assert "ab" not in vocab and "cd" not in vocab and "##b" in vocab


TRAIN = "from electra.text.tokenizer import train_tokenizer; import sys; train_tokenizer(sys.argv[1:-1], 300, " \
        "sys.argv[-1], min_frequency=1)"


def test_the_same_text_trains_the_same_tokenizer_bytes_in_any_process(tmp_path):
    """Separate processes with different hash seeds and thread counts, on a corpus full of frequency ties (random
    words over ten letters): HF's WordPieceTrainer gave another vocabulary in 1 of 4 such processes."""
    rng = random.Random(0)
    words = ["".join(rng.choice("abcdefghij") for _ in range(rng.randint(3, 7))) for _ in range(1500)]
    text = tmp_path / "ties.txt"
    text.write_text("".join(" ".join(rng.choice(words) for _ in range(12)) + "\n" for _ in range(400)))
    outs = []
    for i, (hash_seed, threads) in enumerate([("1", "1"), ("2", "2"), ("3", "4"), ("4", "1")]):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "RAYON_NUM_THREADS": threads}
        subprocess.run([sys.executable, "-c", TRAIN, str(text), str(tmp_path / f"tok{i}")], check=True, env=env)
        outs.append(tmp_path / f"tok{i}")
    for name in ("vocab.txt", "tokenizer.json"):
        first = (outs[0] / name).read_bytes()
        assert all((o / name).read_bytes() == first for o in outs[1:]), name
    assert (outs[0] / "vocab.txt").read_text().splitlines()[:5] == SPECIAL_TOKENS


def test_a_compressed_corpus_trains_the_same_tokenizer(tmp_path):
    text = write_corpus(tmp_path / "c.txt", seed=5)
    plain = train_tokenizer([text], 120, tmp_path / "plain", min_frequency=1)
    packed = train_tokenizer([compressed_copy(text, "xz")], 120, tmp_path / "packed", min_frequency=1)
    assert (plain / "vocab.txt").read_bytes() == (packed / "vocab.txt").read_bytes()


def test_the_trained_tokenizer_encodes_its_corpus_without_unknowns(tmp_path):
    from electra.text.tokenizer import load_tokenizer

    text = write_corpus(tmp_path / "c.txt", seed=6)
    tokenizer = load_tokenizer(train_tokenizer([text], 200, tmp_path / "tok", min_frequency=1))
    ids = tokenizer.encode(text.read_text()[:2000]).ids
    assert tokenizer.token_to_id("[UNK]") not in ids and len(ids) > 100


def test_special_tokens_in_text_stay_whole(tmp_path):
    from electra.text.tokenizer import load_tokenizer

    folder = train_tokenizer([write_corpus(tmp_path / "c.txt", seed=8)], 120, tmp_path / "tok", min_frequency=1)
    for source in (folder, folder / "vocab.txt"):
        tokens = load_tokenizer(source).encode("the cat [MASK] on the [SEP] mat.").tokens
        assert tokens[3] == "[MASK]" and "[SEP]" in tokens[4:-1], (source, tokens)


def test_paragraph_lines_are_packed_in_pieces_not_truncated(corpus, tmp_path):
    """A corpus of one long paragraph per line (books): rows keep most of the text, where truncating each line at
    the row's end would keep under a fifth of it."""
    import json

    rng = random.Random(3)
    words = "the cat sat on a mat and the old man found a red boat by the river".split()
    text = tmp_path / "paragraphs.txt"
    text.write_text("".join(" ".join(rng.choice(words) for _ in range(150)) + ".\n" for _ in range(20)))
    out = prepare_corpus([text], corpus["tokenizer"], 32, tmp_path / "shards", progress=False, documents="file")
    m = json.loads((out / "manifest.json").read_text())
    kept = (m["tokens"] - 3 * m["rows"]) / m["corpus_tokens"]   # at most 3 special tokens per row
    assert m["corpus_tokens"] > 20 * 150 and kept > 0.9, kept
