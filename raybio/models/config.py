"""Model configs: a BioLM's width, depth, block pattern, MoE and Hyena parts.

The vocabulary size is not part of the config: it belongs to the corpus' tokenizer and is
passed when the model is built (`BioLM(cfg, vocab_size)`). Block letters are checked
against the block registry (`raybio.models.blocks`), which owns what each letter means,
when an experiment is validated (`raybio.config.ExperimentConfig`) and when a model is built;
this module imports no block code, so configs sit below the blocks they describe.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from raybio.schema import Strict

_LEGACY_ROUTE_NORM = {"norm_topk_prob", "top1_gate", "normalize_scores"}


class MoEConfig(Strict):
    """Routed-expert FFN. `num_experts == 1` is not MoE: use the dense `D` block instead."""

    num_experts: int = Field(8, ge=1)
    top_k: int = Field(2, ge=1)
    router: Literal["softmax", "sigmoid", "aux_free"] = "softmax"
    # Divide the top-k gates by their sum (torchtitan's route_norm); see `renormalises_gates` for "auto".
    # false: raw gates (Qwen-MoE / OLMoE softmax, the HyenaMoE unnormalised-sigmoid ablation); true with
    # a softmax top-1 router: the chosen expert gets weight 1 (Mixtral's rule at k = 1).
    route_norm: bool | Literal["auto"] = "auto"
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
        return self

    @property
    def renormalises_gates(self) -> bool:
        """`route_norm`, where "auto" means: every router renormalises except softmax top-1, which gates with
        the raw probability p (Switch) so that the LM loss still trains the router."""
        if self.route_norm != "auto":
            return self.route_norm
        return not (self.router == "softmax" and self.top_k == 1)

    @model_validator(mode="before")
    @classmethod
    def _legacy_route_norm(cls, data: object) -> object:
        """Configs written before `route_norm` (checkpoints' config.json) set it with three fields
        (`norm_topk_prob`, `top1_gate`, `normalize_scores`); read them with the meaning they had."""
        if not isinstance(data, dict) or not _LEGACY_ROUTE_NORM & data.keys():
            return data
        data = dict(data)
        norm_topk, top1 = data.pop("norm_topk_prob", True), data.pop("top1_gate", "switch")
        normalize = data.pop("normalize_scores", True)
        softmax, k = data.get("router", "softmax") == "softmax", int(data.get("top_k", 2))
        renorm = (norm_topk if k > 1 else top1 == "mixtral") if softmax else normalize
        data.setdefault("route_norm", "auto" if renorm == (not (softmax and k == 1)) else renorm)
        return data

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


class HyenaConfig(Strict):
    """HyenaLite long-convolution operator (used by `H` blocks)."""

    filter: Literal["modal", "implicit"] = "modal"
    num_modes: int = Field(16, ge=1)
    filter_groups: int | None = Field(None, ge=1, description="channels sharing one filter; None = per channel")
    short_conv: int = Field(3, ge=1)
    attention_window: int = Field(4096, ge=1, description="sliding window of A/D blocks in streaming inference")
    filter_order: int = Field(64, ge=1, description="implicit filter: MLP width (HyenaDNA filter_order)")
    filter_emb_dim: int = Field(5, ge=3, description="implicit filter: positional features (odd: t + cos/sin bands)")


class ModelConfig(Strict):
    """A BioLM: embeddings, blocks composed from `pattern`, final norm, LM head."""

    d_model: int = Field(256, ge=8)
    n_layers: int = Field(8, ge=1)
    n_heads: int = Field(8, ge=1)
    d_ffn: int | None = Field(None, ge=1, description="SwiGLU hidden size; default 4 * d_model")
    # One letter per block (see raybio.models.blocks); a shorter pattern repeats to fill n_layers.
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
        return self

    @property
    def ffn_hidden(self) -> int:
        return self.d_ffn or 4 * self.d_model

    @property
    def blocks(self) -> str:
        """The full per-layer pattern, e.g. 'AHHH' * 2."""
        return self.pattern * (self.n_layers // len(self.pattern))
