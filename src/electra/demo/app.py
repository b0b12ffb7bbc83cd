"""``electra demo RUN_DIR``: a local web page (Gradio, the ``demo`` extra) to try a trained run.

An image run gets grids, a latent walk, a class picker (conditional runs) and a digit reader (semi-supervised
runs); a text run or HF ELECTRA folder gets fill-mask and replaced-token detection.  Both show the run's curves and
the last metrics row.  The page is served on 127.0.0.1 unless ``--host`` says otherwise, and never writes into the
run folder: Gradio's own files go to a temporary folder removed at exit.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from electra.errors import UserError

# What the page shows of the metrics rows: the losses each track plots, and the last row in full.
IMAGE_CURVES = ["L_G", "L_D", "L_ELECTRA", "D(x)", "D(G(z))", "reconstruction", "KL", "test_error"]
TEXT_CURVES = ["mlm_loss", "disc_loss", "disc_auc", "eval_mlm_loss", "eval_disc_auc"]


def run_kind(path: str | Path) -> str:
    """``image`` or ``text`` for a run folder, ``hf`` for an HF ELECTRA folder (or one holding generator/ and
    discriminator/); anything else is one clear error."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path} does not exist or is not a folder; give an image run, a text run or an HF "
                        f"ELECTRA folder")
    config = path / "config.json"
    if config.is_file():
        try:
            values = json.loads(config.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise UserError(f"{config} is not valid JSON ({exc}); the folder is damaged") from None
        if isinstance(values, dict) and values.get("track") in ("image", "text"):
            return values["track"]
        if isinstance(values, dict) and values.get("model_type") == "electra":
            return "hf"
    if any((path / part / "config.json").is_file() for part in ("generator", "discriminator", "mlm")):
        return "hf"
    raise UserError(f"{path} is not a run folder (no config.json of an image or text run) nor an HF ELECTRA "
                    f"folder")


def answer(gr, outputs: int, status):
    """Wrap a handler returning ``outputs`` values and a status text: a bad input (or any failure) leaves the
    outputs as they are and shows one line in the status box instead of a stack trace."""
    def wrap(fn):
        def handler(*args):
            try:
                return fn(*args)
            except UserError as exc:
                message = " ".join(str(exc).split())
            except Exception as exc:   # the page must answer, whatever goes wrong inside
                message = f"something went wrong: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
            return (*[gr.update() for _ in range(outputs)], f"⚠️ {message}")
        return handler
    return wrap


def _curves(path: Path, keys: list[str], scratch: Path):
    from electra.core.metrics import plot_curves, read_metrics

    rows = read_metrics(path / "metrics.jsonl")
    if not rows:
        return None, {}
    last = next((r for r in reversed(rows) if any(k in r for k in keys)), rows[-1])
    picture = plot_curves(rows, keys, scratch / "curves.png", f"{path.name}: metrics.jsonl")
    return picture, {k: round(v, 5) if isinstance(v, float) else v for k, v in last.items()}


def build_page(path: str | Path, scratch: Path):
    """The page's Blocks for ``path`` (models loaded here)."""
    import gradio as gr

    path = Path(path)
    kind = run_kind(path)
    if kind == "image":
        from electra.demo.image_page import ImageDemo, build

        demo, curves = ImageDemo(path), IMAGE_CURVES
    else:
        from electra.demo.text_page import TextDemo, build

        demo, curves = TextDemo(path), TEXT_CURVES
    picture, last = _curves(path, curves, scratch)
    with gr.Blocks(title=f"electra demo: {path.name}") as page:
        gr.Markdown(f"# electra demo: {path.name}")
        on_open = build(gr, demo, lambda fn, outputs, status: answer(gr, outputs, status)(fn))
        with gr.Accordion("training curves and the last metrics row", open=picture is not None):
            if picture is not None:
                gr.Image(str(picture), label="curves", interactive=False, elem_id="curves")
                gr.JSON(last, label=f"last row (step {last.get('step', '?')})", elem_id="last-row")
            else:
                gr.Markdown("no metrics.jsonl in this folder")
        for fn, inputs, outputs in on_open:   # an image page opens with a grid and a walk drawn
            page.load(fn, inputs, outputs)
    return page


def serve(path: str | Path, host: str = "127.0.0.1", port: int = 7860) -> int:
    run_kind(path)   # a folder that is not a run fails before anything loads
    if not 1 <= port <= 65535:
        raise UserError(f"--port must lie in 1..65535, got {port}")
    scratch = Path(tempfile.mkdtemp(prefix="electra-demo-"))
    atexit.register(shutil.rmtree, scratch, True)
    os.environ.setdefault("GRADIO_TEMP_DIR", str(scratch / "gradio"))
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")   # the page calls no one
    try:
        import gradio as gr
    except ImportError:
        raise UserError("the demo needs the demo extra: pip install -e '.[demo]'") from None
    page = build_page(path, scratch)
    # system fonts: the default theme fetches Google's, which an offline machine cannot reach
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "monospace"])
    print(f"electra demo of {path} at http://{host}:{port}  (Ctrl+C stops it)", file=sys.stderr, flush=True)
    page.launch(server_name=host, server_port=port, share=False, quiet=True, show_error=False, ssr_mode=False,
                theme=theme, footer_links=[], inbrowser=False)
    return 0
