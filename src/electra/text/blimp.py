"""BLiMP (Warstadt et al. 2020): does the model prefer the grammatical sentence of each minimal pair?

Two scorers, each giving a sentence a log-score (higher: more acceptable):
- ``generator`` (a generator or MLM model): the pseudo-log-likelihood of Salazar et al. 2020 — each token masked
  in turn, the log-probability of the original at the mask, summed over the sentence's tokens; all masked copies of
  all sentences run in batches, each padded only to its longest row.  ``pll="word-l2r"`` is Kauf & Ivanova's 2023
  PLL-word-l2r: scoring a piece of a word also masks the pieces to its right in the same word, so a word split into
  pieces is not scored by reading its own other pieces (which inflates the score of rare, many-piece words);
- ``discriminator``: the sum over the sentence's tokens of log P(original) = −softplus(logit "replaced").
A pair counts as right only when the good sentence scores strictly higher: a tie (e.g. a model that gives every
sentence the same score) is wrong, so identical scores never look like success.
"""

from __future__ import annotations

import json
import random
import statistics
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from electra.errors import UserError
from electra.text.objectives import masked_lm_logits

FIELDS = ("sentence_good", "sentence_bad", "UID")
PLL_VARIANTS = ("original", "word-l2r")
SUBSET_SEED = 0


@dataclass
class Pair:
    good: str
    bad: str
    phenomenon: str
    field: str


def read_blimp(folder: str | Path, per_phenomenon: int | None = None) -> list[Pair]:
    """Every ``*.jsonl`` in ``folder`` (one phenomenon each); ``per_phenomenon``: a fixed seeded subset."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"BLiMP folder {folder} does not exist")
    files = sorted(folder.glob("*.jsonl"))
    if not files:
        raise UserError(f"{folder} holds no BLiMP .jsonl files")
    pairs: list[Pair] = []
    for path in files:
        found = []
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as exc:
            raise UserError(f"{path} is not UTF-8 text (byte {exc.start})") from None
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                raise UserError(f"{path} line {number} is not valid JSON") from None
            if not isinstance(row, dict) or not all(isinstance(row.get(k), str) and row[k].strip() for k in FIELDS):
                raise UserError(f"{path} line {number} lacks one of {', '.join(FIELDS)} (non-empty strings)")
            found.append(Pair(row["sentence_good"], row["sentence_bad"], row["UID"], str(row.get("field", "?"))))
        if per_phenomenon is not None and per_phenomenon < len(found):
            keep = sorted(random.Random(f"{SUBSET_SEED}:{path.stem}").sample(range(len(found)), per_phenomenon))
            found = [found[i] for i in keep]
        pairs += found
    if not pairs:
        raise UserError(f"the BLiMP files in {folder} hold no pairs")
    return pairs


def _encode(tokenizer, sentences: list[str], max_len: int) -> tuple[list[list[int]], list[list[int | None]]]:
    """Token ids and, per token, the index of the word it belongs to (None for [CLS] and [SEP])."""
    tokenizer.enable_truncation(max_length=max_len)
    try:
        encodings = tokenizer.encode_batch(sentences)
    finally:
        tokenizer.no_truncation()
    return [e.ids for e in encodings], [e.word_ids for e in encodings]


def _padded(rows: list[list[int]], pad: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    longest = max(len(r) for r in rows)
    ids = torch.full((len(rows), longest), pad, dtype=torch.long, device="cpu")
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r, dtype=torch.long, device="cpu")
    return ids.to(device), (ids != pad).long().to(device)


def _masked_with(i: int, words: list[int | None] | None) -> list[int]:
    """The positions masked when token ``i`` is scored: ``i`` itself and, given the word of each token
    (PLL-word-l2r), the later pieces of its word."""
    if words is None or words[i] is None:
        return [i]
    later = []
    for j in range(i + 1, len(words)):
        if words[j] != words[i]:
            break
        later.append(j)
    return [i] + later


@torch.no_grad()
def pseudo_log_likelihoods(model, sentences: list[list[int]], mask_id: int, pad_id: int, batch_size: int = 128,
                           words: list[list[int | None]] | None = None) -> list[float]:
    """Σ_i log P(token_i | the sentence with token_i masked), over each sentence's tokens between [CLS] and
    [SEP]; with ``words`` (each token's word index), also masking the pieces of token_i's word to its right
    (PLL-word-l2r).  The vocabulary projection runs at the one scored position of each copy only."""
    device = next(model.parameters()).device
    copies = [(s, i) for s, ids in enumerate(sentences) for i in range(1, len(ids) - 1)]
    copies.sort(key=lambda c: len(sentences[c[0]]))   # similar lengths share a batch: little padding
    totals = [0.0] * len(sentences)
    for start in range(0, len(copies), batch_size):
        chunk = copies[start:start + batch_size]
        rows = []
        for s, i in chunk:
            row = list(sentences[s])
            for j in _masked_with(i, words[s] if words is not None else None):
                row[j] = mask_id
            rows.append(row)
        ids, attention = _padded(rows, pad_id, device)
        positions = torch.tensor([[i] for _, i in chunk], dtype=torch.long, device=device)
        targets = torch.tensor([sentences[s][i] for s, i in chunk], dtype=torch.long, device=device)
        logits = masked_lm_logits(model, ids, attention, torch.zeros_like(ids), positions)[:, 0].float()
        logp = F.log_softmax(logits, dim=-1).gather(1, targets.unsqueeze(1)).squeeze(1).cpu()
        for (s, _), value in zip(chunk, logp.tolist()):
            totals[s] += value
    return totals


@torch.no_grad()
def discriminator_scores(model, sentences: list[list[int]], pad_id: int, batch_size: int = 128) -> list[float]:
    """Σ over each sentence's tokens (between [CLS] and [SEP]) of log P(original) = −softplus(logit)."""
    device = next(model.parameters()).device
    order = sorted(range(len(sentences)), key=lambda s: len(sentences[s]))
    totals = [0.0] * len(sentences)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        ids, attention = _padded([sentences[s] for s in chunk], pad_id, device)
        logits = model(input_ids=ids, attention_mask=attention, token_type_ids=torch.zeros_like(ids)).logits.float()
        inner = attention.clone()
        inner[:, 0] = 0
        inner[torch.arange(len(chunk), device=device), attention.sum(1) - 1] = 0   # [SEP]
        scores = (-F.softplus(logits) * inner).sum(1).cpu()
        for s, value in zip(chunk, scores.tolist()):
            totals[s] = value
    return totals


def pair_accuracy(good: list[float], bad: list[float]) -> list[bool]:
    """Right only when the good sentence scores strictly higher (a tie is wrong)."""
    return [g > b for g, b in zip(good, bad)]


def _scorers(model: str | Path) -> dict[str, tuple[object, Path]]:
    from transformers import ElectraForMaskedLM, ElectraForPreTraining

    from electra.text.hf_io import load_hf, model_parts

    found = {}
    for part, folder in model_parts(model).items():
        name = "discriminator" if part == "discriminator" else "generator"
        if name not in found:   # a run's generator/ before its mlm/ (a run has one of them)
            cls = ElectraForPreTraining if name == "discriminator" else ElectraForMaskedLM
            found[name] = (load_hf(cls, folder, part).eval(), folder)
    return found


def score_blimp(model: str | Path, data_dir: str | Path, per_phenomenon: int | None = None, batch_size: int = 128,
                out: str | Path | None = None, pll: str = "original") -> dict:
    """Accuracy per scorer: overall (all pairs), per field and per phenomenon; written as JSON.  ``pll``: the
    generator's pseudo-log-likelihood, ``original`` (Salazar et al.) or ``word-l2r`` (Kauf & Ivanova)."""
    from electra.core.files import write_json
    from electra.text.hf_io import model_tokenizer

    if pll not in PLL_VARIANTS:
        raise UserError(f"--pll {pll}: choose one of {', '.join(PLL_VARIANTS)}")
    pairs = read_blimp(data_dir, per_phenomenon)
    report: dict = {"model": str(Path(model).resolve()), "data_dir": str(Path(data_dir).resolve()),
                    "pairs": len(pairs), "per_phenomenon": per_phenomenon, "pll": pll, "scorers": {}}
    for name, (net, folder) in _scorers(model).items():
        tokenizer = model_tokenizer(folder)
        pad, mask = tokenizer.token_to_id("[PAD]"), tokenizer.token_to_id("[MASK]")
        max_len = net.config.max_position_embeddings
        good, good_words = _encode(tokenizer, [p.good for p in pairs], max_len)
        bad, bad_words = _encode(tokenizer, [p.bad for p in pairs], max_len)
        if name == "generator":
            words = good_words + bad_words if pll == "word-l2r" else None
            scores = pseudo_log_likelihoods(net, good + bad, mask, pad, batch_size, words)
        else:
            scores = discriminator_scores(net, good + bad, pad, batch_size)
        right = pair_accuracy(scores[:len(pairs)], scores[len(pairs):])
        report["scorers"][name] = summarize(pairs, right)
    target = Path(out) if out else Path(model) / "blimp.json"
    write_json(target, report)
    report["written_to"] = str(target)
    return report


def summarize(pairs: list[Pair], right: list[bool]) -> dict:
    def mean(values: list[bool]) -> float:
        return sum(values) / len(values)

    by: dict[str, dict[str, list[bool]]] = {"field": {}, "phenomenon": {}}
    for pair, ok in zip(pairs, right):
        by["field"].setdefault(pair.field, []).append(ok)
        by["phenomenon"].setdefault(pair.phenomenon, []).append(ok)
    phenomena = {k: mean(v) for k, v in sorted(by["phenomenon"].items())}
    return {"overall": mean(right), "mean_over_phenomena": statistics.fmean(phenomena.values()),
            "fields": {k: mean(v) for k, v in sorted(by["field"].items())}, "phenomena": phenomena}


def format_blimp(report: dict) -> str:
    scorers = report["scorers"]
    names = list(scorers)
    lines = [f"BLiMP, {report['pairs']} pairs" + (f" ({report['per_phenomenon']} per phenomenon)"
                                                  if report["per_phenomenon"] else "")
             + (f"; generator PLL {report.get('pll', 'original')}" if "generator" in scorers else ""),
             f"  {'':44s}" + "".join(f"{n:>15s}" for n in names),
             f"  {'overall':44s}" + "".join(f"{100 * scorers[n]['overall']:14.1f}%" for n in names)]
    for field in scorers[names[0]]["fields"]:
        lines.append(f"  {'field ' + field:44s}" + "".join(f"{100 * scorers[n]['fields'][field]:14.1f}%"
                                                           for n in names))
    for phenomenon in scorers[names[0]]["phenomena"]:
        lines.append(f"    {phenomenon[:42]:42s}" + "".join(f"{100 * scorers[n]['phenomena'][phenomenon]:14.1f}%"
                                                           for n in names))
    return "\n".join(lines)
