"""The whole experiment: training config, named presets, and loading from YAML + overrides.

One `ExperimentConfig` describes a training run: model (`raybio.models.config`), data
(`raybio.data.config`) and training (here). YAML files and `a.b.c=value` overrides merge
onto a preset; `validate` turns pydantic's errors into one `ConfigError` listing every bad
field. The layer configs are re-exported, so `from raybio.config import MoEConfig` works.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from raybio.data.config import DataConfig, S3Config, SourceConfig, TokenizerConfig
from raybio.models.blocks import check_pattern
from raybio.models.config import HyenaConfig, ModelConfig, MoEConfig
from raybio.models.flops import flops_per_token
from raybio.schema import ConfigError, Strict

__all__ = [
    "PRESETS",
    "ConfigError",
    "DataConfig",
    "ExperimentConfig",
    "HyenaConfig",
    "MoEConfig",
    "ModelConfig",
    "S3Config",
    "SourceConfig",
    "TokenizerConfig",
    "TrainConfig",
    "load_config",
    "validate",
]


class TrainConfig(Strict):
    # ddp: torch DDP. deepspeed: DeepSpeed ZeRO `zero_stage` (0-3) with a torch AdamW; bf16 on GPU, fp32 on CPU.
    engine: Literal["ddp", "deepspeed"] = "ddp"
    zero_stage: int = Field(0, ge=0, le=3, description="DeepSpeed ZeRO stage (engine=deepspeed only)")
    num_workers: int = Field(1, ge=1)
    cpus_per_worker: float = Field(1.0, gt=0)
    gpus_per_worker: float = Field(0.0, ge=0)
    batch_size: int = Field(16, ge=1, description="sequences per worker per step")
    max_steps: int = Field(200, ge=1)
    # Training FLOPs (analytic, raybio/models/flops.py) this run spends: when set, the experiment resolves it
    # into max_steps, a warmup of at most a tenth of them and validation at the end only (resolve_flop_budget).
    flop_budget: float | None = Field(None, gt=0, description="train FLOPs to spend; sets max_steps (None: off)")
    lr: float = Field(2e-3, gt=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    warmup_steps: int = Field(20, ge=0)
    schedule: Literal["cosine", "linear"] = Field("cosine", description="decay after warmup down to min_lr_ratio")
    weight_decay: float = Field(0.1, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    # torch.compile every block (raybio/train/engine.py, engine=ddp). "auto" compiles where it was measured to
    # pay off, including its warm-up (docs/training.md, "Compile").
    compile: bool | Literal["auto"] = "auto"
    log_every: int = Field(10, ge=1)
    eval_every: int = Field(100, ge=0, description="validate every N steps (a multiple of log_every; 0 = at the end)")
    # The validation sample (raybio/train/validation.py): windows stratified by source and modality (all of the
    # split when it has fewer), each masked `eval_mask_draws` times at fixed positions (more positions scored).
    eval_windows: int = Field(1024, ge=1)
    eval_mask_draws: int = Field(2, ge=1)
    seed: int = 0
    checkpoint_every: int = Field(0, ge=0, description="checkpoint every N steps (multiple of log_every; 0 = at end)")
    num_to_keep: int = Field(2, ge=1, description="checkpoints kept in storage (the newest)")
    max_failures: int = Field(2, ge=-1, description="worker-group restarts from the last checkpoint (-1 = unlimited)")
    # A step whose loss or gradient norm is not finite never reaches the weights: it is skipped,
    # and the run stops at the `max_nonfinite_steps`-th such step in a row (or at the first with "stop").
    on_nonfinite: Literal["skip", "stop"] = "skip"
    max_nonfinite_steps: int = Field(3, ge=1, description="consecutive non-finite steps that stop the run")

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.eval_every % self.log_every:
            raise ValueError(f"eval_every ({self.eval_every}) must be a multiple of log_every ({self.log_every})")
        if self.checkpoint_every % self.log_every:
            raise ValueError(
                f"checkpoint_every ({self.checkpoint_every}) must be a multiple of log_every ({self.log_every})"
            )
        if self.zero_stage and self.engine != "deepspeed":
            raise ValueError(f"zero_stage={self.zero_stage} needs engine=deepspeed (engine is {self.engine!r})")
        if self.compile is True and self.engine != "ddp":
            raise ValueError("train.compile=true needs train.engine=ddp; DeepSpeed runs its model uncompiled")
        return self


class ExperimentConfig(Strict):
    """Everything one training run needs."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    @model_validator(mode="after")
    def _check_blocks_and_expert_parallel(self) -> ExperimentConfig:
        check_pattern(self.model)  # the block registry owns the letters and what each block requires
        ep, t = self.model.moe.ep_size, self.train
        if ep > 1 and t.engine == "deepspeed" and t.zero_stage == 3:
            # DeepSpeed partitions parameters over the whole world in stage 3; its MoE path stops at stage 2.
            raise ValueError(f"moe.ep_size={ep} (expert parallelism) needs train.zero_stage <= 2 with engine=deepspeed")
        if t.num_workers % ep:
            raise ValueError(
                f"moe.ep_size ({ep}) must divide train.num_workers ({t.num_workers}); "
                f"set train.num_workers to a multiple of moe.ep_size"
            )
        return self

    @model_validator(mode="after")
    def _resolve_flop_budget(self) -> ExperimentConfig:
        if self.train.flop_budget:
            resolve_flop_budget(self)
        return self


MAX_WARMUP_SHARE = 0.1  # of a budgeted run's steps: its schedule warms up, then decays to its own last step


def steps_for_flop_budget(exp: ExperimentConfig, vocab_size: int, budget: float) -> int:
    """Optimizer steps that spend `budget` training FLOPs with this model and batch."""
    seq = exp.data.seq_len - (1 if exp.model.objective == "ntp" else 0)
    per_step = flops_per_token(exp.model, seq, vocab_size).train * seq * exp.train.batch_size * exp.train.num_workers
    return max(1, int(budget // per_step))


def resolve_flop_budget(exp: ExperimentConfig) -> None:
    """The one place a FLOP budget becomes a schedule: max_steps that spend it, a complete warmup-and-decay
    schedule ending at the last step, and validation at the end only (intermediate points of one decaying
    schedule are not smaller budgets). Idempotent, so a resolved config validates to itself."""
    t = exp.train
    if exp.data.tokenizer.kind == "bpe":
        raise ValueError("train.flop_budget needs a vocabulary fixed by the config; BPE's is trained: set max_steps")
    steps = steps_for_flop_budget(exp, exp.data.tokenizer.build().vocab_size, t.flop_budget)
    if t.max_steps != steps:
        t.max_steps = steps
    t.warmup_steps = min(t.warmup_steps, math.ceil(MAX_WARMUP_SHARE * steps))
    t.eval_every = 0


# Omni-DNA sizes (layers / d_model / heads), SwiGLU hidden = 4 * d_model.
_OMNI = {
    "omni-20m": (8, 256, 8),
    "omni-60m": (8, 512, 8),
    "omni-116m": (12, 768, 16),
    "omni-300m": (16, 1024, 16),
    "omni-700m": (16, 1536, 16),
    "omni-1b": (16, 2048, 16),
}

# The micro ladder, depth 2, SwiGLU hidden = 4 * d_model: width alone grows, about 2x the parameters per step
# (9 k to 300 k), so the demo budgets' optima (about 20-80 k) lie inside it; heads of width 8 to 24.
_MICRO = {f"micro-{i}": (2, d, 2 if d < 64 else 4) for i, d in enumerate((16, 24, 32, 48, 64, 96), start=1)}
# Their corpus and schedule (docs/sweeps.md#scaling: E. coli 3-mers, reverse complements added, learn smoothly
# with size and compute; human DNA learns as much per FLOP but in a sudden transition, and has half the data).
_MICRO_DATA = {"sources": ["bundled:ecoli"], "tokenizer": {"kind": "kmer", "k": 3}, "reverse_complement": True,
               "seq_len": 128}  # fmt: skip
_MICRO_TRAIN = {"batch_size": 16, "max_steps": 400, "lr": 3e-3, "warmup_steps": 20, "checkpoint_every": 0}

PRESETS: dict[str, dict[str, Any]] = {
    # Small enough that a 4-trial sweep finishes in minutes on 2 CPU cores.
    "tiny": {
        "model": {"d_model": 128, "n_layers": 4, "n_heads": 4, "max_seq_len": 512},
        "data": {"seq_len": 256},
        "train": {"batch_size": 16, "max_steps": 200, "lr": 3e-3, "warmup_steps": 20, "checkpoint_every": 100},
    },
    **{
        name: {
            "model": {"n_layers": L, "d_model": d, "n_heads": h, "max_seq_len": 1024},
            "data": {"seq_len": 1024},
            "train": {"batch_size": 32, "max_steps": 10000, "lr": 6e-4, "warmup_steps": 500, "checkpoint_every": 1000},
        }
        for name, (L, d, h) in _OMNI.items()
    },
    # The scaling study's ladder (sweeps/scaling.py; docs/sweeps.md#scaling): one window, batch and schedule, so
    # the sizes differ in shape alone; small enough that budgets of 10^11-10^12 FLOPs learn well below the unigram loss.
    **{
        name: {
            "model": {"n_layers": L, "d_model": d, "n_heads": h, "max_seq_len": 128},
            "data": _MICRO_DATA,
            "train": _MICRO_TRAIN,
        }
        for name, (L, d, h) in _MICRO.items()
    },
}


def deep_merge(base: dict, override: dict) -> dict:
    """Recursively merge `override` into a copy of `base`."""
    out = dict(base)
    for key, val in override.items():
        if isinstance(val, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], val)
        else:
            out[key] = val
    return out


def parse_overrides(items: list[str]) -> dict:
    """Turn `["model.d_model=256", "train.lr=1e-3"]` into a nested dict (values parsed as YAML)."""
    tree: dict = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form section.field=value")
        path, raw = item.split("=", 1)
        node = tree
        *parents, leaf = path.strip().split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(raw)
    return tree


def load_config(
    preset: str = "tiny", yaml_path: str | Path | None = None, overrides: list[str] | dict | None = None
) -> ExperimentConfig:
    """Preset, then YAML file, then overrides; raises `ConfigError` naming any bad field."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    tree = PRESETS[preset]
    if yaml_path:
        tree = deep_merge(tree, yaml.safe_load(Path(yaml_path).read_text()) or {})
    if overrides:
        extra = parse_overrides(overrides) if isinstance(overrides, list) else overrides
        tree = deep_merge(tree, extra)
    return validate(tree)


# Fields earlier raybio versions saved into checkpoints and sweep records, and what replaced them: such a saved
# experiment still loads, its retired values ignored (today's code has no use for them).
RETIRED = {"train": {"eval_batches": "train.eval_windows"}}


def saved_experiment(tree: dict) -> ExperimentConfig:
    """An experiment as a checkpoint or sweep record saved it, by this or an earlier raybio."""
    kept = {
        k: {f: v for f, v in sub.items() if f not in RETIRED[k]} if k in RETIRED else sub for k, sub in tree.items()
    }
    return validate(kept)


def validate(tree: dict) -> ExperimentConfig:
    """Validate a nested dict as an ExperimentConfig with readable errors."""
    try:
        return ExperimentConfig.model_validate(tree)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            loc = ".".join(str(p) for p in e["loc"]) or "config"
            lines.append(f"  {loc}: {e['msg'].removeprefix('Value error, ')}")
        raise ConfigError("invalid raybio config:\n" + "\n".join(lines)) from None
