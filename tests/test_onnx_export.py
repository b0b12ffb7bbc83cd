"""ONNX export: the exported image generator and text networks, run in onnxruntime, give PyTorch's outputs."""

import json

import numpy as np
import pytest
import torch

from electra.config import apply_overrides
from electra.image.config import preset_config
from electra.image.train import train_image
from conftest import TINY
from test_cli import assert_one_line_error, run_cli
from text_fixtures import tiny_config

import onnxruntime  # the test extra brings it; never skipped


def _session(path):
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("preset", ["dcgan", "cdcgan"])
def test_the_exported_generator_draws_the_pixels_pytorch_draws(preset, mnist_dir, tmp_path, capsys):
    from electra.image.conditional import with_classes
    from electra.image.train import load_run, sample_images

    cfg = apply_overrides(preset_config(preset), {**TINY, "data_dir": str(mnist_dir), "steps": 3})
    run = train_image(cfg, out=str(tmp_path / "run"), progress=False)
    code, out, err = run_cli(capsys, "image", "export", str(run), "--onnx", str(tmp_path / "g.onnx"))
    assert code == 0, err
    info = json.loads((tmp_path / "g.json").read_text())
    assert info["opset"] >= 17 and info["classes"] == (10 if preset == "cdcgan" else 0)
    session = _session(tmp_path / "g.onnx")
    system = load_run(run)
    for n in (1, 5):   # the batch is free, down to one image
        noise = np.random.default_rng(n).standard_normal((n, cfg.noise_dim)).astype(np.float32)
        feeds = {"noise": noise}
        z = torch.from_numpy(noise)
        if preset == "cdcgan":
            labels = np.arange(n, dtype=np.int64) % 10
            feeds["label"] = labels
            z = with_classes(z, torch.from_numpy(labels), 10)
        images = session.run(["images"], feeds)[0]
        expected = sample_images(system.sampler, z).numpy()
        assert images.dtype == np.uint8 and images.shape == (n, 28, 28)
        # float rounding may move a pixel that sits on a .5 boundary by one grey level, never more
        assert np.abs(images.astype(int) - expected.astype(int)).max() <= 1
        assert (images != expected).mean() < 0.01


def test_the_exported_text_networks_match_pytorch(corpus, tmp_path, capsys):
    from tokenizers import Tokenizer
    from transformers import ElectraForMaskedLM, ElectraForPreTraining

    from electra.text.pretrain import pretrain

    run = pretrain(tiny_config(steps=2), data=str(corpus["data"]), out=str(tmp_path / "run"), progress=False)
    code, out, err = run_cli(capsys, "text", "export", str(run), "--onnx", str(tmp_path / "onnx"))
    assert code == 0, err
    info = json.loads((tmp_path / "onnx" / "export.json").read_text())
    assert set(info["models"]) == {"discriminator", "generator"}
    tok = Tokenizer.from_file(str(tmp_path / "onnx" / "tokenizer.json"))
    rows = [tok.encode(t).ids for t in ["the cat sat on the mat.", "a dog found the moon and sang to a tree."]]
    length = max(map(len, rows))
    ids = np.array([r + [0] * (length - len(r)) for r in rows], dtype=np.int64)
    mask = np.array([[1] * len(r) + [0] * (length - len(r)) for r in rows], dtype=np.int64)
    assert mask.min() == 0   # one row is padded: the graph must apply the mask it is given
    for name, cls in (("discriminator", ElectraForPreTraining), ("generator", ElectraForMaskedLM)):
        got = _session(tmp_path / "onnx" / f"{name}.onnx").run(["logits"], {"input_ids": ids,
                                                                              "attention_mask": mask})[0]
        net = cls.from_pretrained(str(run / name)).eval()
        with torch.no_grad():
            want = net(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits.numpy()
        valid = mask.astype(bool)
        assert got.shape == want.shape
        np.testing.assert_allclose(got[valid], want[valid], atol=1e-4, rtol=1e-4)


def test_export_refuses_bad_input(tmp_path, capsys):
    code, _, err = run_cli(capsys, "image", "export", str(tmp_path / "nothing"), "--onnx", str(tmp_path / "g.onnx"))
    assert_one_line_error(code, err, "does not exist")
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(capsys, "text", "export", str(tmp_path / "empty"), "--onnx", str(tmp_path / "o"))
    assert_one_line_error(code, err, "holds no ELECTRA models")
    assert not (tmp_path / "o").exists() and not (tmp_path / "g.onnx").exists()


def test_the_readme_lines_draw_digits_from_the_export(mnist_dir, tmp_path, capsys):
    """The README's onnxruntime-and-numpy snippet, run as written on an exported tiny generator."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    from PIL import Image

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    snippet = re.search(r"```python\n(import numpy as np, onnxruntime as ort\n.*?)```", readme, re.S).group(1)
    assert len(snippet.strip().splitlines()) <= 10
    run = train_image(apply_overrides(preset_config("dcgan"), {**TINY, "data_dir": str(mnist_dir), "steps": 2}),
                      out=str(tmp_path / "run"), progress=False)
    assert run_cli(capsys, "image", "export", str(run), "--onnx", str(tmp_path / "g.onnx"))[0] == 0
    subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, check=True)
    assert Image.open(tmp_path / "digits.png").size == (112, 112)
