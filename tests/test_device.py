"""Device placement, proven without a GPU: every job trains on a second device (the CPU acting as one, see
``virtual_device.py``) and reaches the weights the CPU reaches; every tensor factory in the package names its device.
"""

import ast
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY
from text_fixtures import tiny_config
from virtual_device import DEVICE, DeviceMismatch, VirtualDevice

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "electra"
FACTORIES = {"arange", "zeros", "ones", "full", "empty", "empty_strided", "tensor", "as_tensor", "rand", "randn",
             "randint", "randperm", "normal", "bernoulli", "linspace", "logspace", "eye"}


def test_the_virtual_device_computes_for_real_and_refuses_cpu_mixing():
    with VirtualDevice() as mode:
        x = torch.arange(12.0).view(4, 3).to(DEVICE)
        assert x.device == DEVICE and x.sum().item() == 66.0 and x[x > 5].shape == (6,)
        with pytest.raises(DeviceMismatch):
            torch.arange(4) < x[:, 0]                        # the classic: a host arange against device data
        with pytest.raises(DeviceMismatch):
            x + torch.ones(3)
        assert (x * torch.tensor(2.0)).sum().item() == 132.0   # 0-dim host tensors mix, as on CUDA
        layer = torch.nn.Linear(3, 2).to(DEVICE)
        layer(x).sum().backward()
        assert layer.weight.grad.device == DEVICE and x.cpu().device.type == "cpu"
    assert mode.ops > 10


def _weights(run):
    return load_file(str(run / "checkpoints" / "last" / "model.safetensors"))


def _assert_close(a, b):
    assert a.keys() == b.keys()
    for k in a:  # the device runs the same kernels, but Adam is multi-tensor there and fused on the CPU
        assert torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4), k


@pytest.mark.parametrize("preset", ["seed", "dcgan", "vae", "vaegan"])
def test_image_training_on_a_second_device_matches_the_cpu(preset, mnist_dir, tmp_path):
    from electra.config import apply_overrides
    from electra.image.config import preset_config
    from electra.image.train import train_image

    # dcgan: G at D's lr — the preset's 3× lr turns the rounding differences of fused (CPU) and multi-tensor (device)
    # Adam into weight differences above the tolerance within 3 steps; what this checks is the placement
    cfg = apply_overrides(preset_config(preset), {**TINY, "data_dir": str(mnist_dir), "steps": 3,
                                                  **({"ema": 0.9, "lr_g_scale": 1.0} if preset == "dcgan" else {})})
    cpu = train_image(cfg, out=str(tmp_path / "cpu"), progress=False)
    with VirtualDevice() as mode:
        dev = train_image(cfg, out=str(tmp_path / "dev"), progress=False, device=DEVICE)
    assert mode.ops > 200
    _assert_close(_weights(cpu), _weights(dev))
    assert (dev / "samples" / "final.png").is_file()


@pytest.mark.parametrize("objective", ["rtd", "mlm"])
def test_text_pretraining_on_a_second_device_matches_the_cpu(objective, corpus, tmp_path):
    from electra.text.pretrain import pretrain

    cfg = tiny_config(objective=objective, steps=3, dropout=0.0)   # dropout masks are drawn differently off the CPU
    cpu = pretrain(cfg, data=str(corpus["data"]), out=str(tmp_path / "cpu"), progress=False)
    with VirtualDevice() as mode:
        dev = pretrain(cfg, data=str(corpus["data"]), out=str(tmp_path / "dev"), progress=False, device=DEVICE)
    assert mode.ops > 200
    _assert_close(_weights(cpu), _weights(dev))


def test_finetuning_and_sampling_on_a_second_device(tmp_path):
    from electra.config import apply_overrides
    from electra.image.config import preset_config
    from electra.image.train import build_system, sample_images
    from electra.text.finetune import finetune
    from electra.text.pretrain import pretrain

    from test_text_downstream import _sentiment_glue

    glue = _sentiment_glue(tmp_path / "glue", n_train=64, n_dev=16)
    text = tmp_path / "corpus.txt"
    text.write_text("\n".join(line.split("\t")[0] for line in
                              (glue / "SST-2" / "train.tsv").read_text().splitlines()[1:]))
    run = pretrain(tiny_config(steps=1, dropout=0.0), files=[str(text)], out=str(tmp_path / "run"), vocab_size=100,
                   progress=False)
    settings = {"epochs": 1, "seeds": 1, "batch_size": 16}
    finetune(run, "sst-2", glue, out=tmp_path / "ft-cpu", progress=False, overrides=settings)
    with VirtualDevice() as mode:
        finetune(run, "sst-2", glue, out=tmp_path / "ft-dev", progress=False, overrides=settings,
                 device=DEVICE)
        system = build_system(apply_overrides(preset_config("dcgan"), {"width": 4}), DEVICE)
        digits = sample_images(system.sampler, torch.randn(3, 100))
    assert mode.ops > 200
    # the weights, not the dev score: a 4-step classifier's logits sit near 0, where float noise flips a prediction
    a = load_file(str(tmp_path / "ft-cpu/seed-0/model/model.safetensors"))
    b = load_file(str(tmp_path / "ft-dev/seed-0/model/model.safetensors"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    assert digits.shape == (3, 28, 28) and digits.dtype == torch.uint8 and digits.device.type == "cpu"


def _factory_calls_without_a_device(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"
                and node.func.attr in FACTORIES and not any(k.arg == "device" for k in node.keywords)):
            found.append(f"{path.name}:{node.lineno} torch.{node.func.attr}")
    return found


def test_loaded_models_keep_the_torch_layers_on_every_device(tmp_path, monkeypatch):
    """transformers with the ``kernels`` package would swap a loaded model's layers for Hub kernels, at load and at
    every train()/eval() on the model's device (refusing any device it does not know); a loaded model must not."""
    from transformers import ElectraForPreTraining

    from electra.text.hf_io import load_hf
    from electra.text.models import hf_config

    ElectraForPreTraining(hf_config(tiny_config(), 50, generator=False)).save_pretrained(str(tmp_path / "d"))
    monkeypatch.delenv("USE_HUB_KERNELS", raising=False)
    model = load_hf(ElectraForPreTraining, tmp_path / "d", "discriminator")
    assert not getattr(model, "use_kernels", False)
    assert "USE_HUB_KERNELS" not in os.environ   # the switch is put back as it was
    with VirtualDevice():
        model.to(DEVICE).train()
        model.eval()
        assert next(model.parameters()).device == DEVICE and not getattr(model, "use_kernels", False)


def test_every_tensor_factory_in_the_package_names_its_device():
    """``torch.arange(n)`` silently means the CPU; on a GPU run that is the bug this file exists for.  Host tensors
    are written ``device="cpu"`` on purpose; everything else takes its device from an input (``*_like``,
    ``x.new_*``, ``device=x.device``)."""
    offenders = [call for path in sorted(PACKAGE.rglob("*.py")) for call in _factory_calls_without_a_device(path)]
    assert not offenders, "tensor factories without device=: " + ", ".join(offenders)


def test_the_factory_check_sees_a_missing_device(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import torch\nx = torch.arange(3)\ny = torch.zeros(2, device=x.device)\n")
    assert _factory_calls_without_a_device(sample) == ["sample.py:2 torch.arange"]
