"""Using the two pre-trained networks directly.

``fill``: the generator fills [MASK] positions — the top-k candidates per mask, or iteratively (the most confident
mask first, re-predicting the rest each time), which lets it generate text.
``detect``: the discriminator scores, per token, the probability that it was replaced — unnatural or corrupted
words stand out.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from electra.errors import UserError
from electra.text.hf_io import load_hf, model_tokenizer, resolve_model_dir


def _warn(message: str) -> None:
    print(f"electra: warning: {message}", file=sys.stderr)


def _encode(tokenizer, text: str, max_positions: int):
    if not text or not text.strip():
        raise UserError("the text is empty; give a sentence")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:   # undecodable bytes on the command line arrive as lone surrogates
        raise UserError(f"the text holds bytes that are not UTF-8 (at character {exc.start}); give UTF-8 "
                        f"text") from None
    enc = tokenizer.encode(text)
    ids = enc.ids
    if len(ids) > max_positions:
        _warn(f"the text has {len(ids)} tokens; the model takes {max_positions}: truncated to fit")
        ids = ids[: max_positions - 1] + [ids[-1]]
    return ids


@dataclass
class Filled:
    text: str
    candidates: list[list[tuple[str, float]]]   # per [MASK], in order: (token, probability), best first


class Filler:
    def __init__(self, model: str | Path) -> None:
        from transformers import ElectraForMaskedLM

        folder = resolve_model_dir(model, "generator")
        self.model = load_hf(ElectraForMaskedLM, folder, "generator").eval()
        self.tokenizer = model_tokenizer(folder)
        self.mask_id = self.tokenizer.token_to_id("[MASK]")
        self.special = {self.tokenizer.token_to_id(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")}

    @torch.no_grad()
    def _probs(self, ids: list[int]) -> torch.Tensor:
        logits = self.model(input_ids=torch.tensor([ids], device=self.model.device)).logits[0].float().cpu()
        logits[:, sorted(self.special)] = float("-inf")   # never propose special tokens
        return logits.softmax(-1)

    def fill(self, text: str, top_k: int = 5, iterative: bool = False) -> Filled:
        if top_k < 1:
            raise UserError(f"--top-k must be at least 1, got {top_k}")
        ids = _encode(self.tokenizer, text, self.model.config.max_position_embeddings)
        masks = [i for i, t in enumerate(ids) if t == self.mask_id]
        if not masks:
            raise UserError("the text has no [MASK] token to fill")
        candidates: dict[int, list[tuple[str, float]]] = {}
        if iterative:
            remaining = list(masks)
            while remaining:
                probs = self._probs(ids)
                best = max(remaining, key=lambda i: probs[i].max().item())
                top = probs[best].topk(top_k)
                candidates[best] = [(self.tokenizer.id_to_token(int(t)), float(p)) for p, t in zip(*top)]
                ids[best] = int(top.indices[0])
                remaining.remove(best)
        else:
            probs = self._probs(ids)
            for i in masks:
                top = probs[i].topk(top_k)
                candidates[i] = [(self.tokenizer.id_to_token(int(t)), float(p)) for p, t in zip(*top)]
                ids[i] = int(top.indices[0])
        body = [t for t in ids if t not in self.special]
        return Filled(self.tokenizer.decode(body), [candidates[i] for i in masks])


@dataclass
class Detection:
    tokens: list[str]
    probabilities: list[float]      # P(replaced) per token, special tokens left out

    def flagged(self, threshold: float) -> list[int]:
        return [i for i, p in enumerate(self.probabilities) if p >= threshold]

    def render(self, threshold: float) -> str:
        words = [f"[[{t}]]" if p >= threshold else t for t, p in zip(self.tokens, self.probabilities)]
        return " ".join(words)


class Detector:
    def __init__(self, model: str | Path) -> None:
        from transformers import ElectraForPreTraining

        folder = resolve_model_dir(model, "discriminator")
        self.model = load_hf(ElectraForPreTraining, folder, "discriminator").eval()
        self.tokenizer = model_tokenizer(folder)

    @torch.no_grad()
    def detect(self, text: str) -> Detection:
        ids = _encode(self.tokenizer, text, self.model.config.max_position_embeddings)
        ids_on_device = torch.tensor([ids], device=self.model.device)
        probs = torch.sigmoid(self.model(input_ids=ids_on_device).logits[0].float()).cpu().tolist()
        keep = [i for i, t in enumerate(ids) if self.tokenizer.id_to_token(t) not in ("[CLS]", "[SEP]", "[PAD]")]
        return Detection([self.tokenizer.id_to_token(ids[i]) for i in keep], [probs[i] for i in keep])
