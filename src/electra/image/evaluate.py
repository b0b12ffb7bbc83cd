"""``evaluate``: LeNet-FID, KID, precision/recall and class coverage of generated images, beside the real-data floor.

A target is a run folder (it samples N images itself), an N×28×28 ``.npy`` or a folder of 28×28 PNGs.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from electra.errors import UserError
from electra.image.classifier import get_classifier
from electra.core.files import write_json
from electra.image.data import ImageSet, load_dataset, read_image_files, to_model_range
from electra.image.metrics import class_coverage, fid, kid, precision_recall

REPORT_KEYS = ("fid", "kid", "precision", "recall", "classes_covered", "class_kl", "confidence")


def images_from_array(array: np.ndarray, source: str) -> torch.Tensor:
    """Interpret an array as N×28×28 images: uint8 0–255, floats in [0, 1], or floats in [−1, 1]."""
    array = np.asarray(array)
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 3 or array.shape[1:] != (28, 28):
        raise UserError(f"{source} has shape {tuple(array.shape)}; expected N×28×28 (or N×1×28×28) images")
    if len(array) == 0:
        raise UserError(f"{source} holds no images")
    if array.dtype == np.uint8:
        return torch.from_numpy(array.copy())
    real = np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating) \
        or array.dtype == np.bool_
    if not real or not np.isfinite(array).all():
        raise UserError(f"{source} holds {array.dtype} values that are not finite real numbers")
    lo, hi = float(array.min()), float(array.max())
    if lo >= 0 and hi <= 1:
        scaled = array * 255.0
    elif lo >= -1 and hi <= 1:
        scaled = (array + 1.0) * 127.5
    elif lo >= 0 and hi <= 255 and np.allclose(array, np.round(array)):
        scaled = array
    else:
        raise UserError(f"{source} values span [{lo:.3g}, {hi:.3g}]; give uint8 0–255, floats in [0, 1] or "
                        f"in [−1, 1]")
    return torch.from_numpy(np.round(scaled).clip(0, 255).astype(np.uint8))


def read_npy(path: Path) -> np.ndarray:
    """An .npy array, never unpickled; unreadable files are one clear error."""
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise UserError(f"{path} is not a readable .npy file ({exc or 'empty'})") from None


def load_target(target: str | Path, n: int, seed: int = 0) -> tuple[torch.Tensor, object | None, Path]:
    """(uint8 images, the run's system if TARGET is a run folder, where to write the JSON report).  A conditional
    run draws every class equally often (sample i asks for class i mod K; ``system.requested`` holds them)."""
    target = Path(target)
    if not target.exists():
        raise UserError(f"{target} does not exist; give a run folder, an .npy file or a folder of PNGs")
    if target.is_dir() and (target / "config.json").is_file():
        from electra.image.train import load_run, sample_images

        from electra.image.conditional import generator_inputs
        from electra.image.train import classes

        system = load_run(target)
        k = classes(system.config)
        system.requested = torch.arange(n, device="cpu") % k if k else None
        z = generator_inputs(n, system.config.noise_dim, k, torch.Generator().manual_seed(seed), system.requested)
        return sample_images(system.sampler, z), system, target / "eval.json"
    if target.is_dir():
        return read_image_files(target, fit=False), None, target.with_name(target.name + ".eval.json")
    if target.suffix.lower() == ".npy":
        return images_from_array(read_npy(target), str(target)), None, target.with_suffix(".eval.json")
    raise UserError(f"{target}: give a run folder, an .npy file or a folder of PNGs")


def score(model, real_features: np.ndarray, images: torch.Tensor) -> dict:
    feats, probs = model.embed(images)
    feats = feats.numpy()
    precision, recall = precision_recall(real_features, feats, k=3)
    return {"n": len(images), "fid": fid(real_features, feats),
            "kid": kid(real_features, feats, subset_size=min(1000, len(images))),
            "precision": precision, "recall": recall, **class_coverage(probs.numpy())}


@torch.no_grad()
def autoencoder_scores(system, test: ImageSet, batch: int = 500) -> dict:
    """Reconstruction error (per-image Bernoulli NLL, and pixel MSE) and the negative ELBO on the test split."""
    from electra.image.objectives import kl_to_standard_normal, pixel_reconstruction

    enc, gen = system.modules["encoder"].eval(), system.modules["generator"].eval()
    nll = kl_sum = mse = 0.0
    for chunk in test.images.split(batch):
        x = to_model_range(chunk)
        mu, logvar = enc(x)
        recon = gen(mu)
        nll += pixel_reconstruction(recon, x).sum().item()
        mse += ((recon - x) * 0.5).pow(2).flatten(1).mean(1).sum().item()
        kl_sum += kl_to_standard_normal(mu, logvar).sum().item()
    n = len(test)
    return {"reconstruction_nll": nll / n, "reconstruction_mse": mse / n, "neg_elbo": (nll + kl_sum) / n}


@torch.no_grad()
def class_match(model, images: torch.Tensor, requested: torch.Tensor) -> dict:
    """The share of samples the evaluation classifier assigns to the class they were drawn for, overall and per
    class."""
    predicted = model.embed(images)[1].argmax(1)
    hit = predicted == requested
    per_class = {str(c): float(hit[requested == c].float().mean()) for c in requested.unique().tolist()}
    return {"class_match": float(hit.float().mean()), "per_class": per_class}


def split_for_eval(dataset: str, data_dir: str | None) -> tuple[ImageSet, ImageSet]:
    """(train, test) for the classifier and the reference set; the embedded sample holds out every fifth digit."""
    if dataset == "embedded":
        full = load_dataset("embedded")
        held = torch.arange(len(full), device="cpu") % 5 == 0
        return (ImageSet(full.images[~held], full.labels[~held], full.description + ", 4/5 for training"),
                ImageSet(full.images[held], full.labels[held], full.description + ", 1/5 held out"))
    if dataset not in ("mnist", "fashion-mnist"):
        raise UserError(f"eval needs a labelled data set with a test split (mnist, fashion-mnist, embedded), "
                        f"not '{dataset}'")
    return load_dataset(dataset, "train", data_dir), load_dataset(dataset, "test", data_dir)


def evaluate(target: str | Path, dataset: str | None = None, data_dir: str | None = None, n: int = 10_000,
             seed: int = 0, floor: bool = True, progress: bool = True, write: bool = True,
             classifier_steps: int = 1500, iwae_k: int = 5000, iwae_images: int = 1000) -> dict:
    """Score a target against the test split; return (and write as JSON) the report.  A ``binarize=true`` VAE run
    also gets its test NLL from ``iwae_k`` importance samples on the first ``iwae_images`` test digits."""
    if n < 2:
        raise UserError(f"--n must be at least 2, got {n}")
    if iwae_k < 1 or iwae_images < 1:
        raise UserError("--iwae-k and --iwae-images must be at least 1")
    images, system, report_path = load_target(target, n, seed)
    if len(images) < 2:
        raise UserError(f"{target} holds {len(images)} image; need at least 2 to compare distributions")
    if dataset is None:
        dataset = system.config.dataset if system is not None else "mnist"
        data_dir = data_dir or (system.config.data_dir if system is not None else None)
    train, test = split_for_eval(dataset, data_dir)
    model, acc = get_classifier(dataset, train, test, classifier_steps, progress=progress)
    real_features = model.embed(test.images)[0].numpy()
    report = {"target": str(target), "dataset": dataset, "reference": test.description,
              "classifier_test_accuracy": acc, "generated": score(model, real_features, images)}
    if floor:
        g = torch.Generator().manual_seed(seed + 1)
        idx = torch.randperm(len(train), generator=g, device="cpu")[: min(len(images), len(train))]
        report["real_floor"] = score(model, real_features, train.images[idx])
    if system is not None and "encoder" in system.modules:
        report["autoencoder"] = autoencoder_scores(system, test)
    if system is not None and getattr(system.config, "binarize", False):
        from electra.image.likelihood import importance_sampled_nll

        report["likelihood"] = importance_sampled_nll(system.modules["encoder"], system.modules["generator"],
                                                      test.images[:iwae_images], iwae_k, seed, progress=progress)
    if system is not None and system.requested is not None:
        report["conditional"] = class_match(model, images, system.requested)
    if write:
        write_json(report_path, report)
        report["written_to"] = str(report_path)
    return report


def format_report(report: dict) -> str:
    rows = [("", "generated", "real floor")]
    for key in REPORT_KEYS:
        gen = report["generated"][key]
        real = report.get("real_floor", {}).get(key, float("nan"))
        fmt = (lambda v: f"{v:d}") if isinstance(gen, int) else (lambda v: f"{v:.4f}" if not math.isnan(v) else "-")
        rows.append((key, fmt(gen), fmt(real) if key in report.get("real_floor", {}) else "-"))
    rows.append(("n", str(report["generated"]["n"]), str(report.get("real_floor", {}).get("n", "-"))))
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{r[0]:<{width[0]}}  {r[1]:>{width[1]}}  {r[2]:>{width[2]}}" for r in rows]
    lines.append(f"reference: {report['reference']}; classifier test accuracy {report['classifier_test_accuracy']:.4f}")
    for key, value in report.get("autoencoder", {}).items():
        lines.append(f"{key}: {value:.4f}")
    if "likelihood" in report:
        lk = report["likelihood"]
        lines.append(f"test NLL: {lk['nll_nats']:.2f} ± {lk['standard_error']:.2f} nats (importance sampling, "
                     f"k={lk['k']}, {lk['images']} binarised test digits)")
    if "conditional" in report:
        c = report["conditional"]
        lines.append(f"samples classified as the class they were drawn for: {c['class_match']:.4f} (per class: "
                     + ", ".join(f"{k} {v:.3f}" for k, v in c["per_class"].items()) + ")")
    return "\n".join(lines)
