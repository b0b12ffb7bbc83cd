"""What the demo page does with a text run or an HF ELECTRA folder: fill [MASK] with the generator (top-k per mask,
or iteratively) and colour each token by the discriminator's P(replaced)."""

from __future__ import annotations

import html
from pathlib import Path

from electra.errors import UserError
from electra.text.hf_io import model_parts


class TextDemo:
    def __init__(self, model: str | Path) -> None:
        from electra.text.generate import Detector, Filler

        self.path = Path(model)
        parts = model_parts(self.path)
        generator, discriminator = parts.get("generator") or parts.get("mlm"), parts.get("discriminator")
        self.filler = Filler(generator) if generator else None
        self.detector = Detector(discriminator) if discriminator else None

    def fill(self, text: str, top_k: int, iterative: bool) -> tuple[str, str]:
        """The filled text and a Markdown table of each mask's candidates."""
        if self.filler is None:
            raise UserError("this model has no generator to fill masks with")
        if not isinstance(text, str) or not text.strip():
            raise UserError("the text is empty; write a sentence with [MASK] in it")
        filled = self.filler.fill(text, int(top_k), bool(iterative))
        rows = ["| mask | candidates (probability) |", "|---|---|"]
        rows += [f"| {i} | " + ", ".join(f"{html.escape(t)} {p:.3f}" for t, p in cands) + " |"
                 for i, cands in enumerate(filled.candidates, 1)]
        return filled.text, "\n".join(rows)

    def detect(self, text: str, threshold: float) -> str:
        """The sentence as HTML, each token's background as red as its P(replaced); tokens at or over the
        threshold are underlined and carry the class ``replaced``."""
        if self.detector is None:
            raise UserError("this model has no discriminator to detect replaced tokens with")
        if not isinstance(text, str) or not text.strip():
            raise UserError("the text is empty; write a sentence to check")
        found = self.detector.detect(text)
        spans = []
        for token, p in zip(found.tokens, found.probabilities):
            joined = token.startswith("##")
            word = html.escape(token[2:] if joined else token)
            kind = "electra-token replaced" if p >= threshold else "electra-token"
            style = f"background-color: rgba(220, 38, 38, {p:.2f}); padding: 1px 2px; border-radius: 3px"
            if p >= threshold:
                style += "; text-decoration: underline"
            spans.append(("" if joined or not spans else " ") +
                         f'<span class="{kind}" data-p="{p:.4f}" title="P(replaced) {p:.2f}" style="{style}">'
                         f"{word}</span>")
        flagged = found.flagged(threshold)
        note = (f"{len(flagged)} of {len(found.tokens)} tokens look replaced (P ≥ {threshold:g})"
                if found.tokens else "no tokens")
        return f'<div id="detected" style="line-height: 2">{"".join(spans)}</div><p>{note}</p>'


EXAMPLE_FILL = "the cat sat on the [MASK] and looked at the [MASK]."
EXAMPLE_DETECT = "the cat sat on the moon and looked at the mat."


def build(gr, demo: TextDemo, answer) -> list:
    """The text controls, inside the caller's Blocks (nothing to run when the page opens)."""
    gr.Markdown(f"**ELECTRA** — {demo.path}")
    status = gr.Markdown(elem_id="text-status")
    if demo.filler is not None:
        gr.Markdown("**Fill [MASK]** with the generator")
        fill_in = gr.Textbox(EXAMPLE_FILL, label="text with [MASK]", elem_id="fill-text")
        with gr.Row():
            top_k = gr.Slider(1, 10, value=5, step=1, label="candidates per mask", elem_id="top-k")
            iterative = gr.Checkbox(False, label="iterative (most confident mask first)", elem_id="iterative")
        fill_go = gr.Button("Fill", variant="primary", elem_id="fill")
        filled = gr.Textbox(label="filled", interactive=False, elem_id="filled")
        candidates = gr.Markdown(elem_id="candidates")
        fill_fn = answer(lambda t, k, it: (*demo.fill(t, k, it), ""), 2, status)
        fill_go.click(fill_fn, [fill_in, top_k, iterative], [filled, candidates, status])
        fill_in.submit(fill_fn, [fill_in, top_k, iterative], [filled, candidates, status])
    if demo.detector is not None:
        gr.Markdown("**Which tokens look replaced?** The discriminator's P(replaced) per token")
        detect_in = gr.Textbox(EXAMPLE_DETECT, label="text", elem_id="detect-text")
        threshold = gr.Slider(0.05, 0.95, value=0.5, step=0.05, label="threshold", elem_id="threshold")
        detect_go = gr.Button("Detect", variant="primary", elem_id="detect")
        detected = gr.HTML(elem_id="detection")
        detect_fn = answer(lambda t, th: (demo.detect(t, th), ""), 1, status)
        detect_go.click(detect_fn, [detect_in, threshold], [detected, status])
        detect_in.submit(detect_fn, [detect_in, threshold], [detected, status])
    return []
