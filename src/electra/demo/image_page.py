"""What the demo page does with an image run: grids from a seed, a walk between two latent points, a chosen class
(conditional runs), and the discriminator's reading of an uploaded digit (semi-supervised runs).

``ImageDemo`` holds the models and answers in numpy; ``build`` lays it out as Gradio controls.  Nothing here
writes a file: pictures go to the browser, and its download button saves what is shown.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from electra.errors import UserError

ANY = "any"
WALK_STEPS = 10


class ImageDemo:
    def __init__(self, run_dir: str | Path) -> None:
        from electra.image.train import class_names, classes, load_run

        self.run_dir = Path(run_dir)
        self.system = load_run(run_dir)
        self.config = self.system.config
        self.classes = classes(self.config)
        self.names = class_names(run_dir, self.config) if self.classes else []
        self.recognises = self.config.objective == "ssgan"
        self.recognised_names = [str(i) for i in range(self.config.num_classes)] if self.recognises else []

    def _labels(self, n: int, choice: str | None, rng: torch.Generator) -> torch.Tensor | None:
        if not self.classes:
            return None
        if choice in (None, "", ANY):
            return torch.randint(0, self.classes, (n,), generator=rng, device="cpu")
        if choice not in self.names:
            raise UserError(f"{choice!r} is not one of the run's classes ({', '.join(self.names)})")
        return torch.full((n,), self.names.index(choice), dtype=torch.long, device="cpu")

    def _draw(self, z: torch.Tensor) -> np.ndarray:
        from electra.image.train import sample_images

        return sample_images(self.system.sampler, z).numpy()

    def grid(self, seed: int, n: int = 64, choice: str | None = None) -> np.ndarray:
        """``n`` samples for ``seed`` (all of class ``choice`` in a conditional run) as one grey picture."""
        from electra.image.conditional import generator_inputs
        from electra.image.pictures import make_grid

        seed, n = _whole(seed, "seed"), _whole(n, "number of images")
        if not 1 <= n <= 400:
            raise UserError(f"the grid takes 1 to 400 images, not {n}")
        rng = torch.Generator().manual_seed(seed)
        labels = self._labels(n, choice, rng)
        z = generator_inputs(n, self.config.noise_dim, self.classes, rng, labels)
        return make_grid(self._draw(z), scale=3)

    def walk(self, seed: int, t: float, choice: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The image at fraction ``t`` of the way between two noises drawn from ``seed`` (spherical path), large,
        and the whole path as a strip of ``WALK_STEPS`` images."""
        from electra.image.conditional import with_classes
        from electra.image.pictures import make_grid
        from electra.image.sampling import slerp

        seed = _whole(seed, "seed")
        if not 0.0 <= float(t) <= 1.0:
            raise UserError(f"the walk position lies in [0, 1], not {t}")
        rng = torch.Generator().manual_seed(seed)
        a, b = torch.randn(2, self.config.noise_dim, generator=rng, device="cpu")
        ts = torch.cat([torch.tensor([float(t)], device="cpu"),
                        torch.linspace(0, 1, WALK_STEPS, device="cpu")]).view(-1, 1)
        z = slerp(a.expand(len(ts), -1), b.expand(len(ts), -1), ts)
        labels = self._labels(1, choice, rng)
        if labels is not None:   # the walk stays within one class
            z = with_classes(z, labels.expand(len(ts)), self.classes)
        images = self._draw(z)
        return images[0].repeat(8, 0).repeat(8, 1), make_grid(images[1:], ncol=WALK_STEPS, scale=3)

    def recognise(self, image: np.ndarray | None) -> dict[str, float]:
        """Class probabilities the discriminator gives a 28×28 digit (white on black, as MNIST; a dark-on-light
        picture is inverted first)."""
        from electra.image.semi_supervised import classify

        if not self.recognises:
            raise UserError("this run's discriminator does not name digits (train one with --preset ssgan)")
        if image is None:
            raise UserError("upload a 28×28 picture of a digit first")
        picture = np.asarray(image)
        scaled_to_one = picture.dtype.kind == "f" and picture.max() <= 1.0   # floats in [0, 1], not grey levels
        if picture.ndim == 3:   # RGB(A) → grey
            picture = picture[..., :3].mean(-1)
        if picture.shape != (28, 28):
            raise UserError(f"the picture is {picture.shape[1]}×{picture.shape[0]} pixels; the discriminator reads "
                            f"28×28 digits")
        picture = picture.astype(np.float64) * (255 if scaled_to_one else 1)
        border = np.concatenate([picture[0], picture[-1], picture[:, 0], picture[:, -1]])
        if border.mean() > 127:   # a dark digit on a light page
            picture = 255 - picture
        digit = torch.from_numpy(np.clip(picture.round(), 0, 255).astype(np.uint8))[None]
        probs = classify(self.system.recogniser, digit)[0]
        return {name: float(p) for name, p in zip(self.recognised_names, probs)}


def _whole(value, what: str) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UserError(f"the {what} must be a whole number, not {value!r}") from None
    if not number.is_integer():
        raise UserError(f"the {what} must be a whole number, not {value}")
    return int(number)


def build(gr, demo: ImageDemo, answer) -> list:
    """The image controls, inside the caller's Blocks; returns the (handler, inputs, outputs) to run when the
    page opens.  ``answer(fn, outputs, status)`` wraps a handler so that a bad input becomes a message in
    ``status``."""
    cfg = demo.config
    gr.Markdown(f"**{cfg.preset}** ({cfg.objective}, {cfg.model}) — {demo.run_dir}")
    with gr.Row():
        seed = gr.Number(value=0, label="seed", elem_id="seed")
        count = gr.Slider(1, 100, value=64, step=1, label="images", elem_id="count")
        choice = gr.Dropdown([ANY] + demo.names, value=ANY, label="class", elem_id="class",
                             visible=bool(demo.classes))
    with gr.Row():
        draw = gr.Button("Draw", elem_id="draw")
        new_noise = gr.Button("New noise", variant="primary", elem_id="new-noise")
    grid = gr.Image(label="samples (the download button saves them)", type="numpy", image_mode="L",
                    elem_id="grid", interactive=False, format="png")
    gr.Markdown("**Walk** between two noises drawn from the seed")
    t = gr.Slider(0, 1, value=0.5, step=0.05, label="position", elem_id="walk-position")
    with gr.Row():
        here = gr.Image(label="here", type="numpy", image_mode="L", elem_id="walk-image", interactive=False,
                        format="png")
        strip = gr.Image(label="the whole walk", type="numpy", image_mode="L", elem_id="walk-strip",
                         interactive=False, format="png")
    status = gr.Markdown(elem_id="image-status")

    def show(s, n, c):
        return demo.grid(s, n, c), ""

    def next_noise(s, n, c):
        s = _whole(s, "seed") + 1
        return s, demo.grid(s, n, c), ""

    def walk(s, position, c):
        return (*demo.walk(s, position, c), "")

    grid_fn = answer(show, 1, status)
    draw.click(grid_fn, [seed, count, choice], [grid, status])
    new_noise.click(answer(next_noise, 2, status), [seed, count, choice], [seed, grid, status])
    choice.change(grid_fn, [seed, count, choice], [grid, status])
    walk_fn = answer(walk, 2, status)
    t.change(walk_fn, [seed, t, choice], [here, strip, status])
    if demo.recognises:
        gr.Markdown("**Which digit is it?** The discriminator reads an uploaded 28×28 digit")
        with gr.Row():
            upload = gr.Image(label="a 28×28 digit", type="numpy", image_mode="L", sources=["upload", "clipboard"],
                              elem_id="digit-upload")
            probs = gr.Label(num_top_classes=10, label="the discriminator's class probabilities",
                             elem_id="digit-probabilities")
        read = gr.Button("Read the digit", elem_id="read-digit")
        read.click(answer(lambda img: (demo.recognise(img), ""), 1, status), [upload], [probs, status])
    return [(grid_fn, [seed, count, choice], [grid, status]), (walk_fn, [seed, t, choice], [here, strip, status])]
