"""The pre-training recipe: ELECTRA replaced-token detection (or masked LM) on prepared token shards, and
``pretrain``, which runs it through the core lifecycle (preparing raw text files into the run folder first)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from electra.core import distributed
from electra.core.checkpoint import has_checkpoint
from electra.core.log import log, warn
from electra.core.memory import require_fits
from electra.core.metrics import plot_curves, read_metrics
from electra.core.recipe import global_batch_text, run_recipe
from electra.core.run import RunFolder
from electra.core.schedules import EveryStep, warmup_linear_decay
from electra.core.trainer import CheckpointPolicy, Hooks, Plan
from electra.errors import UserError
from electra.text.config import DEFAULT_PRESET, TextConfig, config_from_dict, preset_config
from electra.text.corpus import ShortRowsFirst, TokenShards, prepare_corpus
from electra.text.models import build_rtd_models, export_hf, load_pretrained_mlm, load_pretrained_pair
from electra.text.objectives import MaskedLMObjective, RTDObjective
from electra.text.tokenizer import load_tokenizer, tokenizer_hash, train_tokenizer

RESUMABLE_KEYS = {"steps", "minutes", "log_every", "checkpoint_every", "plateau_check_step", "on_nonfinite", "threads",
                  "eval_files", "eval_examples", "log_to"}
CURVES = ["loss", "mlm_loss", "disc_loss", "disc_auc", "disc_recall", "gen_acc"]
NO_DECAY = ("bias", "LayerNorm.weight", "LayerNorm.bias", "layer_norm")


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


def attention_bytes(cfg: TextConfig) -> int:
    """Attention probabilities (and their dropout) of one micro-batch, which no module returns: per layer of
    both models, batch × heads × L² floats, twice."""
    models = [cfg.discriminator_sizes()] + ([cfg.generator_sizes()] if cfg.objective == "rtd" else [])
    heads_by_layers = sum(sizes["num_heads"] * sizes["num_layers"] for sizes in models)
    return 2 * 4 * cfg.batch_size * heads_by_layers * cfg.seq_len ** 2


def pretraining_lr(cfg: TextConfig, step: int, fraction: float) -> float:
    """Warm-up, then linear decay to 0 at ``steps`` — or, with a ``minutes`` budget, by the end of the budget if
    that comes first (the trainer's fraction done is the further of steps and time)."""
    by_steps = warmup_linear_decay(step, cfg.warmup_steps, cfg.steps)
    if cfg.minutes and step >= cfg.warmup_steps:
        return min(by_steps, max(0.0, 1.0 - fraction))
    return by_steps


class TextHooks(Hooks):
    """Each checkpoint also exports the models in HF format; a warning if the discriminator sits on its plateau;
    the loss and accuracy curves at the end."""

    def __init__(self, tokenizer_dir: Path, cfg: TextConfig, heldout=None) -> None:
        self.tokenizer_dir, self.cfg, self.warned, self.heldout = tokenizer_dir, cfg, False, heldout

    def before_checkpoint(self, trainer) -> None:
        """With ``eval_files``: the held-out figures as an ``eval_*`` row of the checkpoint's step, written before
        the checkpoint, so a run resumed from an earlier checkpoint drops it with the other later rows."""
        if self.heldout is None:
            return
        from electra.text.heldout import heldout_figures

        figures = heldout_figures(trainer.modules, self.heldout, self.cfg)
        row = {"step": trainer.step, **{f"eval_{k}": v for k, v in figures.items()
                                        if k not in ("examples", "masked_tokens")}}
        trainer.write_metrics(row)

    def on_checkpoint(self, trainer) -> None:
        export_hf(trainer.modules, trainer.run_dir, self.tokenizer_dir)

    def on_log(self, trainer, row: dict) -> None:
        step = self.cfg.plateau_check_step
        if (step and not self.warned and trainer.step >= step and "disc_auc" in row
                and row["disc_auc"] < 0.6):
            self.warned = True
            warn(f"at step {trainer.step} the discriminator is still near the constant 'nothing replaced' "
                f"answer (AUC {row['disc_auc']:.3f}, recall {row.get('disc_recall', 0):.3f}); consider a higher "
                f"lr, a shorter warm-up, a smaller generator or a larger batch (see README)")

    def on_finish(self, trainer) -> None:
        rows = read_metrics(trainer.run_dir / "metrics.jsonl")
        plot_curves(rows, ["mlm_loss", "disc_loss"], trainer.run_dir / "loss_curve.png", "pre-training losses")
        plot_curves(rows, ["disc_auc", "disc_recall", "disc_precision", "gen_acc", "sampled_is_original"],
                    trainer.run_dir / "accuracy_curve.png", "discriminator and generator")
        if self.heldout is not None:
            plot_curves(rows, ["eval_mlm_loss", "eval_disc_loss", "eval_disc_auc"], trainer.run_dir / "eval_curve.png",
                        "held-out figures")


class PretrainRecipe:
    """One pre-training run's plan from its config, its prepared shards and a device."""

    def __init__(self, data: str | Path, tokenizer: str | None = None, init_from: str | None = None,
                 came_from: str | None = None) -> None:
        """``init_from``: the model whose weights the run starts from; ``came_from``: that folder as recorded in
        config.json (also for a resumed run, whose weights come from its checkpoint)."""
        self.shards = TokenShards(data)
        manifest = self.shards.manifest
        if tokenizer:
            given = tokenizer_hash(load_tokenizer(tokenizer))
            if given != manifest["tokenizer_hash"]:
                raise UserError(f"the shards in {data} were made with another tokenizer (hash "
                                f"{manifest['tokenizer_hash']}, --tokenizer gives {given}); prepare them again")
        self.init_from = init_from
        self.tokenizer_dir = Path(data) / "tokenizer"
        self.facts = {"data": str(Path(data).resolve())}
        if came_from or init_from:   # where the weights came from, for whoever reads the run folder later
            self.facts["init_from"] = str(Path(came_from or init_from).resolve())
        self.notes: dict[str, str] = {}

    def _models(self, cfg: TextConfig, device: torch.device) -> dict[str, torch.nn.Module]:
        vocab = self.shards.manifest["vocab_size"]
        if not self.init_from:
            build = lambda: build_rtd_models(cfg, vocab, self.shards.special["pad"])  # noqa: E731
            require_fits(build, device, f"the {cfg.objective} model (hidden {cfg.hidden_size} × "
                                             f"{cfg.num_layers} layers, vocabulary {vocab})",
                         forward=lambda models: [m(input_ids=torch.zeros(cfg.batch_size, cfg.seq_len,
                                                                         dtype=torch.long, device="meta"))
                                                 for m in models.values()],
                         extra_bytes=attention_bytes(cfg))
            return build()
        modules = (load_pretrained_mlm(self.init_from) if cfg.objective == "mlm"
                   else load_pretrained_pair(self.init_from, cfg.embedding_sharing))
        config = next(iter(modules.values())).config
        if config.vocab_size != vocab:
            raise UserError(f"--init-from {self.init_from} has a {config.vocab_size}-token vocabulary but the shards "
                            f"use {vocab}; prepare them with its tokenizer")
        if config.max_position_embeddings < cfg.seq_len:
            raise UserError(f"--init-from model has {config.max_position_embeddings} positions, fewer than seq_len "
                            f"{cfg.seq_len}")
        return modules

    def build(self, cfg: TextConfig, device: torch.device) -> Plan:
        shards, rank = self.shards, distributed.current()
        if shards.seq_len != cfg.seq_len:
            raise UserError(f"--seq-len {cfg.seq_len} differs from the shards' {shards.seq_len}; prepare the "
                            f"corpus again with --seq-len {cfg.seq_len}")
        batches = shards.batches(cfg.batch_size, cfg.seed, cfg.grad_accum, rank.rank, rank.world, device)
        if cfg.short_rows and cfg.short_rows_steps:
            batches = ShortRowsFirst(batches, cfg.short_rows, cfg.short_rows_steps, shards.special["pad"],
                                     shards.special["sep"], shards.special["cls"])
        modules = self._models(cfg, device)
        for module in modules.values():
            module.to(device)
        vocab, special = shards.manifest["vocab_size"], shards.special
        if cfg.objective == "rtd":
            objective = RTDObjective(modules["generator"], modules["discriminator"], cfg, special, vocab, cfg.seed + 1)
        else:
            objective = MaskedLMObjective(modules["mlm"], cfg, special, vocab, cfg.seed + 1)
        optimizers = {"model": build_optimizer(cfg, modules)}
        if cfg.compile:
            for module in modules.values():
                module.compile()
        return Plan(
            modules=modules, optimizers=optimizers, objective=objective, schedule=EveryStep(("joint",)),
            batches=batches, steps_per_epoch=batches.steps_per_epoch, total_steps=cfg.steps,
            items_per_step=batches.global_batch * cfg.seq_len, item_name="tokens",
            lr_schedule=lambda step, fraction: pretraining_lr(cfg, step, fraction),
            hooks=TextHooks(self.tokenizer_dir, cfg, self._heldout(cfg)), log_every=cfg.log_every,
            checkpoints=CheckpointPolicy(every=cfg.checkpoint_every), max_seconds=cfg.minutes * 60 if cfg.minutes
            else None, grad_clip=cfg.grad_clip, grad_accum=cfg.grad_accum, micro_batch=cfg.batch_size,
            precision=cfg.precision, on_nonfinite=cfg.on_nonfinite, extra_state=lambda: {"track": "text"},
        )

    def _heldout(self, cfg: TextConfig):
        if not cfg.eval_files or not distributed.current().is_main:
            return None
        from electra.text.heldout import heldout_rows

        files = [f.strip() for f in cfg.eval_files.split(",") if f.strip()]
        return heldout_rows(files, self.tokenizer_dir, cfg.seq_len, cfg.eval_examples)

    def describe(self, cfg: TextConfig, plan: Plan) -> str:
        params = sum(p.numel() for _, p in unique_parameters(plan.modules))
        m = self.shards.manifest
        return (f"{cfg.objective}, {params / 1e6:.2f}M parameters, {cfg.steps} steps; "
                f"{global_batch_text(plan, cfg.batch_size)}, peak lr {cfg.lr:g}, {cfg.precision}; data "
                f"{self.shards.folder}: {m['rows']} examples of {cfg.seq_len} tokens, vocab {m['vocab_size']}")

    def check_restored(self, state: dict) -> None:
        pass


def _shards_seq_len(data: str | None) -> int | None:
    """The sequence length prepared shards fix, unless their manifest is unreadable (reported later)."""
    path = Path(data or "") / "manifest.json"
    if not data or not path.is_file():
        return None
    try:
        return int(json.loads(path.read_text(encoding="utf-8"))["seq_len"])
    except (ValueError, KeyError, TypeError):
        return None


def pretrain(cfg: TextConfig | None = None, data: str | None = None, files: list[str] | None = None,
             tokenizer: str | None = None, out: str | None = None, resume: str | None = None,
             init_from: str | None = None, overrides: dict | None = None, vocab_size: int = 8192,
             encoding: str = "utf-8", errors: str = "strict", documents: str = "blank-line",
             progress: bool = True, stop_at: int | None = None, device: torch.device | str | None = None) -> Path:
    """Pre-train; return the run folder (generator/ and discriminator/ in HF format, metrics, checkpoints).

    ``data``: prepared shards, or ``files``: raw text prepared into the run folder (a ``vocab_size`` WordPiece
    vocabulary unless ``tokenizer`` is given); ``resume``: continue a run folder; ``init_from``: start from an HF
    generator/ + discriminator/ pair (rtd) or an MLM run / HF masked-LM folder (mlm); ``stop_at``: end at that
    step with a checkpoint."""
    overrides = dict(overrides or {})
    cfg = cfg or preset_config(DEFAULT_PRESET)
    if not resume:
        if bool(data) == bool(files):
            raise UserError("give either --data DIR (prepared shards) or --files F … (prepared on the fly)")
        seq_len = _shards_seq_len(data)
        if seq_len is not None and "seq_len" not in overrides:
            overrides["seq_len"] = seq_len   # the shards fix the sequence length unless the user asks for another
    run = RunFolder.start("text", out=out, resume=resume, name=f"text-{cfg.preset}-{apply_objective(cfg, overrides)}")
    cfg, facts = run.resolve(cfg, overrides, RESUMABLE_KEYS, config_from_dict, facts=("data", "init_from"))
    data = facts.get("data", data)
    came_from = init_from or facts.get("init_from")
    # a resumed run's weights come from its checkpoint; stopped before the first one, it starts again from came_from
    load_from = None if run.resuming and has_checkpoint(run.path) else came_from
    if files:  # small corpora: tokenizer + shards inside the run folder, made by rank 0
        tokenizer = tokenizer or str(run.path / "tokenizer")
        data = str(run.path / "data")
        with run.removed_on_failure():
            if distributed.current().is_main:
                run.mkdir()
                if not Path(tokenizer).exists():
                    log(f"training a {vocab_size}-token WordPiece vocabulary on {len(files)} file(s)")
                    train_tokenizer(files, vocab_size, tokenizer)
                prepare_corpus(files, tokenizer, cfg.seq_len, data, encoding, errors, seed=cfg.seed,
                               progress=progress, documents=documents)
            distributed.barrier()
        tokenizer = None   # the shards were just made with it
    with run.removed_on_failure():
        recipe = PretrainRecipe(data, tokenizer, load_from, came_from)
    finished = run_recipe(recipe, run, cfg, progress=progress, stop_at=stop_at, device=device)
    run.log(f"done at step {finished.trainer.step}: HF models in "
            + " and ".join(str(run.path / name) for name in finished.modules))
    return run.path


def apply_objective(cfg: TextConfig, overrides: dict) -> str:
    """The objective a new run will train (an override may change the preset's)."""
    return str(overrides.get("objective", cfg.objective))
