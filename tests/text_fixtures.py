"""Tiny text corpora, tokenizers and configs for the text-track tests."""

import random

from electra.config import apply_overrides
from electra.text.config import preset_config

SUBJECTS = ["the cat", "a dog", "the old man", "my sister", "the bird", "a child", "the king", "her friend"]
VERBS = ["sat on", "looked at", "walked to", "jumped over", "sang to", "ran past", "found", "painted"]
OBJECTS = ["the mat", "a tree", "the river", "the red house", "a small boat", "the garden", "the hill", "the moon"]


def write_corpus(path, documents=60, seed=0):
    rng = random.Random(seed)
    lines = []
    for _ in range(documents):
        for _ in range(rng.randint(2, 6)):
            lines.append(f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}.")
        lines.append("")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def tiny_config(**extra):
    return apply_overrides(preset_config("tiny"), {
        "embedding_size": 16, "hidden_size": 16, "num_layers": 1, "num_heads": 2, "intermediate_size": 32,
        "max_position_embeddings": 64, "batch_size": 4, "seq_len": 32, "steps": 4, "warmup_steps": 2,
        "log_every": 1, "checkpoint_every": 100, "plateau_check_step": 0, **extra})
