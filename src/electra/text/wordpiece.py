"""A deterministic WordPiece vocabulary trainer.

The vocabulary is learned the way the HF ``WordPieceTrainer`` learns it (BPE merges over the corpus' words, every
symbol after a word's first carrying the ``##`` prefix, a merge of ``a`` and ``##b`` giving ``ab``), with one
difference that matters: among pairs of equal frequency the lexicographically smallest merges first.  The HF
trainer breaks those ties by hash-map order, which changes from run to run (huggingface/tokenizers#1794), so the
same text gave different vocabularies, shards and models.  Here the same text and settings always give the same
vocabulary, whatever the thread count or hash seed.

Words are found by BERT's own normaliser and pre-tokeniser (the Rust ones the tokenizer later encodes with), so
the vocabulary fits the encoder exactly.
"""

from __future__ import annotations

import heapq
from collections import Counter
from typing import Iterable

PREFIX = "##"


def count_words(texts: Iterable[str], normalizer, pre_tokenizer) -> Counter:
    """How often each pre-tokenised word occurs.  BERT's normalisation and pre-tokenisation act on each
    whitespace-separated chunk of text independently, so the chunks are counted first (C speed) and only the
    distinct ones go through the Rust normaliser and pre-tokeniser, which are slow per character from Python.  (The
    one difference: Python also splits at the control characters U+001C–U+001F, which BERT deletes.)"""
    chunks: Counter = Counter()
    for line in texts:
        if line:
            chunks.update(line.split())
    counts: Counter = Counter()
    for chunk, n in chunks.items():
        for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(chunk)):
            counts[word] += n
    return counts


def learn_vocabulary(word_counts: dict[str, int], vocab_size: int, special_tokens: list[str],
                     min_frequency: int = 2) -> list[str]:
    """The WordPiece vocabulary: special tokens, every character (word-initial and ``##`` forms that occur), then
    merged pieces in merge order until ``vocab_size`` or until the most frequent pair is rarer than
    ``min_frequency``."""
    words = sorted(word_counts)
    counts = [word_counts[w] for w in words]
    symbols = [[w[0]] + [PREFIX + c for c in w[1:]] for w in words]
    vocab = list(special_tokens)
    known = set(vocab)
    for token in sorted({s for word in symbols for s in word}):
        if token not in known:
            vocab.append(token)
            known.add(token)

    pair_counts: dict[tuple[str, str], int] = {}
    where: dict[tuple[str, str], set[int]] = {}
    for i, word in enumerate(symbols):
        for pair in zip(word, word[1:]):
            pair_counts[pair] = pair_counts.get(pair, 0) + counts[i]
            where.setdefault(pair, set()).add(i)
    heap = [(-c, a, b) for (a, b), c in pair_counts.items()]
    heapq.heapify(heap)

    while len(vocab) < vocab_size and heap:
        negative, a, b = heapq.heappop(heap)
        current = pair_counts.get((a, b), 0)
        if current != -negative:        # a stale entry: its count changed since it was pushed
            if current > 0:
                heapq.heappush(heap, (-current, a, b))
            continue
        if current < min_frequency:
            break
        merged = a + b[len(PREFIX):]
        if merged not in known:
            vocab.append(merged)
            known.add(merged)
        touched: set[tuple[str, str]] = set()
        for i in where.pop((a, b)):
            word, n = symbols[i], counts[i]
            for pair in zip(word, word[1:]):
                pair_counts[pair] -= n
                touched.add(pair)
            out, j = [], 0
            while j < len(word):
                if j + 1 < len(word) and word[j] == a and word[j + 1] == b:
                    out.append(merged)
                    j += 2
                else:
                    out.append(word[j])
                    j += 1
            symbols[i] = out
            for pair in zip(out, out[1:]):
                pair_counts[pair] = pair_counts.get(pair, 0) + n
                where.setdefault(pair, set()).add(i)
                touched.add(pair)
        pair_counts.pop((a, b), None)
        for pair in touched:
            c = pair_counts.get(pair, 0)
            if c > 0:
                heapq.heappush(heap, (-c, *pair))
            else:
                pair_counts.pop(pair, None)
    return vocab
