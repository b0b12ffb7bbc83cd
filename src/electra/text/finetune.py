"""``finetune`` and ``predict``: ELECTRA discriminators on GLUE tasks with the official fine-tuning recipe.

Recipe (Clark et al. 2020, ``finetune/``): AdamW (ε 1e-6, weight decay 0.01 except LayerNorm/bias), layer-wise
learning-rate decay d (the classifier at lr, encoder layer i at lr·d^(L+1−i), embeddings at lr·d^(L+2)),
10% linear warm-up then linear decay, batch 32, 3 epochs (10 for RTE and STS-B); lr and layer decay by model size
as in the paper's Table 7 (Small 3e-4 / 0.8, Base 1e-4 / 0.8, Large 5e-5 / 0.9) unless given; several seeds, the
median reported.
"""

from __future__ import annotations

import json
import shutil
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from electra.config import apply_overrides, check, from_saved
from electra.core.batches import StepBatches, length_grouped
from electra.core.checkpoint import find_checkpoint, has_checkpoint, read_checkpoint_state, require_finite
from electra.core.files import atomic_folder, write_text, write_json
from electra.core.log import log
from electra.core.recipe import run_recipe
from electra.core.run import RunFolder
from electra.core.schedules import EveryStep, warmup_linear_decay
from electra.core.trainer import CheckpointPolicy, Plan
from electra.errors import UserError
from electra.text.hf_io import load_hf, model_tokenizer, resolve_model_dir
from electra.text.fast_training import fast_training
from electra.text.tasks import Examples, Task, get_task, read_split, score


@dataclass(frozen=True)
class FinetuneConfig:
    lr: float | None = None              # None: by the model's hidden size (see recipe_for)
    layer_decay: float | None = None     # None: by the model's hidden size
    warmup_frac: float = 0.1
    batch_size: int = 32
    epochs: int | None = None            # None: the task's default (3, or 10 for RTE/STS-B)
    max_seq_len: int = 128
    dropout: float | None = None         # None: the model's own (its config's); a pre-training run at dropout 0
                                         # would otherwise fine-tune without any
    weight_decay: float = 0.01
    eps: float = 1e-6
    grad_clip: float = 1.0
    seeds: int = 1
    seed: int = 0
    log_every: int = 50
    max_train_examples: int | None = None
    group_by_length: bool = True         # batches of similar-length examples (each padded to its longest row)
    checkpoint_every: int = 0            # 0: a checkpoint at each epoch's end; N: every N steps
    threads: int = 0                     # compute threads; 0: the cores free to this process

    def validate(self) -> None:
        checks = [(self.lr is None or self.lr > 0, "lr must be positive"),
                  (self.layer_decay is None or 0 < self.layer_decay <= 1, "layer_decay must lie in (0, 1]"),
                  (0 <= self.warmup_frac < 1, "warmup_frac must lie in [0, 1)"),
                  (self.batch_size >= 1 and self.seeds >= 1, "batch_size and seeds must be positive"),
                  (self.epochs is None or self.epochs >= 1, "epochs must be at least 1"),
                  (self.max_seq_len >= 8, "max_seq_len must be at least 8"),
                  (self.dropout is None or 0 <= self.dropout < 1, "dropout must lie in [0, 1)"),
                  (self.checkpoint_every >= 0, "checkpoint_every must be 0 (each epoch) or more"),
                  (self.threads >= 0, "threads must be 0 (the free cores) or more")]
        check(checks)


def finetune_config_from_dict(values: dict) -> FinetuneConfig:
    # a folder saved before length grouping existed trained with random batches, and resumes with them
    return from_saved(FinetuneConfig, {"group_by_length": False, **values}, "finetune")


def recipe_for(hidden_size: int) -> tuple[float, float]:
    """(peak lr, layer-wise decay) of the official recipe for a model this wide: Large (1024) 5e-5 / 0.9,
    Base (768) 1e-4 / 0.8, Small (256) and anything smaller 3e-4 / 0.8."""
    if hidden_size >= 1024:
        return 5e-5, 0.9
    if hidden_size >= 768:
        return 1e-4, 0.8
    return 3e-4, 0.8


def layer_depth(name: str, num_layers: int) -> int:
    """The official depth of a parameter: embeddings 0, encoder layer i → i+1, the task head num_layers+2."""
    if name.startswith("electra.embeddings"):
        return 0
    if name.startswith("electra.encoder.layer."):
        return int(name.split(".")[3]) + 1
    return num_layers + 2


def layerwise_param_groups(model, lr: float, decay: float, weight_decay: float) -> list[dict]:
    num_layers = model.config.num_hidden_layers
    groups: dict[tuple[int, bool], dict] = {}
    for name, p in model.named_parameters():
        depth = layer_depth(name, num_layers)
        no_decay = "LayerNorm" in name or name.endswith("bias")
        key = (depth, no_decay)
        if key not in groups:
            scale = decay ** (num_layers + 2 - depth)
            groups[key] = {"params": [], "lr": lr * scale, "weight_decay": 0.0 if no_decay else weight_decay,
                           "depth": depth}
        groups[key]["params"].append(p)
    return [groups[k] for k in sorted(groups)]


def encode(tokenizer, examples: Examples, max_len: int) -> dict[str, torch.Tensor]:
    """Tokenise (pairs truncated longest-first) and pad to the longest row; [CLS] A [SEP] (B [SEP])."""
    tok = tokenizer
    tok.enable_truncation(max_length=max_len, strategy="longest_first")
    tok.enable_padding(pad_id=tok.token_to_id("[PAD]"), pad_token="[PAD]")
    if len(examples.texts[0]) == 2:
        enc = tok.encode_batch([(a, b) for a, b in examples.texts])
    else:
        enc = tok.encode_batch([t[0] for t in examples.texts])
    tok.no_truncation()
    tok.no_padding()
    return {"input_ids": torch.tensor([e.ids for e in enc], device="cpu"),
            "attention_mask": torch.tensor([e.attention_mask for e in enc], device="cpu"),
            "token_type_ids": torch.tensor([e.type_ids for e in enc], device="cpu")}


@torch.no_grad()
def init_head(head: torch.nn.Module, std: float, seed: int) -> None:
    """The new classifier's weights from N(0, std) (biases 0, as HF's own init), drawn from a generator of its own:
    the seed alone fixes them, whatever transformers' loading does with the global generator."""
    rng = torch.Generator(device="cpu").manual_seed(seed)
    for layer in head.modules():
        if isinstance(layer, torch.nn.Linear):
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=rng, device="cpu") * std)
            layer.bias.zero_()


class ClassificationObjective:
    updates = {"joint": ("model",)}
    random = None

    def __init__(self, model, regression: bool) -> None:
        self.model, self.regression = model, regression

    def losses(self, update, batch, cache):
        inputs, labels = batch
        logits = self.model(**inputs).logits
        if self.regression:
            loss = F.mse_loss(logits.squeeze(-1).float(), labels.float())
            return {"model": loss}, {"loss": loss.detach()}
        loss = F.cross_entropy(logits.float(), labels)
        return {"model": loss}, {"loss": loss.detach(), "acc": (logits.argmax(-1) == labels).float().mean()}

    def summarize(self, means):
        return means


def trimmed(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rows cut to the longest one's length: padding every row shares costs compute and changes nothing."""
    longest = int(inputs["attention_mask"].sum(1).max())
    return {k: v[:, :longest] for k, v in inputs.items()}


def task_batches(inputs: dict, labels: torch.Tensor, batch_size: int, seed: int,
                 device: torch.device | str = "cpu", group_by_length: bool = False) -> StepBatches:
    """Training batches, each cut to its longest row; ``group_by_length``: of similar-length examples (SST-2's
    random batches are 36% text, 64% padding; grouped, 96% text)."""
    def fetch(indices: torch.Tensor):
        batch = trimmed({k: v[indices] for k, v in inputs.items()})
        return {k: v.to(device) for k, v in batch.items()}, labels[indices].to(device)

    batch = min(batch_size, len(labels))
    order = length_grouped(inputs["attention_mask"].sum(1), batch, seed) if group_by_length else None
    return StepBatches(len(labels), fetch, batch, seed, what="training examples", order=order)


@torch.no_grad()
def predict_logits(model, inputs: dict, batch_size: int = 128) -> torch.Tensor:
    """Float32 logits on the CPU, in batches padded to their own longest row, on the model's device."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(inputs["input_ids"]), batch_size):
        chunk = trimmed({k: v[i:i + batch_size] for k, v in inputs.items()})
        out.append(model(**{k: v.to(device) for k, v in chunk.items()}).logits.float().cpu())
    return torch.cat(out)


def to_predictions(task: Task, logits: torch.Tensor) -> np.ndarray:
    return logits.squeeze(-1).numpy() if task.is_regression else logits.argmax(-1).numpy()


class FinetuneRecipe:
    """One seed's fine-tuning plan: a fresh classifier on the pre-trained discriminator, the official schedule."""

    def __init__(self, task: Task, model_dir: Path, inputs: dict, labels: torch.Tensor, epochs: int,
                 data_dir: Path) -> None:
        self.task, self.model_dir, self.inputs, self.labels, self.epochs = task, model_dir, inputs, labels, epochs
        self.facts = {"task": task.name, "model": str(model_dir.resolve()), "data_dir": str(data_dir.resolve()),
                      "epochs_used": epochs}
        self.notes: dict[str, str] = {}

    def build(self, cfg: FinetuneConfig, device: torch.device) -> Plan:
        from transformers import ElectraForSequenceClassification

        torch.manual_seed(cfg.seed)
        rates = {} if cfg.dropout is None else {"hidden_dropout_prob": cfg.dropout,
                                                "attention_probs_dropout_prob": cfg.dropout}
        net = fast_training(load_hf(ElectraForSequenceClassification, self.model_dir, "discriminator",
                                    num_labels=self.task.num_labels, **rates))
        init_head(net.classifier, net.config.initializer_range, cfg.seed)
        net = net.to(device)
        batches = task_batches(self.inputs, self.labels, cfg.batch_size, cfg.seed, device, cfg.group_by_length)
        total = self.epochs * batches.steps_per_epoch
        warmup = int(cfg.warmup_frac * total)
        opt = torch.optim.AdamW(layerwise_param_groups(net, cfg.lr, cfg.layer_decay, cfg.weight_decay),
                                lr=cfg.lr, eps=cfg.eps, foreach=True)
        # checkpoints let a killed seed resume; the finished seed keeps only its model (see _finetune_seeds)
        checkpoints = CheckpointPolicy(every=cfg.checkpoint_every or None, each_epoch=not cfg.checkpoint_every,
                                       final=True)
        return Plan(modules={"model": net}, optimizers={"model": opt},
                    objective=ClassificationObjective(net, self.task.is_regression), schedule=EveryStep(("joint",)),
                    batches=batches, steps_per_epoch=batches.steps_per_epoch, total_steps=total,
                    items_per_step=batches.global_batch, item_name="examples",
                    lr_schedule=lambda step, fraction: warmup_linear_decay(step, warmup, total),
                    log_every=cfg.log_every, checkpoints=checkpoints, grad_clip=cfg.grad_clip,
                    extra_state=lambda: {"total_steps": total})

    def describe(self, cfg: FinetuneConfig, plan: Plan) -> str:
        return (f"{self.task.name} seed {cfg.seed}, {plan.total_steps} steps ({self.epochs} epochs of "
                f"{len(self.labels)} examples), batch {cfg.batch_size}, peak lr {cfg.lr:g}, layer decay "
                f"{cfg.layer_decay:g}")

    def check_restored(self, state: dict) -> None:
        pass


def save_classifier(net, tokenizer_dir: Path, out: Path) -> None:
    require_finite(net.state_dict(), "fine-tuned model")
    with atomic_folder(out) as tmp:
        net.save_pretrained(str(tmp), safe_serialization=True)
        for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
            if (tokenizer_dir / name).is_file():
                shutil.copy(tokenizer_dir / name, tmp / name)


RESUMABLE_KEYS = {"seeds", "log_every", "threads", "checkpoint_every"}
FACTS = ("task", "model", "data_dir", "epochs_used")


def finetune(model: str | Path | None = None, task_name: str | None = None, data_dir: str | Path | None = None,
             cfg: FinetuneConfig | None = None, out: str | Path | None = None, overrides: dict | None = None,
             progress: bool = True, device: torch.device | str | None = None,
             resume: str | Path | None = None, stop_at: int | None = None) -> dict:
    """Fine-tune a discriminator on one task for ``cfg.seeds`` seeds; return (and write) the results.

    ``out`` holds ``config.json``, ``results.json`` and one run folder per seed (``seed-N/model``: the classifier
    in HF format, ``seed-N/scores.json``).  ``resume``: continue such a folder — finished seeds are kept, an
    unfinished one continues from its last checkpoint, ``seeds=`` may add more.  ``stop_at``: the first seed this
    call trains ends at that step with a checkpoint (the result then says ``stopped_at``)."""
    from transformers import ElectraForSequenceClassification

    if resume:
        job = RunFolder.open("finetune", resume)
        cfg, facts = job.resolve(None, overrides, RESUMABLE_KEYS, finetune_config_from_dict, facts=FACTS)
        model, task_name, data_dir = facts["model"], facts["task"], facts["data_dir"]
    else:
        cfg = apply_overrides(cfg or FinetuneConfig(), overrides or {})
        if not (model and task_name and data_dir):
            raise UserError("fine-tuning needs a MODEL, --task and --data-dir (or --resume a fine-tuning folder)")
    task = get_task(task_name)
    model_dir = resolve_model_dir(model, "discriminator")
    tokenizer = model_tokenizer(model_dir)
    train = read_split(task, data_dir, "train.tsv")
    devs = {f: read_split(task, data_dir, f) for f in task.dev_files}
    if cfg.max_train_examples:
        train = Examples(train.texts[: cfg.max_train_examples], train.labels[: cfg.max_train_examples])
    if not resume:
        job = RunFolder.start("finetune", out=out, name=f"finetune-{task.name}-{Path(model).name}")
    base = load_hf(ElectraForSequenceClassification, model_dir, "discriminator", num_labels=task.num_labels)
    max_len = min(cfg.max_seq_len, base.config.max_position_embeddings)
    train_inputs = encode(tokenizer, train, max_len)
    dev_inputs = {f: encode(tokenizer, d, max_len) for f, d in devs.items()}
    label_dtype = torch.float32 if task.is_regression else torch.long
    train_labels = torch.tensor(train.labels, dtype=label_dtype, device="cpu")
    epochs = cfg.epochs or task.epochs
    lr, layer_decay = recipe_for(base.config.hidden_size)
    cfg = apply_overrides(cfg, {"lr": cfg.lr or lr, "layer_decay": cfg.layer_decay or layer_decay})
    recipe = FinetuneRecipe(task, model_dir, train_inputs, train_labels, epochs, Path(data_dir))
    job.mkdir()
    try:
        return _finetune_seeds(job, recipe, cfg, devs, dev_inputs, model_dir, progress, device, stop_at)
    finally:
        job.release()


def _finetune_seeds(job: RunFolder, recipe: FinetuneRecipe, cfg: FinetuneConfig, devs: dict, dev_inputs: dict,
                    model_dir: Path, progress: bool, device, stop_at: int | None = None) -> dict:
    task, epochs = recipe.task, recipe.epochs
    job.write_config(cfg, **recipe.facts)
    results = {"task": task.name, "model": str(model_dir), "epochs": epochs, "lr": cfg.lr,
               "layer_decay": cfg.layer_decay, "seeds": []}
    for k in range(cfg.seeds):
        seed = cfg.seed + k
        seed_dir = job.path / f"seed-{seed}"
        done = seed_dir / "scores.json"
        if done.is_file():   # finished by an earlier, interrupted invocation
            scores = json.loads(done.read_text(encoding="utf-8"))
            log(f"{task.name} seed {seed}: kept from {seed_dir}")
        else:
            seed_cfg = apply_overrides(cfg, {"seed": seed, "seeds": 1})
            finished = run_recipe(recipe, _seed_run(seed_dir), seed_cfg, progress=progress, device=device,
                                  stop_at=stop_at)
            if finished.trainer.stopped_early:
                log(f"{task.name} seed {seed}: stopped at step {finished.trainer.step}; continue with --resume "
                    f"{job.path}")
                return {"stopped_at": {"seed": seed, "step": finished.trainer.step}, "out": str(job.path),
                        **results}
            stop_at = None
            net = finished.modules["model"]
            scores = {}
            for f, d in devs.items():
                preds = to_predictions(task, predict_logits(net, dev_inputs[f]))
                scores[f.replace(".tsv", "")] = score(task, preds, d.labels)
            save_classifier(net, model_dir, seed_dir / "model")
            write_json(done, scores)   # its presence marks the seed as finished
            shutil.rmtree(seed_dir / "checkpoints", ignore_errors=True)   # the model is kept in HF format
        results["seeds"].append({"seed": seed, "scores": scores})
        log(f"{task.name} seed {seed}: " + ", ".join(f"{s} {m} {v:.4f}" for s, sc in scores.items()
                                                      for m, v in sc.items()))
    first_dev = task.dev_files[0].replace(".tsv", "")
    results["median"] = {f.replace(".tsv", ""): {m: statistics.median(r["scores"][f.replace(".tsv", "")][m]
                                                                   for r in results["seeds"])
                                                for m in task.metrics} for f in task.dev_files}
    results["main_metric"] = task.main_metric
    results["main_score"] = results["median"][first_dev][task.main_metric]
    write_json(job.path / "results.json", results)
    results["out"] = str(job.path)
    return results


def _seed_run(seed_dir: Path) -> RunFolder:
    """The run folder of an unfinished seed: resumed from its last checkpoint, or trained from the start when it
    has none (or was killed after its last step's checkpoint, before its scores were written: no steps remain to
    train, so it trains again — deterministically, to the same model)."""
    if seed_dir.is_dir() and has_checkpoint(seed_dir) and (seed_dir / "config.json").is_file():
        state = read_checkpoint_state(find_checkpoint(seed_dir))
        if state["step"] < state.get("total_steps", 0):
            return RunFolder.open("finetune", seed_dir)
    shutil.rmtree(seed_dir, ignore_errors=True)   # the job's lock is held: nobody else writes here
    return RunFolder.start("finetune", out=seed_dir)


def predict(model: str | Path, task_name: str, data_dir: str | Path, out: str | Path | None = None) -> list[Path]:
    """GLUE-submission files (index, prediction) for the test split(s) from a fine-tuned model."""
    from transformers import ElectraForSequenceClassification

    task = get_task(task_name)
    model_dir = Path(model)
    if (model_dir / "model" / "config.json").is_file():
        model_dir = model_dir / "model"
    net = load_hf(ElectraForSequenceClassification, resolve_model_dir(model_dir, "discriminator"), "classifier")
    if net.config.num_labels != task.num_labels:
        raise UserError(f"{model} predicts {net.config.num_labels} labels but {task.name} has {task.num_labels}; "
                        f"fine-tune it on {task.name} first")
    tokenizer = model_tokenizer(model_dir)
    out_dir = Path(out) if out else model_dir.parent / "predictions"
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    names = {"test_matched.tsv": "MNLI-m.tsv", "test_mismatched.tsv": "MNLI-mm.tsv"}
    for test_file in task.test_files:
        examples = read_split(task, data_dir, test_file, test=True)
        preds = to_predictions(task, predict_logits(net, encode(tokenizer, examples,
                                                                net.config.max_position_embeddings)))
        target = out_dir / names.get(test_file, f"{task.folder}.tsv")
        lines = ["index\tprediction"] + [
            f"{i}\t{(min(5.0, max(0.0, float(p))) if task.is_regression else task.labels[int(p)])}"
            for i, p in zip(examples.ids, preds)]
        write_text(target, "\n".join(lines) + "\n")
        written.append(target)
    return written
