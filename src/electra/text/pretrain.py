"""``pretrain``: ELECTRA replaced-token-detection (or masked-LM) pre-training on prepared token shards."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from electra.config import apply_overrides, fresh_output_dir, save_config
from electra.core import checkpoint as ckpt
from electra.core import distributed
from electra.core.metrics import plot_curves, read_metrics
from electra.core.schedules import EveryStep, warmup_linear_decay
from electra.core.trainer import Hooks, Trainer
from electra.errors import UserError
from electra.text.config import TextConfig, config_from_dict, preset_config
from electra.text.corpus import TokenShards, prepare_corpus
from electra.text.models import build_rtd_models, export_hf, load_pretrained_pair
from electra.text.objectives import MaskedLMObjective, RTDObjective
from electra.text.tokenizer import load_tokenizer, tokenizer_hash, train_tokenizer

RESUMABLE_KEYS = {"steps", "minutes", "log_every", "checkpoint_every", "plateau_check_step"}
CURVES = ["loss", "mlm_loss", "disc_loss", "disc_auc", "disc_recall", "gen_acc"]
NO_DECAY = ("bias", "LayerNorm.weight", "LayerNorm.bias", "layer_norm")


def log(message: str) -> None:
    tqdm.write(message, file=sys.stderr)


def unique_parameters(modules) -> list[tuple[str, torch.nn.Parameter]]:
    """Named parameters of several modules, each shared tensor once (the embeddings belong to both models)."""
    seen, out = set(), []
    for prefix, module in modules.items():
        for name, p in module.named_parameters():
            if id(p) not in seen and p.requires_grad:
                seen.add(id(p))
                out.append((f"{prefix}.{name}", p))
    return out


def build_optimizer(cfg: TextConfig, modules) -> torch.optim.Optimizer:
    """AdamW (official ε 1e-6, weight decay 0.01) with LayerNorm weights and biases excluded from decay."""
    params = unique_parameters(modules)
    decay = [p for n, p in params if not any(k in n for k in NO_DECAY)]
    no_decay = [p for n, p in params if any(k in n for k in NO_DECAY)]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, foreach=True)


class TextHooks(Hooks):
    def __init__(self, run_dir: Path, tokenizer_dir: Path, cfg: TextConfig) -> None:
        self.run_dir, self.tokenizer_dir, self.cfg, self.warned = run_dir, tokenizer_dir, cfg, False

    def on_checkpoint(self, trainer) -> None:
        export_hf(trainer.modules, self.run_dir, self.tokenizer_dir)

    def on_log(self, trainer, row: dict) -> None:
        step = self.cfg.plateau_check_step
        if (step and not self.warned and trainer.step >= step and "disc_auc" in row
                and row["disc_auc"] < 0.6):
            self.warned = True
            log(f"warning: at step {trainer.step} the discriminator is still near the constant 'nothing replaced' "
                f"answer (AUC {row['disc_auc']:.3f}, recall {row.get('disc_recall', 0):.3f}); consider a higher "
                f"lr, a shorter warm-up, a smaller generator or a larger batch (see README)")

    def on_finish(self, trainer) -> None:
        rows = read_metrics(self.run_dir / "metrics.jsonl")
        plot_curves(rows, ["mlm_loss", "disc_loss"], self.run_dir / "loss_curve.png", "pre-training losses")
        plot_curves(rows, ["disc_auc", "disc_recall", "disc_precision", "gen_acc", "sampled_is_original"],
                    self.run_dir / "accuracy_curve.png", "discriminator and generator")


def _read_run(run_dir: Path) -> tuple[TextConfig, dict]:
    path = run_dir / "config.json"
    if not run_dir.is_dir():
        raise UserError(f"run folder {run_dir} does not exist")
    if not path.is_file():
        raise UserError(f"{run_dir} is not a run folder (no config.json)")
    values = json.loads(path.read_text(encoding="utf-8"))
    track = values.pop("track", None)
    if track != "text":
        raise UserError(f"{run_dir} is {'an ' + track if track else 'not a text'} run; resume it with its own command")
    extra = {k: values.pop(k) for k in ("data", "tokenizer") if k in values}
    return config_from_dict(values), extra


def pretrain(cfg: TextConfig | None = None, data: str | None = None, files: list[str] | None = None,
             tokenizer: str | None = None, out: str | None = None, resume: str | None = None,
             init_from: str | None = None, overrides: dict | None = None, vocab_size: int = 8192,
             encoding: str = "utf-8", errors: str = "strict", documents: str = "blank-line",
             progress: bool = True) -> Path:
    """Pre-train; return the run folder (generator/ and discriminator/ in HF format, metrics, checkpoints)."""
    overrides = dict(overrides or {})
    if resume:
        run_dir = Path(resume)
        cfg, extra = _read_run(run_dir)
        frozen = sorted(set(overrides) - RESUMABLE_KEYS)
        if frozen:
            raise UserError(f"cannot change {', '.join(frozen)} when resuming; only {', '.join(sorted(RESUMABLE_KEYS))}")
        cfg = apply_overrides(cfg, overrides)
        data = extra["data"]
        checkpoint_dir = ckpt.find_checkpoint(run_dir)
    else:
        manifest_path = Path(data or "") / "manifest.json"
        if data and "seq_len" not in overrides and manifest_path.is_file():
            try:  # the shards fix the sequence length unless the user asks for another
                overrides["seq_len"] = json.loads(manifest_path.read_text(encoding="utf-8"))["seq_len"]
            except (ValueError, KeyError):
                pass  # TokenShards reports a damaged manifest below
        cfg = apply_overrides(cfg or preset_config("tiny"), overrides)
        run_dir = fresh_output_dir(distributed.broadcast_object(
            str(out or Path("runs") / f"text-{cfg.preset}-{cfg.objective}-{time.strftime('%Y%m%d-%H%M%S')}")))
        if bool(data) == bool(files):
            raise UserError("give either --data DIR (prepared shards) or --files F … (prepared on the fly)")
        if init_from and cfg.objective != "rtd":
            raise UserError("--init-from continues ELECTRA (rtd) pre-training; drop --objective mlm")
    created = not run_dir.exists()
    try:
        if files:  # small corpora: tokenizer + shards inside the run folder, made by rank 0
            tokenizer = tokenizer or str(run_dir / "tokenizer")
            data = str(run_dir / "data")
            if distributed.current().is_main:
                run_dir.mkdir(parents=True, exist_ok=True)
                if not Path(tokenizer).exists():
                    log(f"training a {vocab_size}-token WordPiece vocabulary on {len(files)} file(s)")
                    train_tokenizer(files, vocab_size, tokenizer)
                prepare_corpus(files, tokenizer, cfg.seq_len, data, encoding, errors, seed=cfg.seed,
                               progress=progress, documents=documents)
            distributed.barrier()
        rank = distributed.current()
        if cfg.precision == "fp16" and rank.device.type != "cuda":
            raise UserError("precision fp16 needs a GPU (its GradScaler); use bf16 or fp32 on the CPU")
        shards = TokenShards(data, cfg.batch_size, cfg.seed, cfg.grad_accum, rank.rank, rank.world,
                             str(rank.device) if rank.device.type != "cpu" else None)
        manifest = shards.manifest
        if manifest["seq_len"] != cfg.seq_len:
            raise UserError(f"--seq-len {cfg.seq_len} differs from the shards' {manifest['seq_len']}; prepare "
                            f"the corpus again with --seq-len {cfg.seq_len}")
        tokenizer_dir = Path(data) / "tokenizer"
        if tokenizer and not files:
            given = tokenizer_hash(load_tokenizer(tokenizer))
            if given != manifest["tokenizer_hash"]:
                raise UserError(f"the shards in {data} were made with another tokenizer (hash "
                                f"{manifest['tokenizer_hash']}, --tokenizer gives {given}); prepare them again")
        vocab = manifest["vocab_size"]
        special = manifest["special_ids"]
        if init_from:
            modules = load_pretrained_pair(init_from)
            if modules["discriminator"].config.vocab_size != vocab:
                raise UserError(f"--init-from {init_from} has a {modules['discriminator'].config.vocab_size}-token "
                                f"vocabulary but the shards use {vocab}; prepare them with its tokenizer")
            if modules["discriminator"].config.max_position_embeddings < cfg.seq_len:
                raise UserError(f"--init-from model has {modules['discriminator'].config.max_position_embeddings} "
                                f"positions, fewer than seq_len {cfg.seq_len}")
        else:
            modules = build_rtd_models(cfg, vocab, special["pad"])
        for module in modules.values():
            module.to(rank.device)
        if cfg.objective == "rtd":
            objective = RTDObjective(modules["generator"], modules["discriminator"], cfg, special, vocab, cfg.seed + 1)
        else:
            objective = MaskedLMObjective(modules["mlm"], cfg, special, vocab, cfg.seed + 1)
        optimizer = {"model": build_optimizer(cfg, modules)}
        if cfg.compile:
            for module in modules.values():
                module.compile()
        start = 0
        if resume:
            state = ckpt.load_checkpoint(checkpoint_dir, modules, optimizer, {})
            start = int(state["step"])
            if start >= cfg.steps:
                raise UserError(f"{run_dir} already reached step {start} of {cfg.steps}; raise --steps to go on")
        if rank.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, run_dir / "config.json", track="text", data=str(Path(data).resolve()))
            params = sum(p.numel() for _, p in unique_parameters(modules))
            log(f"data: {data} ({manifest['rows']} examples of {cfg.seq_len} tokens, vocab {vocab})")
            log(f"run folder: {run_dir}  ({'resuming at step ' + str(start) if resume else 'new run'}, "
                f"{cfg.objective}, {params / 1e6:.2f}M parameters, {cfg.steps} steps; global batch "
                f"{shards.global_batch} = {cfg.batch_size} × {cfg.grad_accum} accumulation × {rank.world} ranks, "
                f"peak lr {cfg.lr:g}, {cfg.precision})")
        trainer = Trainer(
            modules=modules, optimizers=optimizer, objective=objective, schedule=EveryStep(("joint",)),
            batches=shards, run_dir=run_dir, total_steps=cfg.steps, steps_per_epoch=shards.steps_per_epoch,
            items_per_step=shards.global_batch * cfg.seq_len, item_name="tokens", log_every=cfg.log_every,
            checkpoint_every=cfg.checkpoint_every, max_seconds=cfg.minutes * 60 if cfg.minutes else None,
            grad_clip=cfg.grad_clip, lr_lambda=lambda s: warmup_linear_decay(s, cfg.warmup_steps, cfg.steps),
            hooks=TextHooks(run_dir, tokenizer_dir, cfg), extra_state=lambda: {"track": "text"}, progress=progress,
            checkpoint_each_epoch=False, grad_accum=cfg.grad_accum, micro_batch=cfg.batch_size,
            precision=cfg.precision,
        )
        trainer.run(start)
    except BaseException:
        if distributed.current().is_main and created and not (run_dir / "checkpoints").exists():
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    if distributed.current().is_main:
        log(f"done at step {trainer.step}: HF models in " + " and ".join(str(run_dir / name) for name in modules))
    return run_dir
