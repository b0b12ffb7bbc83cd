"""Held-out figures of a pre-trained pair, with no training: what ``electra text eval`` and ``eval_files=`` report.

- ``mlm_loss`` / ``mlm_ppl``: the masked-LM loss (and its exponential, the perplexity of masked positions) of the
  generator (RTD) or the model (MLM), with 15% of each row's tokens all replaced by [MASK] — one masking for both
  objectives, so their figures compare;
- ``order_gain``: how much the model reads word order — the masked-LM loss when each row's unmasked ordinary
  tokens are shuffled among their own positions (``mlm_loss_shuffled``; the masks, specials and the bag of words
  stay), minus ``mlm_loss``.  Near 0: the model uses which words are present but not where (a bag of words);
  a model that has learnt grammar loses much more;
- for RTD also the discriminator on inputs corrupted the way training corrupts them (its ``mask_token_prob``,
  replacements sampled from the run's own generator): ``disc_loss``, ``disc_auc``, ``disc_precision``,
  ``disc_recall`` and ``replaced_frac``, over every non-padding token of the held-out set.
Masks and replacements come from a fixed seed per batch, so the same model and text always give the same figures.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from electra.errors import UserError
from electra.text.config import TextConfig
from electra.text.objectives import MaskedLMObjective, RTDObjective, token_nll

EVAL_SEED = 1234


@dataclass
class HeldOut:
    """Held-out rows (N × L token ids, packed like training rows) and their special ids."""
    rows: torch.Tensor
    special: dict[str, int]
    vocab_size: int


def heldout_rows(files, tokenizer_dir: Path, seq_len: int, max_examples: int | None) -> HeldOut:
    """``files`` tokenised and packed exactly as ``prepare`` packs a corpus (first ``max_examples`` rows)."""
    from electra.text.corpus import TokenShards, prepare_corpus

    with tempfile.TemporaryDirectory(prefix="electra-eval-") as tmp:
        folder = prepare_corpus(files, tokenizer_dir, seq_len, Path(tmp) / "shards", progress=False)
        shards = TokenShards(folder)
        n = shards.rows if not max_examples else min(max_examples, shards.rows)
        rows = torch.from_numpy(shards.rows_at(torch.arange(n, device="cpu").numpy()))
        return HeldOut(rows, dict(shards.special), shards.manifest["vocab_size"])


def _batches(data: HeldOut, batch_size: int, device) -> list[dict]:
    from electra.text.corpus import make_batch

    out = []
    for i in range(0, len(data.rows), batch_size):
        batch = make_batch(data.rows[i:i + batch_size], data.special["pad"], data.special["sep"])
        longest = int(batch["attention_mask"].sum(1).max())   # rows padded only to the batch's longest
        out.append({k: v[:, :longest].to(device) for k, v in batch.items()})
    return out


@torch.no_grad()
def heldout_figures(modules: dict[str, torch.nn.Module], data: HeldOut, cfg: TextConfig,
                    batch_size: int = 64) -> dict[str, float]:
    """The figures above for ``modules`` ({"generator", "discriminator"} or {"mlm"}); leaves their train/eval
    mode as it found it, and draws no numbers from the global torch generator."""
    was_training = {name: m.training for name, m in modules.items()}
    for m in modules.values():
        m.eval()
    try:
        return _figures(modules, data, cfg, batch_size)
    finally:
        for name, m in modules.items():
            m.train(was_training[name])


def _figures(modules, data: HeldOut, cfg: TextConfig, batch_size: int) -> dict[str, float]:
    mlm_model = modules.get("generator", modules.get("mlm"))
    device = next(mlm_model.parameters()).device
    masker = MaskedLMObjective(mlm_model, cfg, data.special, data.vocab_size, EVAL_SEED)
    rtd = RTDObjective(modules["generator"], modules["discriminator"], cfg, data.special, data.vocab_size,
                       EVAL_SEED + 1) if "discriminator" in modules else None
    nll_sum = shuffled_sum = masked = correct = 0.0
    special = torch.tensor(sorted(data.special.values()), device="cpu")
    d_logits, d_labels = [], []
    bce_sum = tokens = 0.0
    for i, batch in enumerate(_batches(data, batch_size, device)):
        masker.random.begin(i, 0, 0)
        positions, weights, inputs, targets = masker._mask(batch, 1.0, 0.0)
        logits = masker._mlm(mlm_model, batch, inputs, positions, targets, weights)[0].float()
        nll_sum += float((token_nll(logits, targets) * weights).sum())
        shuffled = shuffle_context(inputs.cpu(), batch["attention_mask"].cpu(), special, EVAL_SEED + 2 + i)
        logits_shuffled = masker._mlm(mlm_model, batch, shuffled.to(device), positions, targets, weights)[0].float()
        shuffled_sum += float((token_nll(logits_shuffled, targets) * weights).sum())
        correct += float(((logits.argmax(-1) == targets).float() * weights).sum())
        masked += float(weights.sum())
        if rtd is not None:
            rtd.random.begin(i, 0, 0)
            corrupted, labels = rtd.corrupt(batch)[4:6]
            valid = batch["attention_mask"].bool()
            out = rtd.discriminator(input_ids=corrupted, attention_mask=batch["attention_mask"],
                                    token_type_ids=batch["token_type_ids"]).logits.float()
            bce_sum += float(F.binary_cross_entropy_with_logits(out[valid], labels[valid].float(), reduction="sum"))
            tokens += float(valid.sum())
            d_logits.append(out[valid].cpu())
            d_labels.append(labels[valid].cpu())
    if not masked:
        raise UserError("the held-out text has no tokens to mask; give more text")
    figures = {"mlm_loss": nll_sum / masked, "mlm_ppl": math.exp(min(nll_sum / masked, 50.0)),
               "mlm_acc": correct / masked, "mlm_loss_shuffled": shuffled_sum / masked,
               "order_gain": (shuffled_sum - nll_sum) / masked, "masked_tokens": int(masked),
               "examples": len(data.rows)}
    if rtd is not None:
        figures.update(discriminator_figures(torch.cat(d_logits), torch.cat(d_labels)))
        figures["disc_loss"] = bce_sum / tokens
    return figures


def shuffle_context(inputs: torch.Tensor, attention_mask: torch.Tensor, special: torch.Tensor,
                    seed: int) -> torch.Tensor:
    """``inputs`` with, in each row, the ordinary tokens (attended, not special, not [MASK]) permuted among their own
    positions by a seeded draw; every other position keeps its id."""
    out = inputs.clone()
    movable = attention_mask.bool() & ~torch.isin(inputs, special)
    generator = torch.Generator().manual_seed(seed)
    for row in range(len(out)):
        where = movable[row].nonzero().squeeze(1)
        out[row, where] = inputs[row, where[torch.randperm(len(where), generator=generator, device="cpu")]]
    return out


def tied_auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """ROC AUC (Mann–Whitney) with tied scores given their mean rank, so a constant answer scores exactly 0.5;
    NaN if one class is absent.  (The per-step training metric breaks ties arbitrarily to stay on the device.)"""
    scores, labels = scores.double().flatten().cpu(), labels.bool().flatten().cpu()
    ordered, order = scores.sort()
    _, inverse, counts = torch.unique_consecutive(ordered, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    mean_rank = (ends - counts.double() + 1 + ends) / 2
    ranks = torch.empty_like(scores)
    ranks[order] = mean_rank[inverse]
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if not n_pos or not n_neg:
        return float("nan")
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def discriminator_figures(logits: torch.Tensor, replaced: torch.Tensor) -> dict[str, float]:
    """AUC, precision and recall of "replaced" (logit > 0) over all tokens, and the share replaced."""
    predicted = logits > 0
    true_pos = float((predicted & replaced).sum())
    return {"disc_auc": tied_auc(logits, replaced),
            "disc_precision": true_pos / max(1, int(predicted.sum())),
            "disc_recall": true_pos / max(1, int(replaced.sum())),
            "replaced_frac": float(replaced.float().mean())}


def load_for_eval(model: str | Path) -> tuple[dict[str, torch.nn.Module], Path, TextConfig]:
    """The models, tokenizer folder and masking settings of a run folder, a folder holding HF ``generator/`` and
    ``discriminator/`` (or ``mlm/``), or a single HF ELECTRA model (a generator or MLM model: MLM figures only)."""
    from transformers import ElectraForMaskedLM, ElectraForPreTraining

    from electra.config import apply_overrides
    from electra.text.config import config_from_dict
    from electra.text.hf_io import load_hf, read_hf_config

    path = Path(model)
    if not path.is_dir():
        raise UserError(f"model {path} does not exist; give a text run folder or an HF ELECTRA folder")
    cfg = TextConfig()
    if (path / "config.json").is_file() and not (path / "generator").is_dir() and not (path / "mlm").is_dir():
        config = read_hf_config(path)
        if "ElectraForPreTraining" in config.get("architectures", []):
            raise UserError(f"{path} is a lone discriminator: held-out figures need the generator that makes its "
                            f"replacements; give the run folder (or a folder with generator/ and discriminator/)")
        modules = {"mlm": load_hf(ElectraForMaskedLM, path, "generator")}
        seq_len = min(128, modules["mlm"].config.max_position_embeddings)
        return modules, path, apply_overrides(cfg, {"seq_len": seq_len, "max_position_embeddings": seq_len})
    if (path / "config.json").is_file():   # a run folder: its own masking, temperature and sequence length
        from electra.core.run import RunFolder

        values = RunFolder.open("text", path).saved_values()
        values = {k: v for k, v in values.items() if k in TextConfig.__dataclass_fields__}
        cfg = config_from_dict(values)
    if (path / "mlm" / "config.json").is_file():
        modules = {"mlm": load_hf(ElectraForMaskedLM, path / "mlm", "MLM model")}
        tokenizer_dir = path / "mlm"
    elif (path / "generator" / "config.json").is_file() and (path / "discriminator" / "config.json").is_file():
        modules = {"generator": load_hf(ElectraForMaskedLM, path / "generator", "generator"),
                   "discriminator": load_hf(ElectraForPreTraining, path / "discriminator", "discriminator")}
        tokenizer_dir = path / "generator"
    else:
        raise UserError(f"{path} holds no exported models (generator/ and discriminator/, or mlm/); a run writes "
                        f"them at its first checkpoint")
    positions = next(iter(modules.values())).config.max_position_embeddings
    seq_len = min(cfg.seq_len, positions)
    # short_rows shapes training only; off, so that any evaluation length validates
    return modules, tokenizer_dir, apply_overrides(cfg, {"seq_len": seq_len, "max_position_embeddings": positions,
                                                         "short_rows": 0})


def evaluate_text(model: str | Path, files, max_examples: int | None = 2000, batch_size: int = 64,
                  out: str | Path | None = None, seq_len: int | None = None,
                  mask_prob: float | None = None) -> dict:
    """``electra text eval``: the held-out figures as a report (also written as JSON; ``out`` or beside the
    model as ``eval-FILE.json``).  ``seq_len``: the packed rows' length (default: the run's, or 128);
    ``mask_prob``: the share of positions masked (default: the run's), so runs trained at different rates can be
    compared at one."""
    from electra.config import apply_overrides
    from electra.core.files import write_json

    modules, tokenizer_dir, cfg = load_for_eval(model)
    if seq_len is not None:
        if not 8 <= seq_len <= cfg.max_position_embeddings:
            raise UserError(f"--seq-len must lie in [8, {cfg.max_position_embeddings}] (the model's positions)")
        cfg = apply_overrides(cfg, {"seq_len": seq_len})
    if mask_prob is not None:
        if not 0 < mask_prob < 1:
            raise UserError(f"--mask-prob must lie in (0, 1), not {mask_prob}")
        cfg = apply_overrides(cfg, {"mask_prob": mask_prob})
    data = heldout_rows(files, tokenizer_dir, cfg.seq_len, max_examples)
    figures = heldout_figures(modules, data, cfg, batch_size)
    report = {"model": str(Path(model).resolve()), "files": [str(Path(f).resolve()) for f in files],
              "objective": "rtd" if "discriminator" in modules else "mlm", "seq_len": cfg.seq_len,
              "mask_prob": cfg.mask_prob, "seed": EVAL_SEED, **figures}
    target = Path(out) if out else Path(model) / f"eval-{Path(files[0]).name.split('.')[0]}.json"
    write_json(target, report)
    report["written_to"] = str(target)
    return report


def format_figures(report: dict) -> str:
    names = [("mlm_loss", "masked-LM loss (nats)"), ("mlm_ppl", "masked-position perplexity"),
             ("mlm_acc", "masked-token accuracy"), ("order_gain", "word-order gain (nats)"),
             ("disc_loss", "discriminator loss"), ("disc_auc", "discriminator AUC"),
             ("disc_precision", "precision (replaced)"), ("disc_recall", "recall (replaced)"),
             ("replaced_frac", "tokens replaced")]
    lines = [f"{report['objective']} model, {report['examples']} held-out examples of ≤ {report['seq_len']} tokens, "
             f"{report['masked_tokens']} masked positions"]
    lines += [f"  {label:28s} {report[key]:.4f}" for key, label in names if key in report]
    return "\n".join(lines)
