"""The text track's configuration object and the paper's model sizes as presets."""

from __future__ import annotations

from dataclasses import dataclass

from electra.config import check, from_preset, from_saved
from electra.core.tensorboard import LOG_TO
from electra.core.trainer import NONFINITE_POLICIES, PRECISIONS

DEFAULT_PRESET = "tiny"
EMBEDDING_SHARING = ("shared", "gdes")


@dataclass(frozen=True)
class TextConfig:
    """Every key of a pre-training run.  The bare defaults are the paper's recipe at the ``tiny`` model sizes; the
    presets below start from them, and ``DEFAULT_PRESET`` is what ``electra text pretrain`` trains."""

    preset: str = "custom"
    objective: str = "rtd"                # rtd (ELECTRA) | mlm (BERT-style masked LM, same harness)
    # discriminator (the product)
    embedding_size: int = 128
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 2
    intermediate_size: int = 512
    max_position_embeddings: int = 512
    dropout: float = 0.1
    init_range: float = 0.02              # std of the normal init of every weight matrix (HF initializer_range)
    # generator: a fraction of the discriminator's width (heads and FFN scale with it) and of its depth (the
    # paper's generators keep the depth; the official code has the same two knobs)
    generator_width: float = 0.25
    generator_layers: float = 1.0
    # shared: one embeddings table learnt by both losses (the paper); gdes: DeBERTa-v3's gradient-disentangled
    # sharing — the discriminator reads the generator's table with its gradient stopped, plus its own delta
    embedding_sharing: str = "shared"
    # masking and the joint loss
    mask_prob: float = 0.15               # positions masked per sequence (at most ⌊(mask_prob + 0.005)·L⌋)
    mask_token_prob: float = 0.85         # of the masked: replaced by [MASK]; the rest keep their token
    disc_weight: float = 50.0             # λ in L = L_MLM + λ·L_Disc
    temperature: float = 1.0              # sampling temperature of the generator's softmax
    sampler: str = "cdf"                  # exact softmax sampling: cdf (fast) | gumbel (Gumbel-max, as the official code)
    # optimisation (official ELECTRA: AdamW, ε 1e-6, wd 0.01 except LayerNorm/bias, warm-up + linear decay)
    lr: float = 5e-4
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-6
    weight_decay: float = 0.01
    warmup_steps: int = 10_000
    grad_clip: float = 1.0
    batch_size: int = 128
    seq_len: int = 128
    # the first short_rows_steps steps re-pack each row's text as rows of short_rows tokens ([CLS] A [SEP] B
    # [SEP]): a small model learns to read its neighbours far sooner on short rows, then carries that to full rows
    short_rows: int = 0                   # 0: off
    short_rows_steps: int = 0
    steps: int = 1_000_000
    minutes: float | None = None
    grad_accum: int = 1                   # micro-batches per step: global batch = batch_size × grad_accum × ranks
    precision: str = "fp32"               # fp32 | bf16 | fp16 (autocast; sampling stays fp32; fp16 GPU only)
    compile: bool = False                 # torch.compile the encoders (off: slower to start and no faster on CPU)
    on_nonfinite: str = "stop"            # a NaN/inf loss or gradient: stop (naming the step) | skip that update
    threads: int = 0                     # compute threads; 0: the cores free to this process (OMP_NUM_THREADS wins)
    # bookkeeping
    seed: int = 0
    log_every: int = 50
    checkpoint_every: int = 1000
    plateau_check_step: int = 1000        # warn if the discriminator's AUC is still ≈ 0.5 at this step (0 = never)
    log_to: str = "jsonl"                # jsonl | tensorboard (metrics.jsonl always; tensorboard adds event files)
    eval_files: str = ""                  # held-out text (comma-separated paths): eval_* figures at every checkpoint
    eval_examples: int = 500              # packed held-out examples those figures use

    def validate(self) -> None:
        checks = [
            (self.objective in ("rtd", "mlm"), "objective must be rtd or mlm"),
            (self.sampler in ("cdf", "gumbel"), "sampler must be cdf or gumbel"),
            (self.hidden_size % self.num_heads == 0, "hidden_size must be a multiple of num_heads"),
            (min(self.embedding_size, self.hidden_size, self.num_layers, self.num_heads, self.intermediate_size) > 0,
             "model sizes must be positive"),
            (0 < self.generator_width <= 1, "generator_width must lie in (0, 1]"),
            (0 < self.generator_layers <= 1, "generator_layers must lie in (0, 1]"),
            (0 < self.init_range <= 1, "init_range must lie in (0, 1]"),
            (0 < self.mask_prob < 1 and 0 <= self.mask_token_prob <= 1, "mask probabilities must lie in (0, 1)"),
            (self.disc_weight >= 0 and self.temperature > 0, "disc_weight must be ≥ 0 and temperature > 0"),
            (self.lr > 0 and self.eps > 0 and self.weight_decay >= 0, "lr and eps must be positive"),
            (self.batch_size >= 1 and self.steps >= 1 and self.warmup_steps >= 0, "batch_size/steps must be positive"),
            (8 <= self.seq_len <= self.max_position_embeddings,
             f"seq_len must lie in [8, max_position_embeddings={self.max_position_embeddings}]"),
            (self.short_rows == 0 or 8 <= self.short_rows < self.seq_len,
             f"short_rows must be 0 (off) or lie in [8, seq_len={self.seq_len})"),
            (self.short_rows_steps >= 0, "short_rows_steps must be 0 or more"),
            (self.minutes is None or self.minutes > 0, "minutes must be positive"),
            (self.log_every >= 1 and self.checkpoint_every >= 1, "log_every and checkpoint_every must be positive"),
            (self.grad_accum >= 1, "grad_accum must be at least 1"),
            (self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}"),
            (self.on_nonfinite in NONFINITE_POLICIES, f"on_nonfinite must be one of {', '.join(NONFINITE_POLICIES)}"),
            (self.threads >= 0, "threads must be 0 (the free cores) or more"),
            (self.log_to in LOG_TO, f"log_to must be one of {', '.join(LOG_TO)}"),
            (self.eval_examples >= 1, "eval_examples must be at least 1"),
            (self.embedding_sharing in EMBEDDING_SHARING,
             f"embedding_sharing must be one of {', '.join(EMBEDDING_SHARING)}"),
        ]
        check(checks)

    def discriminator_sizes(self) -> dict:
        return {"hidden_size": self.hidden_size, "num_heads": self.num_heads,
                "intermediate_size": self.intermediate_size, "num_layers": self.num_layers}

    def generator_sizes(self) -> dict:
        hidden = max(1, int(round(self.hidden_size * self.generator_width)))
        heads = max(1, int(round(self.num_heads * self.generator_width)))
        while hidden % heads:
            heads -= 1
        return {"hidden_size": hidden, "num_heads": heads,
                "intermediate_size": max(1, int(round(self.intermediate_size * self.generator_width))),
                "num_layers": max(1, int(round(self.num_layers * self.generator_layers)))}


PRESETS: dict[str, dict] = {
    # CPU preset: learns within minutes here.  Sampling at temperature 2 is what gets its discriminator off the
    # constant "nothing replaced" plateau at this scale (measured: AUC 0.80 vs 0.55 after ~280 steps; a smaller
    # generator, a lower lr or no dropout did not help) — see the README's plateau section.
    "tiny": dict(embedding_size=128, hidden_size=128, num_layers=4, num_heads=2, intermediate_size=512,
                 batch_size=32, seq_len=128, lr=1e-3, warmup_steps=200, steps=3000, temperature=2.0, log_every=25,
                 checkpoint_every=500, plateau_check_step=600),
    # ELECTRA-Small (Clark et al. 2020, Table 6): 12 × 256, 4 heads, FFN 1024, embeddings 128, generator ¼.
    "small": dict(embedding_size=128, hidden_size=256, num_layers=12, num_heads=4, intermediate_size=1024,
                  generator_width=0.25, batch_size=128, seq_len=128, lr=5e-4, warmup_steps=10_000,
                  steps=1_000_000),
    # ELECTRA-Base: 12 × 768, generator ⅓ width, batch 256, lr 2e-4, 766k steps.
    "base": dict(embedding_size=768, hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072,
                 generator_width=1 / 3, batch_size=256, seq_len=512, lr=2e-4, warmup_steps=10_000, steps=766_000),
    # ELECTRA-Large: 24 × 1024, generator ¼ width, batch 2048, lr 2e-4, 400k steps, 25% masking.
    "large": dict(embedding_size=1024, hidden_size=1024, num_layers=24, num_heads=16, intermediate_size=4096,
                  generator_width=0.25, batch_size=2048, seq_len=512, lr=2e-4, warmup_steps=10_000, steps=400_000,
                  mask_prob=0.25),
}


def preset_config(name: str) -> TextConfig:
    return from_preset(TextConfig, PRESETS, name, "text")


def config_from_dict(values: dict) -> TextConfig:
    return from_saved(TextConfig, values, "text")
