"""Typed, validated configuration for every raybio run, with named presets.

One `ExperimentConfig` describes a training run: model (with its MoE and Hyena parts),
data and training. Configs are pydantic models with `extra="forbid"`, so a misspelt
field or a bad value fails before any cluster work starts, with an error that names the
field and the allowed values. YAML files and `a.b.c=value` overrides merge onto a preset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and the fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class MoEConfig(_Strict):
    """Routed-expert FFN. `num_experts == 1` is not MoE: use the dense `D` block instead."""

    num_experts: int = Field(8, ge=1)
    top_k: int = Field(2, ge=1)
    router: Literal["softmax", "sigmoid", "aux_free"] = "softmax"
    # Sigmoid router: g = s / sum_topk(s). Off only for the HyenaMoE ablation.
    normalize_scores: bool = True
    # Softmax router, k > 1: renormalise the top-k probabilities to sum to 1 (Mixtral, DeepSeek);
    # False keeps them raw (Qwen-MoE, OLMoE: norm_topk_prob=False).
    norm_topk_prob: bool = True
    # Softmax router, k = 1: "switch" gates the expert with its probability p (the router learns
    # from the LM loss), "mixtral" with weight 1 (the router then learns only from the aux losses).
    top1_gate: Literal["switch", "mixtral"] = "switch"
    routed_scaling_factor: float = Field(1.0, gt=0, description="routed experts' gates times this (DeepSeek-V3: 2.5)")
    # DeepSeek-V3 group-limited routing: experts in n_group equal groups, a token picks only
    # inside its topk_group best groups (group score: sum of its top-2 expert scores).
    n_group: int | None = Field(None, ge=1, description="expert groups for group-limited routing; None = off")
    topk_group: int | None = Field(None, ge=1, description="groups each token may route to (with n_group)")
    expert_hidden: int | None = Field(None, ge=1, description="expert SwiGLU hidden size; default d_ffn")
    num_shared_experts: int = Field(0, ge=0)
    aux_loss_coef: float = Field(0.01, ge=0)
    z_loss_coef: float = Field(1e-3, ge=0)
    jitter: float = Field(0.0, ge=0, description="softmax router: multiplicative input noise U(1-j, 1+j) in training")
    bias_update_rate: float = Field(1e-3, ge=0, description="aux_free router: expert-bias step size")
    capacity_factor: float | None = Field(None, gt=0, description="None = dropless")
    # auto: MegaBlocks on CUDA when installed, else torch; torch: torch._grouped_mm where the build
    # has it, else a per-expert loop; loop: always the per-expert loop (reference, ablation).
    backend: Literal["auto", "torch", "loop", "megablocks"] = "auto"
    ep_size: int = Field(1, ge=1, description="expert-parallel group size")
    dead_expert_window: int = Field(100, ge=1, description="an expert is dead after this many training passes unused")

    @model_validator(mode="after")
    def _check(self) -> MoEConfig:
        if self.top_k > self.num_experts:
            raise ValueError(
                f"top_k ({self.top_k}) must be <= num_experts ({self.num_experts}); "
                f"lower moe.top_k or raise moe.num_experts"
            )
        if self.num_experts % self.ep_size:
            raise ValueError(
                f"num_experts ({self.num_experts}) must be divisible by ep_size ({self.ep_size}); "
                f"choose moe.ep_size among the divisors of moe.num_experts"
            )
        self._check_groups()
        if self.router != "softmax" and (not self.norm_topk_prob or self.top1_gate != "switch"):
            raise ValueError(
                f"moe.norm_topk_prob and moe.top1_gate apply to the softmax router only (router is {self.router!r}); "
                "sigmoid routers renormalise with moe.normalize_scores"
            )
        return self

    def _check_groups(self) -> None:
        if (self.n_group is None) != (self.topk_group is None):
            raise ValueError("group-limited routing needs both moe.n_group and moe.topk_group (or neither)")
        if self.n_group is None:
            return
        if self.num_experts % self.n_group:
            raise ValueError(
                f"moe.n_group ({self.n_group}) must divide num_experts ({self.num_experts}) into equal groups"
            )
        if self.topk_group > self.n_group:
            raise ValueError(f"moe.topk_group ({self.topk_group}) must be <= moe.n_group ({self.n_group})")
        group_size = self.num_experts // self.n_group
        if self.topk_group * group_size < self.top_k:
            raise ValueError(
                f"moe.topk_group ({self.topk_group}) groups of {group_size} experts hold fewer than top_k "
                f"({self.top_k}) experts; raise moe.topk_group or lower moe.top_k"
            )


class HyenaConfig(_Strict):
    """HyenaLite long-convolution operator (used by `H` blocks)."""

    filter: Literal["modal", "implicit"] = "modal"
    num_modes: int = Field(16, ge=1)
    filter_groups: int | None = Field(None, ge=1, description="channels sharing one filter; None = per channel")
    short_conv: int = Field(3, ge=1)
    attention_window: int = Field(4096, ge=1, description="sliding window of A/D blocks in streaming inference")
    filter_order: int = Field(64, ge=1, description="implicit filter: MLP width (HyenaDNA filter_order)")
    filter_emb_dim: int = Field(5, ge=3, description="implicit filter: positional features (odd: t + cos/sin bands)")


BLOCK_TYPES = {"D": "attention + dense FFN", "A": "attention + MoE FFN", "H": "HyenaLite + gated MLP"}


class ModelConfig(_Strict):
    """A BioLM: embeddings, blocks composed from `pattern`, final norm, LM head."""

    vocab_size: int = Field(0, ge=0, description="0 = taken from the corpus tokenizer at build time")
    d_model: int = Field(256, ge=8)
    n_layers: int = Field(8, ge=1)
    n_heads: int = Field(8, ge=1)
    d_ffn: int | None = Field(None, ge=1, description="SwiGLU hidden size; default 4 * d_model")
    # One letter per block (see BLOCK_TYPES); a shorter pattern repeats to fill n_layers.
    pattern: str = "D"
    objective: Literal["mlm", "ntp"] = "mlm"
    norm: Literal["rmsnorm", "layernorm"] = "rmsnorm"
    max_seq_len: int = Field(1024, ge=8)
    rope_theta: float = 10000.0
    tie_embeddings: bool = True
    # µP (raybio/models/mup.py): the width at which the LR was tuned; None = standard parameterisation.
    base_d_model: int | None = Field(None, ge=8, description="µP base width; hidden LRs and init scale with it")
    moe: MoEConfig = Field(default_factory=MoEConfig)
    hyena: HyenaConfig = Field(default_factory=HyenaConfig)

    @field_validator("pattern", mode="before")
    @classmethod
    def _resolve_pattern(cls, value: object) -> object:
        # Preset names ("fast", "standard", ...) become block letters; see raybio/models/presets.py.
        from raybio.models.presets import resolve_pattern

        return resolve_pattern(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if (self.d_model // self.n_heads) % 2:
            raise ValueError(f"head dim d_model/n_heads = {self.d_model // self.n_heads} must be even for RoPE")
        bad = sorted(set(self.pattern) - set(BLOCK_TYPES))
        if not self.pattern or bad:
            allowed = ", ".join(f"{k} ({v})" for k, v in BLOCK_TYPES.items())
            raise ValueError(f"pattern {self.pattern!r} has unknown block letters {bad}; allowed: {allowed}")
        if self.n_layers % len(self.pattern):
            raise ValueError(f"n_layers ({self.n_layers}) must be a multiple of len(pattern) ({len(self.pattern)})")
        group = self.hyena.filter_groups
        if "H" in self.pattern and group and self.d_model % group:
            raise ValueError(f"hyena.filter_groups ({group}) must divide d_model ({self.d_model})")
        if "A" in self.pattern and self.moe.num_experts < 2:
            raise ValueError("pattern uses MoE blocks 'A' but moe.num_experts < 2; use 'D' for a dense FFN")
        return self

    @property
    def ffn_hidden(self) -> int:
        return self.d_ffn or 4 * self.d_model

    @property
    def blocks(self) -> str:
        """The full per-layer pattern, e.g. 'AHHH' * 2."""
        return self.pattern * (self.n_layers // len(self.pattern))

    def build(self):
        """Build the `BioLM` this config describes."""
        from raybio.models.model import BioLM

        if not self.vocab_size:
            raise ConfigError("model.vocab_size is 0: set it, or build through ExperimentConfig with a corpus")
        return BioLM(self)


class TokenizerConfig(_Strict):
    """How sequences become token ids (docs/data.md lists the vocabularies)."""

    kind: Literal["kmer", "nucleotide", "protein", "bpe", "multiomic"] = "kmer"
    k: int = Field(3, ge=1, le=6, description="k-mer size (kmer, and the DNA part of multiomic)")
    vocab_size: int = Field(4096, ge=64, le=1 << 20, description="BPE vocabulary size (Omni-DNA uses 4096)")
    bpe_train_residues: int = Field(20_000_000, ge=1000, description="BPE trains on at most this many residues")

    def build(self):
        """Build the tokenizer this config names (BPE is trained during `raybio prepare`)."""
        from raybio.data.tokenizers import build_tokenizer

        return build_tokenizer(self)


class SourceConfig(_Strict):
    """One corpus source: a path, glob, s3:// URI or bundled:<name>, and how to read it."""

    uri: str
    modality: Literal["auto", "dna", "protein"] = Field("auto", description="auto = detected from the residues")
    format: Literal["auto", "fasta", "csv"] = Field("auto", description="auto = csv/tsv by extension, else FASTA")
    sequence_column: str = "sequence"
    id_column: str | None = None
    label_column: str | None = "label"


class S3Config(_Strict):
    """Object-store endpoint. Credentials come from the AWS variables or profile, never from configs."""

    endpoint_url: str | None = Field(None, description="default: AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL")
    region: str | None = None
    profile: str | None = None


class DataConfig(_Strict):
    """Where the corpus comes from, how it is tokenized, and where its shards live."""

    sources: list[str | SourceConfig] = Field(default_factory=lambda: ["bundled:ecoli"])
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    seq_len: int = Field(512, ge=8, description="tokens per training window")
    val_fraction: float = Field(0.05, gt=0, lt=1)
    shards_dir: str | None = Field(None, description="prepared shards; default <storage>/corpus/<hash>")
    rows_per_shard: int = Field(2048, ge=1)
    mask_prob: float = Field(0.15, gt=0, lt=1)
    min_length: int = Field(1, ge=1, description="records shorter than this (residues) are rejected and counted")
    iupac_to_n: bool = Field(False, description="map IUPAC ambiguity codes to N (DNA) / X (protein)")
    on_invalid: Literal["error", "skip"] = Field("error", description="records with invalid characters")
    reverse_complement: bool = Field(False, description="add the reverse complement of DNA train blocks")
    pack: bool = Field(True, description="pack records into full windows; False = one record per window, padded")
    mix: dict[str, float] | None = Field(None, description="train modality weights, e.g. {dna: 0.7, protein: 0.3}")
    shuffle_buffer: int = Field(256, ge=0, description="rows in each worker's local shuffle buffer (0 = off)")
    s3: S3Config = Field(default_factory=S3Config)

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        from raybio.data.tokenizers import MODALITIES

        if self.mix is not None:
            bad = sorted(set(self.mix) - set(MODALITIES))
            if bad or not self.mix or any(w <= 0 for w in self.mix.values()):
                raise ValueError(f"mix {self.mix} must map modalities {list(MODALITIES)} to positive weights")
        return self


class TrainConfig(_Strict):
    # ddp: torch DDP. deepspeed: DeepSpeed ZeRO `zero_stage` (0-3) with a torch AdamW; bf16 on GPU, fp32 on CPU.
    engine: Literal["ddp", "deepspeed"] = "ddp"
    zero_stage: int = Field(0, ge=0, le=3, description="DeepSpeed ZeRO stage (engine=deepspeed only)")
    num_workers: int = Field(1, ge=1)
    cpus_per_worker: float = Field(1.0, gt=0)
    gpus_per_worker: float = Field(0.0, ge=0)
    batch_size: int = Field(16, ge=1, description="sequences per worker per step")
    max_steps: int = Field(200, ge=1)
    lr: float = Field(2e-3, gt=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    warmup_steps: int = Field(20, ge=0)
    schedule: Literal["cosine", "linear"] = Field("cosine", description="decay after warmup down to min_lr_ratio")
    weight_decay: float = Field(0.1, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    log_every: int = Field(10, ge=1)
    eval_every: int = Field(100, ge=0, description="validate every N steps (a multiple of log_every; 0 = at the end)")
    eval_batches: int = Field(8, ge=1)
    seed: int = 0
    checkpoint_every: int = Field(0, ge=0, description="checkpoint every N steps (multiple of log_every; 0 = at end)")
    num_to_keep: int = Field(2, ge=1, description="checkpoints kept in storage (the newest)")
    max_failures: int = Field(2, ge=-1, description="worker-group restarts from the last checkpoint (-1 = unlimited)")

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
        return self


class ExperimentConfig(_Strict):
    """Everything one training run needs."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    @model_validator(mode="after")
    def _check_expert_parallel(self) -> ExperimentConfig:
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


# Omni-DNA sizes (layers / d_model / heads), SwiGLU hidden = 4 * d_model.
_OMNI = {
    "omni-20m": (8, 256, 8),
    "omni-60m": (8, 512, 8),
    "omni-116m": (12, 768, 16),
    "omni-300m": (16, 1024, 16),
    "omni-700m": (16, 1536, 16),
    "omni-1b": (16, 2048, 16),
}

PRESETS: dict[str, dict[str, Any]] = {
    # Small enough that a 4-trial sweep finishes in minutes on 2 CPU cores.
    "tiny": {
        "model": {"d_model": 128, "n_layers": 4, "n_heads": 4, "max_seq_len": 512},
        "data": {"seq_len": 256},
        "train": {"batch_size": 16, "max_steps": 240, "lr": 3e-3, "warmup_steps": 24, "checkpoint_every": 80},
    },
    **{
        name: {
            "model": {"n_layers": L, "d_model": d, "n_heads": h, "max_seq_len": 1024},
            "data": {"seq_len": 1024},
            "train": {"batch_size": 32, "max_steps": 10000, "lr": 6e-4, "warmup_steps": 500, "checkpoint_every": 1000},
        }
        for name, (L, d, h) in _OMNI.items()
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
