"""What a user sees from a pre-trained text model: ``fill`` and ``detect`` on held-out sentences.

    python benchmarks/text_examples.py MODEL [MODEL ...] [--sentences 200] [--show 4] [--seed 0]

For each model (a text run folder; the ``text_quality`` runs live in ``benchmarks/work/text_quality/``), on the same
seeded draw of held-out sentences (half from ``gutenberg-40m/valid``, half from ``wiki-leads``, 8–25 words):
- **fill**: one word of four letters or more, chosen at random, becomes ``[MASK]``; the generator (or MLM model)
  proposes its top 5.  Counted, over the words the vocabulary holds as one token: the original word first / among
  the five; and over all sentences how many distinct words the model
  puts first over all sentences (a model that answers from word frequency alone puts the same few words first
  everywhere);
- **detect**: one such word is swapped for another word drawn from the other sentences; the discriminator gives
  every token P(replaced).  Counted: how often the swapped word's first piece is the most suspicious token, and
  the mean P(replaced) of swapped and of untouched tokens.
The first ``--show`` sentences are printed as examples (the results document quotes them).  One JSON per model in
``benchmarks/results/text_quality/examples-NAME.json``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import SHARED, say  # noqa: E402

RESULTS = HERE / "results" / "text_quality"
SOURCES = {"gutenberg": SHARED / "text" / "gutenberg-40m" / "valid.txt.gz",
           "wiki": SHARED / "text" / "wiki-leads" / "valid.txt.gz"}
WORD = re.compile(r"^[A-Za-z]{4,}$")


def sentences(path: Path, n: int, rng: random.Random, max_lines: int = 20_000) -> list[str]:
    """``n`` sentences of 8–25 words drawn from the first ``max_lines`` paragraphs of ``path``."""
    pool = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i >= max_lines:
                break
            for s in re.split(r"(?<=[.!?])\s+", line.strip()):
                words = s.split()
                if 8 <= len(words) <= 25 and s.isascii() and sum(bool(WORD.match(w)) for w in words) >= 2:
                    pool.append(s)
    return rng.sample(pool, n)


def candidates(words: list[str]) -> list[int]:
    return [i for i, w in enumerate(words) if WORD.match(w)]


def main() -> None:
    from electra.text.generate import Detector, Filler
    from electra.text.hf_io import model_parts

    parser = argparse.ArgumentParser()
    parser.add_argument("models", nargs="+")
    parser.add_argument("--sentences", type=int, default=200)
    parser.add_argument("--show", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    texts = [s for path in SOURCES.values() for s in sentences(path, args.sentences // 2, rng)]
    vocabulary = sorted({w for s in texts for w in s.split() if WORD.match(w)})
    plan = []   # the same masked and swapped positions for every model
    for s in texts:
        words = s.split()
        masked, swapped = rng.choice(candidates(words)), rng.choice(candidates(words))
        plan.append((words, masked, swapped, rng.choice([w for w in vocabulary if w != words[swapped]])))
    for model in args.models:
        parts = model_parts(model)
        generator, discriminator = parts.get("generator") or parts.get("mlm"), parts.get("discriminator")
        filler, detector = Filler(generator) if generator else None, Detector(discriminator) if discriminator else None
        first, top5, whole, firsts, examples = 0, 0, 0, {}, []
        caught, p_swapped, p_kept, kept = 0, 0.0, 0.0, 0
        for k, (words, masked, swapped, other) in enumerate(plan):
            example = {"sentence": " ".join(words)}
            if filler:
                text = " ".join(w if i != masked else "[MASK]" for i, w in enumerate(words))
                found = filler.fill(text, top_k=5).candidates[0]
                proposals = [t for t, _ in found]
                target = words[masked].lower()
                if len(filler.tokenizer.encode(target, add_special_tokens=False).ids) == 1:   # one [MASK] can hold it
                    whole += 1
                    first += proposals[0] == target
                    top5 += target in proposals
                firsts[proposals[0]] = firsts.get(proposals[0], 0) + 1
                example["fill"] = {"text": text, "original": target,
                                   "top5": [[t, round(p, 3)] for t, p in found]}
                twice = list(words)
                second = next((i for i in candidates(words) if i != masked), None)
                if second is not None:
                    twice[masked] = twice[second] = "[MASK]"
                    example["fill_iterative"] = {"text": " ".join(twice),
                                                 "filled": filler.fill(" ".join(twice), 5, iterative=True).text}
            if detector:
                changed = list(words)
                changed[swapped] = other
                detection = detector.detect(" ".join(changed))
                # the swapped word's first piece: count the word pieces of the words before it
                pieces_before = len(detector.tokenizer.encode(" ".join(changed[:swapped]),
                                                             add_special_tokens=False).ids) if swapped else 0
                probs = detection.probabilities
                if pieces_before < len(probs):
                    caught += max(range(len(probs)), key=probs.__getitem__) == pieces_before
                    p_swapped += probs[pieces_before]
                    p_kept += sum(p for i, p in enumerate(probs) if i != pieces_before)
                    kept += len(probs) - 1
                example["detect"] = {"text": " ".join(changed), "swapped": f"{words[swapped]} → {other}",
                                     "marked": detection.render(0.5),
                                     "p_swapped": round(probs[pieces_before], 3) if pieces_before < len(probs)
                                     else None}
            if k < args.show:
                examples.append(example)
        n = len(plan)
        summary = {"model": str(model), "sentences": n, "seed": args.seed}
        if filler:
            common_first = sorted(firsts.items(), key=lambda kv: -kv[1])[:5]
            summary["fill"] = {"top1": round(first / max(whole, 1), 3), "top5": round(top5 / max(whole, 1), 3),
                               "scored": whole,
                               "distinct_first": len(firsts), "most_common_first": common_first}
        if detector:
            summary["detect"] = {"swapped_ranked_first": round(caught / n, 3), "mean_p_swapped": round(p_swapped / n, 3),
                                 "mean_p_untouched": round(p_kept / max(kept, 1), 3)}
        summary["examples"] = examples
        RESULTS.mkdir(parents=True, exist_ok=True)
        name = Path(model).resolve().name
        (RESULTS / f"examples-{name}.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
        say(f"\n## {name}: " + json.dumps({k: v for k, v in summary.items() if k in ("fill", "detect")}))
        for ex in examples:
            if "fill" in ex:
                say(f"- fill: {ex['fill']['text']}  →  " + ", ".join(f"{t} {p:.2f}" for t, p in ex["fill"]["top5"])
                    + f"  (original: {ex['fill']['original']})")
            if "fill_iterative" in ex:
                say(f"  iterative: {ex['fill_iterative']['text']}  →  {ex['fill_iterative']['filled']}")
            if "detect" in ex:
                say(f"- detect ({ex['detect']['swapped']}): {ex['detect']['marked']}  "
                    f"(P swapped {ex['detect']['p_swapped']})")


if __name__ == "__main__":
    main()
