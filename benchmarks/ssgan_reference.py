"""A cross-check of the ``ssgan`` preset: Salimans et al. 2016's MNIST run written again in plain PyTorch, apart from
the library, step for step after openai/improved-gan ``train_mnist_feature_matching.py`` (the Theano script).

    python benchmarks/ssgan_reference.py [--draws 1] [--epochs 30] [--generator script|library|library-paperinit]
        [--labelled script|preset] [--adam script|torch] [--labels 100] [--work DIR] [--table] [--compare-library]

Nothing here comes from ``electra`` but the MNIST reader: its own weight-normalised layers (directions N(0, 0.1),
hidden scales set from 500 images and then fixed, the output scale trained), its own generator (uniform noise,
Glorot-uniform dense layers, batch norm with a shift and no scale, softplus, a weight-normalised sigmoid output with
its scale starting at 1), the script's Adam (ε 1e-8 under the square root, β1 0.5, lr 3e-3 constant), its epoch
(the labelled digits, 100 unless ``--labels``, tiled to a batch of 100 in a new order each pass; two orders of the 60,000 digits, the
second for the generator's feature targets; new noise for every pass through G), and its Polyak average (rate 1e-4,
starting from zero; the live weights' error is recorded beside it).  If the library and this port plateau at the
same test error, the gap to the paper's 0.93% is the method's at this length, not a bug of the library.

The labelled digits: the first ``labels``/10 of each class after a permutation of the training set seeded with the draw (the
script's ``seed_data``), or with ``--labelled preset`` the digits the ``ssgan`` preset's run with ``seed=DRAW``
labels (``labelled_indices``, so that a difference between a preset run and this port can be split into the label
draw's part and the training's); the draw also seeds the weights and the noise.  Each epoch checkpoints under ``--work``
(not committed), so a stopped run continues; a finished run writes its cell, the per-epoch curves and minutes, to
``benchmarks/results/ssgan_reference/`` (a run for more epochs continues the checkpoint of a shorter one).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SHARED, say, write_cell  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "ssgan_reference"
WIDTHS = (784, 1000, 500, 250, 250, 250)
BATCH, LR = 100, 3e-3
GENERATOR_INITS = {"library": "torch", "library-paperinit": "paper"}   # --generator: SSGANGenerator's init
GENERATOR_TAGS = {"script": "", "library": "-libg", "library-paperinit": "-libg-paperinit"}


class Dense:
    """A weight-normalised dense layer as the script's ``nn.DenseLayer``: W = V·g/‖V‖ per output unit."""

    def __init__(self, n_in: int, n_out: int, train_scale: bool) -> None:
        self.V = (torch.randn(n_in, n_out) * 0.1).requires_grad_()
        self.g = torch.ones(n_out, requires_grad=train_scale)
        self.b = torch.zeros(n_out, requires_grad=True)
        self.trained = [self.V, self.b] + ([self.g] if train_scale else [])


class Discriminator:
    def __init__(self) -> None:
        self.layers = [Dense(a, b, False) for a, b in zip(WIDTHS, WIDTHS[1:])] + [Dense(WIDTHS[-1], 10, True)]
        self.params = [p for layer in self.layers for p in layer.trained]

    def __call__(self, x, noisy=True, weights=None, init=False):
        """(the last hidden layer's ReLU output, the class logits); ``weights``: {id(param): tensor} to use instead."""
        def swap(p):
            return p if weights is None or id(p) not in weights else weights[id(p)]

        h = x + 0.3 * torch.randn_like(x) if noisy else x
        features = None
        for i, layer in enumerate(self.layers):
            V, g = swap(layer.V), swap(layer.g)
            a = h @ (V * (g / V.square().sum(0).sqrt()))
            if init:   # data-dependent initialisation: zero mean, unit variance per unit on this batch
                with torch.no_grad():
                    mean = a.mean(0)
                    std = (a - mean).square().mean(0).sqrt()
                    layer.g.data /= std
                    layer.b.data = -mean / std
                    a = (a - mean) / std
            else:
                a = a + swap(layer.b)
            if i == len(self.layers) - 1:
                return features, a
            features = h = F.relu(a)
            if noisy:
                h = h + 0.5 * torch.randn_like(h)


def glorot(n_in: int, n_out: int) -> torch.Tensor:
    limit = math.sqrt(6.0 / (n_in + n_out))
    return ((torch.rand(n_in, n_out) * 2 - 1) * limit).requires_grad_()


class Generator:
    def __init__(self) -> None:
        self.w1, self.w2, self.w3 = glorot(100, 500), glorot(500, 500), glorot(500, 784)
        self.shift1, self.shift2 = torch.zeros(500, requires_grad=True), torch.zeros(500, requires_grad=True)
        self.scale3, self.b3 = torch.ones(784, requires_grad=True), torch.zeros(784, requires_grad=True)
        self.params = [self.w1, self.shift1, self.w2, self.shift2, self.w3, self.scale3, self.b3]

    @staticmethod
    def _norm(a, shift):
        centred = a - a.mean(0)
        return centred / (1e-6 + centred.square().mean(0)).sqrt() + shift

    def __call__(self, n: int) -> torch.Tensor:
        h = F.softplus(self._norm(torch.rand(n, 100) @ self.w1, self.shift1))
        h = F.softplus(self._norm(h @ self.w2, self.shift2))
        w = self.w3 * (self.scale3 / (1e-6 + self.w3.square().sum(0)).sqrt())
        return torch.sigmoid(h @ w + self.b3)


class LibraryGenerator:
    """``--generator library``: the library's generator (``electra.image.semi_supervised.SSGANGenerator``: Gaussian
    noise, batch norm with a scale) with torch's initial weights and a tanh output (``g_init=torch``) in place of the
    script's, to tell whether a difference between the port and the preset lies in G; ``library-paperinit``: the
    same with ``init="paper"`` (the script's initial weights and sigmoid output; the preset's default)."""

    def __init__(self, init: str = "torch") -> None:
        from electra.image.semi_supervised import SSGANGenerator

        self.module = SSGANGenerator(noise_dim=100, init=init)
        self.params = list(self.module.parameters())

    def __call__(self, n: int) -> torch.Tensor:
        return (self.module(torch.randn(n, 100)).flatten(1) + 1.0) * 0.5


class ScriptAdam:
    """The script's ``nn.adam_updates``: ε inside the square root; ``eps_outside``: torch's Adam with the preset's
    ``adam_eps`` 1e-4 added to √v instead (up to 30% smaller steps where √v is near 1e-4, as G's gradients are)."""

    def __init__(self, params, eps_outside: bool = False, beta1: float = 0.5, beta2: float = 0.999) -> None:
        self.params, self.beta1, self.beta2, self.t = params, beta1, beta2, 0
        self.eps_outside = eps_outside
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]

    @torch.no_grad()
    def step(self, loss: torch.Tensor) -> None:
        self.t += 1
        for p, grad, m, v in zip(self.params, torch.autograd.grad(loss, self.params), self.m, self.v):
            m.mul_(self.beta1).add_(grad, alpha=1 - self.beta1)
            v.mul_(self.beta2).addcmul_(grad, grad, value=1 - self.beta2)
            v_hat = v / (1 - self.beta2 ** self.t)
            root = v_hat.sqrt() + 1e-4 if self.eps_outside else (v_hat + 1e-8).sqrt()
            p.sub_(LR * (m / (1 - self.beta1 ** self.t)) / root)


def mnist():
    from electra.image.data import load_idx_dataset

    train = load_idx_dataset("mnist", "train", str(SHARED / "mnist"))
    test = load_idx_dataset("mnist", "test", str(SHARED / "mnist"))
    flat = lambda s: s.images.reshape(len(s.images), -1).float().div(255.0)   # noqa: E731
    return flat(train).numpy(), train.labels.numpy(), flat(test), test.labels


class Run:
    """Everything a stopped run needs to continue: networks, optimisers, the average, both random streams."""

    def __init__(self, draw: int, train_x: np.ndarray, train_y: np.ndarray, setup: Setup) -> None:
        torch.manual_seed(draw)
        self.rng = np.random.RandomState(draw)
        order = np.random.RandomState(draw).permutation(len(train_x))
        x, y = train_x[order], train_y[order]
        if setup.labelled == "preset":
            from electra.image.semi_supervised import labelled_indices

            chosen = labelled_indices(torch.from_numpy(train_y), setup.labels, draw).numpy()
            self.lab_x, self.lab_y = train_x[chosen], train_y[chosen]
        else:
            per_class = setup.labels // 10
            self.lab_x = np.concatenate([x[y == c][:per_class] for c in range(10)])
            self.lab_y = np.concatenate([y[y == c][:per_class] for c in range(10)])
        self.D = Discriminator()
        self.G = Generator() if setup.generator == "script" else LibraryGenerator(GENERATOR_INITS[setup.generator])
        self.D(torch.from_numpy(x[:500]), init=True)
        eps_outside = setup.adam == "torch"
        self.opt_d, self.opt_g = ScriptAdam(self.D.params, eps_outside), ScriptAdam(self.G.params, eps_outside)
        self.average = [torch.zeros_like(p) for p in self.D.params]
        self.errors, self.live_errors, self.seconds = [], [], []   # per epoch done

    @property
    def epoch(self) -> int:
        return len(self.errors)

    def tensors(self) -> list[torch.Tensor]:
        return (self.D.params + [layer.g for layer in self.D.layers] + self.G.params + self.average
                + self.opt_d.m + self.opt_d.v + self.opt_g.m + self.opt_g.v)

    def save(self, path: Path) -> None:
        state = {"tensors": [t.detach().clone() for t in self.tensors()], "numpy": self.rng.get_state(),
                 "torch": torch.get_rng_state(), "t": (self.opt_d.t, self.opt_g.t),
                 "errors": self.errors, "live_errors": self.live_errors, "seconds": self.seconds}
        torch.save(state, path.with_suffix(".tmp"))
        path.with_suffix(".tmp").replace(path)

    def load(self, path: Path) -> None:
        state = torch.load(path, weights_only=False)   # our own file, written by save()
        with torch.no_grad():
            for t, saved in zip(self.tensors(), state["tensors"]):
                t.copy_(saved)
        self.rng.set_state(state["numpy"])
        torch.set_rng_state(state["torch"])
        self.opt_d.t, self.opt_g.t = state["t"]
        self.errors, self.live_errors, self.seconds = state["errors"], state["live_errors"], state["seconds"]

    def train_epoch(self, unlabelled: np.ndarray) -> None:
        tiles = len(unlabelled) // len(self.lab_x)
        orders = [self.rng.permutation(len(self.lab_x)) for _ in range(tiles)]
        lab_x = torch.from_numpy(np.concatenate([self.lab_x[o] for o in orders]))
        lab_y = torch.from_numpy(np.concatenate([self.lab_y[o] for o in orders])).long()
        first = torch.from_numpy(unlabelled[self.rng.permutation(len(unlabelled))])
        second = torch.from_numpy(unlabelled[self.rng.permutation(len(unlabelled))])
        for t in range(len(unlabelled) // BATCH):
            s = slice(t * BATCH, (t + 1) * BATCH)
            _, out_lab = self.D(lab_x[s])
            _, out_unl = self.D(first[s])
            with torch.no_grad():
                fake = self.G(BATCH)
            _, out_fake = self.D(fake)
            loss_lab = F.cross_entropy(out_lab, lab_y[s])
            l_unl = out_unl.logsumexp(1)
            loss_unl = 0.5 * (F.softplus(l_unl) - l_unl).mean() + 0.5 * F.softplus(out_fake.logsumexp(1)).mean()
            self.opt_d.step(loss_lab + loss_unl)
            with torch.no_grad():
                for a, p in zip(self.average, self.D.params):
                    a.add_(1e-4 * (p - a))
            features_fake, _ = self.D(self.G(BATCH))
            with torch.no_grad():
                features_real, _ = self.D(second[s])
            self.opt_g.step((features_fake.mean(0) - features_real.mean(0)).square().mean())

    @torch.no_grad()
    def test_errors(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        averaged = {id(p): a for p, a in zip(self.D.params, self.average)}
        wrong = lambda logits: float((logits.argmax(1) != y).float().mean())   # noqa: E731
        return wrong(self.D(x, noisy=False, weights=averaged)[1]), wrong(self.D(x, noisy=False)[1])


@dataclass(frozen=True)
class Setup:
    """What a cell changes in the port: its generator, its labelled digits (which, how many), its Adam."""
    generator: str = "script"
    labelled: str = "script"
    adam: str = "script"
    labels: int = 100

    def cell_name(self, draw: int) -> str:
        tags = (GENERATOR_TAGS[self.generator] + ("-presetlabels" if self.labelled == "preset" else "")
                + ("-torchadam" if self.adam == "torch" else ""))
        return f"reference{tags}-{self.labels}labels-draw{draw}"

    def cell_path(self, draw: int, epochs: int) -> Path:
        return RESULTS / f"{self.cell_name(draw)}-{epochs}ep.json"


def run_cell(draw: int, epochs: int, work: Path, data, setup: Setup) -> dict:
    path = setup.cell_path(draw, epochs)
    if path.is_file():
        return json.loads(path.read_text())
    train_x, train_y, test_x, test_y = data
    work.mkdir(parents=True, exist_ok=True)
    checkpoint = work / f"{setup.cell_name(draw)}.pt"
    run = Run(draw, train_x, train_y, setup)
    if checkpoint.is_file():
        run.load(checkpoint)
        say(f"draw {draw}: continuing after epoch {run.epoch}")
    while run.epoch < epochs:
        start = time.time()
        run.train_epoch(train_x)
        error, live = run.test_errors(test_x, test_y)
        run.errors.append(error)
        run.live_errors.append(live)
        run.seconds.append(time.time() - start)
        run.save(checkpoint)
        say(f"draw {draw} epoch {run.epoch}/{epochs}: test error {100 * error:.2f}% (average), "
            f"{100 * live:.2f}% (live), {time.time() - start:.0f} s")
    result = {**asdict(setup), "draw": draw, "epochs": epochs,
              "test_error": run.errors[epochs - 1],
              "live_test_error": run.live_errors[epochs - 1], "errors_by_epoch": run.errors[:epochs],
              "live_errors_by_epoch": run.live_errors[:epochs], "minutes": round(sum(run.seconds[:epochs]) / 60, 2)}
    write_cell(path, result)
    return result


def table(draws, epochs, setup: Setup) -> None:
    cells = [setup.cell_path(d, epochs) for d in draws]
    rows = [json.loads(c.read_text()) for c in cells if c.is_file()]
    for r in rows:
        say(f"draw {r['draw']}, {r['epochs']} epochs: {100 * r['test_error']:.2f}% (average), "
            f"{100 * r['live_test_error']:.2f}% (live), {r['minutes']} min")
    if len(rows) > 1:
        live = [100 * r["live_test_error"] for r in rows]
        say(f"live: {statistics.mean(live):.2f} ± {statistics.stdev(live):.2f}% over {len(rows)} draws")


def compare_with_library() -> None:
    """``--compare-library``: the library's paper generator (``g_init=paper g_noise=uniform g_bn_scale=false``) and
    discriminator given this port's weights compute its images, feature-matching loss and generator gradients
    (noise layers off, batch statistics on; the same uniform noise through Φ)."""
    from electra.image.semi_supervised import SSGANDiscriminator, SSGANGenerator

    torch.manual_seed(0)
    G, D = Generator(), Discriminator()
    D(torch.rand(500, 784), init=True)
    lib_g = SSGANGenerator(uniform_noise=True, bn_scale=False, init="paper")
    lib_d = SSGANDiscriminator(10).eval()
    out = lib_g.net[6]
    lib_g_params = [lib_g.net[0].weight, lib_g.net[1].shift, lib_g.net[3].weight, lib_g.net[4].shift,
                    out.parametrizations.weight.original1, out.parametrizations.weight.original0, out.bias]
    with torch.no_grad():   # the port's (in, out) matrices are the library's (out, in) transposed
        for mine, theirs in zip(G.params, lib_g_params):
            theirs.copy_(mine.T.reshape(theirs.shape) if mine.dim() == 2 else mine.reshape(theirs.shape))
        for layer, lib in zip(D.layers, list(lib_d.hidden) + [lib_d.head]):
            lib.direction.copy_(layer.V.T)
            lib.bias.copy_(layer.b)
            lib.scale.copy_(layer.g)
    z, real = torch.randn(BATCH, 100), torch.rand(BATCH, 784)
    u = 0.5 * (1 + torch.erf(z / 2 ** 0.5))   # the library's Φ(z): the port's uniform noise
    h = F.softplus(G._norm(F.softplus(G._norm(u @ G.w1, G.shift1)) @ G.w2, G.shift2))
    mine = torch.sigmoid(h @ (G.w3 * (G.scale3 / (1e-6 + G.w3.square().sum(0)).sqrt())) + G.b3)
    theirs = (lib_g(z).flatten(1) + 1) / 2
    loss_mine = (D(mine, noisy=False)[0].mean(0) - D(real, noisy=False)[0].mean(0)).square().mean()
    loss_theirs = (lib_d.features(theirs * 2 - 1).mean(0) - lib_d.features(real * 2 - 1).mean(0)).square().mean()
    say(f"images: largest difference {(mine - theirs).abs().max().item():.1e}; feature-matching loss "
        f"{loss_mine.item():.6f} (port) {loss_theirs.item():.6f} (library)")
    names = ("w1", "shift1", "w2", "shift2", "output direction", "output scale", "output bias")
    for name, a, b in zip(names, torch.autograd.grad(loss_mine, G.params),
                          torch.autograd.grad(loss_theirs, lib_g_params)):
        b = b.T if a.dim() == 2 else b.reshape(a.shape)
        say(f"  ∂/∂{name}: mean |·| {float(a.abs().mean()):.4e} (port) {float(b.abs().mean()):.4e} (library), "
            f"largest difference {float((a - b).abs().max()):.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--draws", nargs="+", type=int, default=[1])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--work", default=str(Path(__file__).resolve().parent / "work" / "ssgan_reference"))
    parser.add_argument("--generator", choices=list(GENERATOR_TAGS), default="script",
                        help="library: the library's generator with g_init=torch in place of the script's; "
                             "library-paperinit: the same with the script's initial weights and output (g_init=paper)")
    parser.add_argument("--labelled", choices=["script", "preset"], default="script",
                        help="preset: the labelled digits of the ssgan preset's run with seed=DRAW")
    parser.add_argument("--adam", choices=["script", "torch"], default="script",
                        help="torch: torch's Adam with the preset's ε 1e-4 added to √v (the script's: √(v + 1e-8))")
    parser.add_argument("--labels", type=int, default=100, help="labelled digits, a multiple of 10 (10 per class: "
                        "the paper's 100)")
    parser.add_argument("--table", action="store_true", help="print the cells done, run nothing")
    parser.add_argument("--compare-library", action="store_true",
                        help="check that the library's paper generator and D compute this port's loss and gradients")
    args = parser.parse_args()
    if args.compare_library:
        return compare_with_library()
    if args.labels < 10 or args.labels % 10:
        parser.error("--labels: give a multiple of the 10 classes")
    setup = Setup(args.generator, args.labelled, args.adam, args.labels)
    if not args.table:
        data = mnist()
        for draw in args.draws:
            run_cell(draw, args.epochs, Path(args.work), data, setup)
    table(args.draws, args.epochs, setup)


if __name__ == "__main__":
    main()
